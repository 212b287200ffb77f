"""Caltech101 (100 object classes after dropping the background and easy-faces folders)."""
from toolbox import register_dataset

from .reader import CoOpDataset, read_and_split_data

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@register_dataset
class Caltech101(CoOpDataset):
    dataset_dir = "caltech-101"
    image_dir = "101_ObjectCategories"
    split_name = "split_zhou_Caltech101.json"
    class_count = 100

    def generate_split(self):
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
