"""FGVC-Aircraft (100 variants); its own train/val/test lists are the split (no JSON)."""
import os.path as osp
from typing import Dict

from toolbox import register_dataset

from .reader import CoOpDataset, DatasetError, SplitItem, read_lines


@register_dataset
class FGVCAircraft(CoOpDataset):
    dataset_dir = "fgvc_aircraft"
    image_dir = "images"
    class_count = 100

    def generate_split(self):
        """Labels are line numbers of ``variants.txt``; the lists hold ``<image id> <variant>``."""
        variants = read_lines(osp.join(self.dataset_dir, "variants.txt"))
        label_of = {variant: label for label, variant in enumerate(variants)}
        return tuple(self.read_list(f"images_variant_{split}.txt", label_of)
                     for split in ("train", "val", "test"))

    def read_list(self, list_file: str, label_of: Dict[str, int]):
        items = []
        for line in read_lines(osp.join(self.dataset_dir, list_file)):
            image_id, _, variant = line.partition(" ")
            if variant not in label_of:
                raise DatasetError(f'{list_file} names the variant "{variant}", which is not in '
                                   "variants.txt")
            items.append(SplitItem(osp.join(self.image_dir, image_id + ".jpg"),
                                   label_of[variant], variant))
        return items
