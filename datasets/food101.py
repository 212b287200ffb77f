"""Food-101 (101 dishes, one folder each)."""
from toolbox import register_dataset

from .reader import CoOpDataset, read_and_split_data


@register_dataset
class Food101(CoOpDataset):
    dataset_dir = "food-101"
    image_dir = "images"
    split_name = "split_zhou_Food101.json"
    class_count = 101

    def generate_split(self):
        return read_and_split_data(self.image_dir)
