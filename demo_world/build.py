"""Downstream datasets drawn from the demo world, written in CoOp's on-disk format.

Split ``k`` is a dataset of ``NUM_CLASSES`` colour–shape kinds ("red star") drawn with seed k
from the kinds seen in pretraining, listed in the drawn order, so CoOp's base/new rule (the
first half of the labels are base) gives each split its own partition. Its images come from
the downstream domain (``world.DOWNSTREAM_SPEC``): the same objects through another camera,
noisier and with a warm white balance, so that the frozen model's zero-shot accuracy falls
below what its image features allow (a linear probe on them does better) and prompts have
something to learn, as on CLIP's real benchmarks. Under ``<root>/demo_world/``:

    split<k>/images/<class>/<nnn>.png  the pictures (20 train, 4 val, 100 test per class)
    split<k>/split_zhou_DemoWorld.json CoOp's split file
    split<k>/world.json                what the folder was drawn from (redrawn when it changes)
    lexicon.txt                        every label the world can name, one per line: the
                                       outlier vocabulary for DOR (TRAINER.DOR.VOCAB)
    lexicon.tsv                        the same labels with their group (kind, attributed,
                                       shape, scene)

The lexicon is the world's, not the split's: like WordNet for a real dataset, it holds the
new classes' names too, and only DOR's own exclusion of the base names applies.
"""
import argparse
import hashlib
import json
import logging
import os
import os.path as osp
import random
import shutil
import sys
import tempfile
from typing import Dict, List, Optional

from . import world

logger = logging.getLogger(__name__)

NUM_CLASSES = 42
SPLIT_SIZES = {"train": 20, "val": 4, "test": 100}
SPLIT_NAME = "split_zhou_DemoWorld.json"
STAMP_NAME = "world.json"
LEXICON_NAME = "lexicon.txt"
FORMAT_VERSION = 3


def split_classes(split: int) -> List[str]:
    """The class names of split ``split``: NUM_CLASSES seen kinds drawn with that seed."""
    if split < 0:
        raise ValueError(f"A demo-world split number is a whole number ≥ 0, got {split}")
    kinds = random.Random(f"classes-{split}").sample(list(world.SEEN), NUM_CLASSES)
    return [world.kind_name(*kind) for kind in kinds]


def stamp(split: int, spec: world.WorldSpec = world.DOWNSTREAM_SPEC) -> Dict:
    """What a split folder is drawn from; a folder whose stamp differs is drawn again."""
    with open(world.__file__, "rb") as f:
        source = hashlib.sha256(f.read()).hexdigest()
    record = dict(version=FORMAT_VERSION, split=split, world=source, spec=spec.as_dict(),
                  sizes=SPLIT_SIZES, classes=split_classes(split))
    return json.loads(json.dumps(record))  # as it reads back from world.json (tuples as lists)


def _folder_name(classname: str) -> str:
    return classname.replace(" ", "_")


def _read_stamp(dataset_dir: str):
    try:
        with open(osp.join(dataset_dir, STAMP_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_split(dataset_dir: str, split: int, spec: world.WorldSpec = world.DOWNSTREAM_SPEC
                ) -> str:
    """Draw split ``split`` into ``dataset_dir`` unless it is already there, up to date.

    The folder is assembled beside its destination and renamed into place, so a concurrent
    reader never sees half a dataset; a folder drawn from another world is replaced (its
    few-shot caches go with it).
    """
    expected = stamp(split, spec)
    if _read_stamp(dataset_dir) == expected:
        return dataset_dir
    parent = osp.dirname(osp.abspath(dataset_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".drawing-", dir=parent)
    logger.info("Drawing demo-world split %d into %s", split, dataset_dir)

    classnames = expected["classes"]
    rng = random.Random(f"images-{split}")
    lists = {name: [] for name in SPLIT_SIZES}
    for label, classname in enumerate(classnames):
        colour, shape = classname.split(" ")
        folder = _folder_name(classname)
        os.makedirs(osp.join(staging, "images", folder))
        index = 0
        for split_name, count in SPLIT_SIZES.items():
            for _ in range(count):
                relpath = f"{folder}/{index:03d}.png"
                image = world.draw(rng, world.object_of_kind(rng, colour, shape), spec)
                image.save(osp.join(staging, "images", relpath))
                lists[split_name].append([relpath, label, classname])
                index += 1

    with open(osp.join(staging, SPLIT_NAME), "w") as f:
        json.dump(lists, f, indent=1)
    with open(osp.join(staging, STAMP_NAME), "w") as f:
        json.dump(expected, f, indent=1)

    if osp.isdir(dataset_dir):
        shutil.rmtree(dataset_dir, ignore_errors=True)
    try:
        os.rename(staging, dataset_dir)
    except OSError:  # another process put an up-to-date copy there first
        shutil.rmtree(staging, ignore_errors=True)
        if _read_stamp(dataset_dir) != expected:
            raise
    return dataset_dir


def write_lexicon(world_dir: str) -> str:
    """Write ``lexicon.txt`` (and ``lexicon.tsv``) into ``world_dir`` unless they are current;
    returns the path of ``lexicon.txt``."""
    labels = world.lexicon()
    text = "".join(f"{label}\n" for label, _ in labels)
    path = osp.join(world_dir, LEXICON_NAME)
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except OSError:
        pass

    os.makedirs(world_dir, exist_ok=True)
    for name, content in ((LEXICON_NAME, text),
                          ("lexicon.tsv", "".join(f"{label}\t{group}\n"
                                                  for label, group in labels))):
        handle, staging = tempfile.mkstemp(prefix=name + ".", dir=world_dir)
        with os.fdopen(handle, "w") as f:
            f.write(content)
        os.replace(staging, osp.join(world_dir, name))
    return path


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: draw the given splits and the lexicon under ``<root>/demo_world``."""
    parser = argparse.ArgumentParser(description="Draw the demo world's downstream datasets "
                                     "and its lexicon in CoOp's format.")
    parser.add_argument("--root", required=True, help="data root (DATASET.ROOT)")
    parser.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3],
                        help="split numbers, i.e. the seeds that will read them (default 1 2 3)")
    args = parser.parse_args(argv)
    if any(split < 0 for split in args.splits):
        parser.error(f"split numbers are whole numbers ≥ 0, got {args.splits}")

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    world_dir = osp.join(osp.abspath(osp.expanduser(args.root)), "demo_world")
    for split in args.splits:
        write_split(osp.join(world_dir, f"split{split}"), split)
    print(write_lexicon(world_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
