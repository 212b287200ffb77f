"""CoOp-format dataset readers; importing this package registers them."""
from . import (caltech101, demo_world, dtd, eurosat, fgvc_aircraft, food101,  # noqa: F401
               generated, imagenet, imagenet_a, imagenet_r, imagenet_sketch, imagenetv2,
               oxford_flowers, oxford_pets, stanford_cars, sun397, ucf101)
