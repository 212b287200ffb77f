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
import sys
from typing import Callable, Dict, List, Optional, Sequence

from PIL.Image import Image

from runtime.files import atomic_directory, atomic_write

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


def draw_dataset_folder(dataset_dir: str, classnames: Sequence[str], sizes: Dict[str, int],
                        split_name: str, draw_image: Callable[[random.Random, int, str], Image],
                        rng: random.Random, extra_files: Optional[Dict[str, object]] = None,
                        replace: bool = False) -> None:
    """Draw a dataset in CoOp's layout into ``dataset_dir``: ``images/<class>/<nnn>.png``, per
    class ``sizes[split]`` images for each split in turn, the split file ``split_name`` and
    any ``extra_files`` (as JSON). It is assembled beside its destination and renamed into
    place (``runtime.files.atomic_directory``), so a concurrent reader never sees half of it."""
    with atomic_directory(dataset_dir, replace=replace) as staging:
        lists = {name: [] for name in sizes}
        for label, classname in enumerate(classnames):
            folder = _folder_name(classname)
            os.makedirs(osp.join(staging, "images", folder))
            index = 0
            for split, count in sizes.items():
                for _ in range(count):
                    relpath = f"{folder}/{index:03d}.png"
                    draw_image(rng, label, classname).save(osp.join(staging, "images", relpath))
                    lists[split].append([relpath, label, classname])
                    index += 1

        for name, content in {split_name: lists, **(extra_files or {})}.items():
            with open(osp.join(staging, name), "w") as f:
                json.dump(content, f, indent=1)


def write_split(dataset_dir: str, split: int, spec: world.WorldSpec = world.DOWNSTREAM_SPEC
                ) -> str:
    """Draw split ``split`` into ``dataset_dir`` unless it is already there, up to date; a
    folder drawn from another world is replaced (its few-shot caches go with it)."""
    expected = stamp(split, spec)
    if _read_stamp(dataset_dir) == expected:
        return dataset_dir
    logger.info("Drawing demo-world split %d into %s", split, dataset_dir)

    def draw_image(rng: random.Random, label: int, classname: str) -> Image:
        colour, shape = classname.split(" ")
        return world.draw(rng, world.object_of_kind(rng, colour, shape), spec)

    draw_dataset_folder(dataset_dir, expected["classes"], SPLIT_SIZES, SPLIT_NAME, draw_image,
                        random.Random(f"images-{split}"), {STAMP_NAME: expected}, replace=True)
    if _read_stamp(dataset_dir) != expected:
        raise RuntimeError(f'Another process drew "{dataset_dir}" from another world meanwhile')
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

    for name, content in ((LEXICON_NAME, text),
                          ("lexicon.tsv", "".join(f"{label}\t{group}\n"
                                                  for label, group in labels))):
        with atomic_write(osp.join(world_dir, name)) as staging, open(staging, "w") as f:
            f.write(content)
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
