"""Describable Textures (47 texture words, one folder each)."""
from toolbox import register_dataset

from .reader import CoOpDataset, read_and_split_data


@register_dataset
class DescribableTextures(CoOpDataset):
    dataset_dir = "dtd"
    image_dir = "images"
    split_name = "split_zhou_DescribableTextures.json"
    class_count = 47

    def generate_split(self):
        return read_and_split_data(self.image_dir)
