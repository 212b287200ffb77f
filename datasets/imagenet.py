"""ImageNet-1k, and the class-name and folder helpers its test-only variants share.

CoOp evaluates on ImageNet's val set, which therefore is the test set and also stands in as
the val set. Class names are CLIP's, read from ``classnames.txt`` (lines ``<wnid> <name>``).
The image lists are built from the class folders on first use and kept in
``preprocessed.pkl`` (Dassl's pickle format, so a file CoOp wrote is read as is).
"""
import os.path as osp
from typing import Dict, List

from toolbox import register_dataset

from .reader import CoOpDataset, DatasetError, SplitItem, class_folders, read_lines

CLASSNAMES_FILE = "classnames.txt"


def read_classnames(path: str) -> Dict[str, str]:
    """``classnames.txt`` as {wnid: class name}, in file order."""
    names = {}
    for line in read_lines(path):
        wnid, _, name = line.partition(" ")
        names[wnid] = name.strip()
    return names


def wnid_folder_items(image_dir: str, classnames: Dict[str, str]) -> List[SplitItem]:
    """Every image under ``image_dir/<wnid>/``, labelled by the sorted order of the folders.

    A subset of the classes (ImageNet-A/R: 200 folders) is labelled 0..199.
    """
    items = []
    for label, (wnid, images) in enumerate(class_folders(image_dir)):
        if wnid not in classnames:
            raise DatasetError(f'Class folder "{wnid}" of "{image_dir}" has no line in '
                               f"{CLASSNAMES_FILE}")
        items.extend(SplitItem(image, label, classnames[wnid]) for image in images)
    return items


@register_dataset
class ImageNet(CoOpDataset):
    dataset_dir = "imagenet"
    image_dir = "images"
    split_name = "preprocessed.pkl"
    class_count = 1000

    def generate_split(self):
        classnames = read_classnames(osp.join(self.dataset_dir, CLASSNAMES_FILE))
        train = wnid_folder_items(osp.join(self.image_dir, "train"), classnames)
        test = wnid_folder_items(osp.join(self.image_dir, "val"), classnames)
        return train, None, test


class ImageNetTestSet(CoOpDataset):
    """A test-only ImageNet variant whose images sit in ``<image_dir>/<wnid>/`` folders."""

    test_only = True

    def generate_split(self):
        classnames = read_classnames(osp.join(self.dataset_dir, CLASSNAMES_FILE))
        return None, None, wnid_folder_items(self.image_dir, classnames)
