"""SUN397 (397 scene categories)."""
import os.path as osp
from typing import Dict

from toolbox import register_dataset

from .reader import CoOpDataset, DatasetError, SplitItem, read_lines, split_trainval


def scene_name(category: str) -> str:
    """"a/apartment_building/outdoor" → "outdoor apartment_building": the letter folder is
    dropped and qualifiers such as indoor/outdoor come first."""
    return " ".join(reversed(category.split("/")[1:]))


@register_dataset
class SUN397(CoOpDataset):
    dataset_dir = "sun397"
    image_dir = "SUN397"
    split_name = "split_zhou_SUN397.json"
    class_count = 397

    def generate_split(self):
        """Labels follow ``ClassName.txt``; train/val come from the first official training
        partition (80/20), test from the first testing partition."""
        categories = [line.lstrip("/") for line in
                      read_lines(osp.join(self.dataset_dir, "ClassName.txt"))]
        label_of = {category: label for label, category in enumerate(categories)}
        trainval = self.read_partition("Training_01.txt", label_of)
        test = self.read_partition("Testing_01.txt", label_of)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_partition(self, list_file: str, label_of: Dict[str, int]):
        items = []
        for line in read_lines(osp.join(self.dataset_dir, list_file)):
            relpath = line.lstrip("/")
            category = osp.dirname(relpath)
            if category not in label_of:
                raise DatasetError(f'{list_file} lists "{relpath}", whose category is not in '
                                   "ClassName.txt")
            items.append(SplitItem(osp.join(self.image_dir, relpath), label_of[category],
                                   scene_name(category)))
        return items
