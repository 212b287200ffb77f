"""The demo world's downstream datasets (``demo_world`` package), read like any CoOp dataset.

The seed picks the split: ``--seed k`` reads ``DATASET.ROOT/demo_world/split<k>``, drawing it
first if it is missing or stale, so every seed of a base-to-new sweep has its own 42 classes
and its own base/new partition.
"""
import os.path as osp

from demo_world.build import NUM_CLASSES, SPLIT_NAME, write_lexicon, write_split
from toolbox import register_dataset

from .reader import CoOpDataset

WORLD_DIR = "demo_world"


@register_dataset
class DemoWorld(CoOpDataset):
    """42 colour–shape kinds of the demo world (20 train, 4 val, 100 test images each)."""

    dataset_dir = WORLD_DIR
    image_dir = "images"
    split_name = SPLIT_NAME
    class_count = NUM_CLASSES
    world_split = 0

    def __init__(self, cfg):
        self.world_split = max(int(cfg.SEED), 0)
        if cfg.DATASET.ROOT:
            world_dir = osp.join(osp.abspath(osp.expanduser(cfg.DATASET.ROOT)), WORLD_DIR)
            write_split(osp.join(world_dir, f"split{self.world_split}"), self.world_split)
            write_lexicon(world_dir)
        super().__init__(cfg)

    def folder(self) -> str:
        return osp.join(WORLD_DIR, f"split{self.world_split}")
