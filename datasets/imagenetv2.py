"""ImageNetV2 (matched frequency): new test images of the 1000 ImageNet classes (test only).

Its class folders are named by label, ``0`` to ``999``; the name of label k is the k-th line
of ImageNet's ``classnames.txt``.
"""
import os.path as osp

from toolbox import listdir_nohidden, register_dataset

from .imagenet import CLASSNAMES_FILE, read_classnames
from .reader import CoOpDataset, DatasetError, SplitItem


@register_dataset
class ImageNetV2(CoOpDataset):
    dataset_dir = "imagenetv2"
    image_dir = "imagenetv2-matched-frequency-format-val"
    class_count = 1000
    test_only = True

    def generate_split(self):
        classnames = list(read_classnames(osp.join(self.dataset_dir, CLASSNAMES_FILE)).values())
        items = []
        for label, classname in enumerate(classnames):
            class_dir = osp.join(self.image_dir, str(label))
            if not osp.isdir(class_dir):
                raise DatasetError(f'Class folder "{class_dir}" does not exist')
            items.extend(SplitItem(osp.join(class_dir, image), label, classname)
                         for image in listdir_nohidden(class_dir, sort=True))
        return None, None, items
