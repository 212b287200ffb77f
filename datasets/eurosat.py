"""EuroSAT (10 land-use classes of Sentinel-2 tiles), named in words CLIP can read."""
from toolbox import register_dataset

from .reader import CoOpDataset, read_and_split_data

NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@register_dataset
class EuroSAT(CoOpDataset):
    dataset_dir = "eurosat"
    image_dir = "2750"
    split_name = "split_zhou_EuroSAT.json"
    class_count = 10

    def generate_split(self):
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES)
