"""ImageNet-R: renditions (art, cartoons, ...) of 200 ImageNet classes, labelled 0..199 (test
only)."""
from toolbox import register_dataset

from .imagenet import ImageNetTestSet


@register_dataset
class ImageNetR(ImageNetTestSet):
    dataset_dir = "imagenet-rendition"
    image_dir = "imagenet-r"
    class_count = 200
