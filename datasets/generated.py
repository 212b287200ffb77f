"""A small image dataset drawn on the fly, laid out like a CoOp dataset, for the tests.

Each class is a coloured shape on a noisy background. The images and the split file are
written under ``DATASET.ROOT/generated_shapes`` the first time the dataset is read, then read
back by the same reader code as any real dataset. Drawing uses its own random generator, so it
does not move Python's global ``random`` state that few-shot sampling depends on.
"""
import os.path as osp
import random
from typing import Sequence

from PIL import Image, ImageDraw

from demo_world.build import draw_dataset_folder
from demo_world.world import draw_shape
from toolbox import register_dataset

from .reader import CoOpDataset

# Everyday nouns (all WordNet nouns): the first five are the base classes, the last five new.
CLASSNAMES = ["dog", "car", "apple", "chair", "guitar", "bicycle", "tree", "house", "fish",
              "lamp"]
SHAPES = ["circle", "square", "triangle", "cross", "ring"]
COLORS = [(220, 40, 40), (40, 170, 60), (40, 80, 220), (230, 200, 40), (160, 60, 200)]
SPLIT_SIZES = {"train": 20, "val": 5, "test": 10}
IMAGE_SIZE = 40
SPLIT_NAME = "split_zhou_GeneratedShapes.json"


def _draw(rng: random.Random, label: int) -> Image.Image:
    shape = SHAPES[label % len(SHAPES)]
    color = COLORS[(label * 3) % len(COLORS)] if label >= len(SHAPES) else COLORS[label]
    background = tuple(rng.randint(0, 90) for _ in range(3))
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(image)

    for _ in range(30):
        x, y = rng.randrange(IMAGE_SIZE), rng.randrange(IMAGE_SIZE)
        draw.point((x, y), fill=tuple(rng.randint(0, 255) for _ in range(3)))

    r = rng.randint(9, 15)
    cx, cy = rng.randint(r, IMAGE_SIZE - r), rng.randint(r, IMAGE_SIZE - r)
    draw_shape(draw, shape, cx, cy, r, color, background)
    return image


def draw_dataset(dataset_dir: str, classnames: Sequence[str] = CLASSNAMES, seed: int = 0) -> None:
    """Draw every image and write the CoOp split file; a no-op if the folder already exists.

    The folder is assembled in a temporary sibling and renamed into place, so concurrent runs
    never see half a dataset.
    """
    if osp.isdir(dataset_dir):
        return
    draw_dataset_folder(dataset_dir, classnames, SPLIT_SIZES, SPLIT_NAME,
                        lambda rng, label, _: _draw(rng, label), random.Random(seed))


@register_dataset
class GeneratedShapes(CoOpDataset):
    """Ten classes of drawn shapes (20 train, 5 val, 10 test images each, 40×40 pixels)."""

    dataset_dir = "generated_shapes"
    image_dir = "images"
    split_name = SPLIT_NAME
    class_count = len(CLASSNAMES)

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        if cfg.DATASET.ROOT:
            draw_dataset(osp.join(root, self.dataset_dir))
        super().__init__(cfg)
