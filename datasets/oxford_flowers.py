"""Oxford Flowers-102; class names come from ``cat_to_name.json``."""
import os.path as osp
from collections import defaultdict

from toolbox import read_json, register_dataset

from .reader import CoOpDataset, DatasetError, split_per_class


@register_dataset
class OxfordFlowers(CoOpDataset):
    dataset_dir = "oxford_flowers"
    image_dir = "jpg"
    split_name = "split_zhou_OxfordFlowers.json"
    class_count = 102

    def generate_split(self):
        """Split 50/20/30 per class; ``imagelabels.mat`` gives the 1-based label of
        ``image_<k>.jpg`` at position k, and classes are visited in first-seen order."""
        from scipy.io import loadmat

        labels = loadmat(osp.join(self.dataset_dir, "imagelabels.mat"))["labels"][0]
        names = read_json(osp.join(self.dataset_dir, "cat_to_name.json"))
        images_by_label = defaultdict(list)
        for index, label in enumerate(labels, start=1):
            images_by_label[int(label)].append(osp.join(self.image_dir, f"image_{index:05d}.jpg"))

        missing = sorted(set(map(str, images_by_label)) - set(names))
        if missing:
            raise DatasetError(f"cat_to_name.json has no name for the label(s) {missing}")
        return split_per_class((label - 1, names[str(label)], images)
                               for label, images in images_by_label.items())
