"""ImageNet-Sketch: sketches of the 1000 ImageNet classes (test only)."""
from toolbox import register_dataset

from .imagenet import ImageNetTestSet


@register_dataset
class ImageNetSketch(ImageNetTestSet):
    dataset_dir = "imagenet-sketch"
    image_dir = "images"
    class_count = 1000
