"""ImageNet-A: natural adversarial images of 200 ImageNet classes, labelled 0..199 (test only)."""
from toolbox import register_dataset

from .imagenet import ImageNetTestSet


@register_dataset
class ImageNetA(ImageNetTestSet):
    dataset_dir = "imagenet-adversarial"
    image_dir = "imagenet-a"
    class_count = 200
