"""Fetch the split files of CoOp's protocol, say which images to get, and check a dataset folder.

    python -m datasets.prepare download --dataset OxfordPets --root $DATA
    python -m datasets.prepare check --dataset OxfordPets --root $DATA

``download`` fetches the small files CoOp publishes on Google Drive (split JSONs, class-name
files) with gdown, then prints which image archives to fetch by hand, from where, and where
they go. ``check`` verifies a dataset folder: the files are there, the split parses, every
listed image exists, each split has the dataset's number of classes, labels and class names
match one to one, and no image sits in two splits. Both exit non-zero when something is wrong.
"""
import argparse
import json
import logging
import os
import os.path as osp
import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .caltech101 import Caltech101
from .dtd import DescribableTextures
from .eurosat import EuroSAT
from .fgvc_aircraft import FGVCAircraft
from .food101 import Food101
from .imagenet import ImageNet
from .imagenet_a import ImageNetA
from .imagenet_r import ImageNetR
from .imagenet_sketch import ImageNetSketch
from .imagenetv2 import ImageNetV2
from .oxford_flowers import OxfordFlowers
from .oxford_pets import OxfordPets
from .reader import CoOpDataset, DatasetError
from .stanford_cars import StanfordCars
from .sun397 import SUN397
from .ucf101 import UCF101

MAX_EXAMPLES = 5  # missing images, clashing names ... listed per problem


@dataclass(frozen=True)
class DriveFile:
    """A file CoOp publishes on Google Drive, saved as ``name`` in the dataset folder.

    ``copy_from`` (relative to the data root) is a local copy used instead when present.
    """

    name: str
    file_id: str
    copy_from: str = ""

    @property
    def url(self) -> str:
        return f"https://drive.google.com/file/d/{self.file_id}/view"


@dataclass(frozen=True)
class Archive:
    """Images to fetch by hand; ``placement`` may use {root} and {folder} (dataset folder)."""

    name: str
    source: str
    placement: str


@dataclass(frozen=True)
class Source:
    files: Tuple[DriveFile, ...]
    archives: Tuple[Archive, ...]


IMAGENET_CLASSNAMES = DriveFile("classnames.txt", "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF",
                                copy_from="imagenet/classnames.txt")
OXFORD_VGG = "https://www.robots.ox.ac.uk/~vgg/data"
STANFORD_CARS = "http://ai.stanford.edu/~jkrause/car196"
ONLY_TO_REBUILD = " (only needed to rebuild the split without the split file)"

# File ids and archive addresses are the ones in CoOp's DATASETS.md.
SOURCES: Dict[type, Source] = {
    ImageNet: Source((IMAGENET_CLASSNAMES,), (
        Archive("ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar",
                "https://image-net.org/ (an account is needed)",
                "extract them so that the class folders are {folder}/images/train/<wnid>/ and "
                "{folder}/images/val/<wnid>/; the val archive is flat, so first sort its "
                "images into <wnid> folders by their ground-truth labels"),)),
    Caltech101: Source((DriveFile("split_zhou_Caltech101.json",
                                  "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),), (
        Archive("101_ObjectCategories.tar.gz",
                "http://www.vision.caltech.edu/Image_Datasets/Caltech101/"
                "101_ObjectCategories.tar.gz",
                "extract it in {folder}, giving {folder}/101_ObjectCategories/<class>/"),)),
    OxfordPets: Source((DriveFile("split_zhou_OxfordPets.json",
                                  "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),), (
        Archive("images.tar.gz", f"{OXFORD_VGG}/pets/data/images.tar.gz",
                "extract it in {folder}, giving {folder}/images/*.jpg"),
        Archive("annotations.tar.gz", f"{OXFORD_VGG}/pets/data/annotations.tar.gz",
                "extract it in {folder}, giving {folder}/annotations/" + ONLY_TO_REBUILD))),
    StanfordCars: Source((DriveFile("split_zhou_StanfordCars.json",
                                    "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),), (
        Archive("cars_train.tgz", f"{STANFORD_CARS}/cars_train.tgz",
                "extract it in {folder}, giving {folder}/cars_train/"),
        Archive("cars_test.tgz", f"{STANFORD_CARS}/cars_test.tgz",
                "extract it in {folder}, giving {folder}/cars_test/"),
        Archive("car_devkit.tgz", "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
                "extract it in {folder}, giving {folder}/devkit/" + ONLY_TO_REBUILD),
        Archive("cars_test_annos_withlabels.mat",
                f"{STANFORD_CARS}/cars_test_annos_withlabels.mat",
                "put it in {folder}" + ONLY_TO_REBUILD))),
    OxfordFlowers: Source((DriveFile("split_zhou_OxfordFlowers.json",
                                     "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
                           DriveFile("cat_to_name.json", "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0")), (
        Archive("102flowers.tgz", f"{OXFORD_VGG}/flowers/102/102flowers.tgz",
                "extract it in {folder}, giving {folder}/jpg/image_00001.jpg ..."),
        Archive("imagelabels.mat", f"{OXFORD_VGG}/flowers/102/imagelabels.mat",
                "put it in {folder}" + ONLY_TO_REBUILD))),
    Food101: Source((DriveFile("split_zhou_Food101.json", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),), (
        Archive("food-101.tar.gz", "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
                "extract it in {root}, giving {folder}/images/<dish>/"),)),
    FGVCAircraft: Source((), (
        Archive("fgvc-aircraft-2013b.tar.gz",
                f"{OXFORD_VGG}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                "extract it anywhere and move its data/ folder to {folder}, giving "
                "{folder}/images/ and {folder}/variants.txt (its lists are the split)"),)),
    SUN397: Source((DriveFile("split_zhou_SUN397.json", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),), (
        Archive("SUN397.tar.gz", "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                "extract it in {folder}, giving {folder}/SUN397/<letter>/<scene>/"),
        Archive("Partitions.zip",
                "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",
                "extract it so that ClassName.txt, Training_01.txt and Testing_01.txt are in "
                "{folder}" + ONLY_TO_REBUILD))),
    DescribableTextures: Source((DriveFile("split_zhou_DescribableTextures.json",
                                           "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),), (
        Archive("dtd-r1.0.1.tar.gz", f"{OXFORD_VGG}/dtd/download/dtd-r1.0.1.tar.gz",
                "extract it in {root}, giving {folder}/images/<texture>/"),)),
    EuroSAT: Source((DriveFile("split_zhou_EuroSAT.json", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),), (
        Archive("EuroSAT.zip", "http://madm.dfki.de/files/sentinel/EuroSAT.zip",
                "extract it in {folder}, giving {folder}/2750/<Class>/"),)),
    UCF101: Source((DriveFile("split_zhou_UCF101.json", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),), (
        Archive("UCF-101-midframes.zip (the middle frame of every video)",
                "https://drive.google.com/file/d/10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O/view "
                "(`gdown 10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O` fetches it)",
                "extract it in {folder}, giving {folder}/UCF-101-midframes/<Action_Words>/"),)),
    ImageNetV2: Source((IMAGENET_CLASSNAMES,), (
        Archive("imagenetv2-matched-frequency.tar.gz",
                "https://s3-us-west-2.amazonaws.com/imagenetv2public/"
                "imagenetv2-matched-frequency.tar.gz",
                "extract it in {folder}, giving "
                "{folder}/imagenetv2-matched-frequency-format-val/<0..999>/"),)),
    ImageNetSketch: Source((IMAGENET_CLASSNAMES,), (
        Archive("ImageNet-Sketch", "https://github.com/HaohanWang/ImageNet-Sketch",
                "extract it so that the class folders are {folder}/images/<wnid>/ (rename the "
                "extracted top folder to images)"),)),
    ImageNetA: Source((IMAGENET_CLASSNAMES,), (
        Archive("imagenet-a.tar", "https://github.com/hendrycks/natural-adv-examples",
                "extract it in {folder}, giving {folder}/imagenet-a/<wnid>/"),)),
    ImageNetR: Source((IMAGENET_CLASSNAMES,), (
        Archive("imagenet-r.tar", "https://github.com/hendrycks/imagenet-r",
                "extract it in {folder}, giving {folder}/imagenet-r/<wnid>/"),)),
}
READERS = {reader.__name__: reader for reader in SOURCES}


class DownloadFailed(RuntimeError):
    """A file could not be fetched; the message is one line meant for the user."""


def command(action: str, name: str, root: str) -> str:
    """This module's command line for ``action`` (shown in messages)."""
    return f"python -m datasets.prepare {action} --dataset {name} --root {root}"


# ----------------------------------------------------------------------------- download

def fetch_from_drive(file_id: str, target: str) -> None:
    """Download a Google Drive file to ``target`` through a ``.part`` file (never half-written).

    gdown and the network fail in many ways; each becomes one ``DownloadFailed`` line.
    """
    import gdown
    import requests

    partial = target + ".part"
    try:
        gdown.download(id=file_id, output=partial, quiet=True, timeout=60)
        if target.endswith(".json"):
            with open(partial) as f:
                json.load(f)
        os.replace(partial, target)
        return
    except requests.exceptions.RequestException as error:
        reason = f"cannot reach Google Drive: {type(error).__name__}"
    except (json.JSONDecodeError, UnicodeDecodeError):
        reason = ("the file received is not JSON (Google Drive may have sent a quota or "
                  "sign-in page instead)")
    except (gdown.exceptions.DownloadError, OSError) as error:
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[0][:200] if lines else 'no detail'}"

    if osp.exists(partial):
        os.remove(partial)
    raise DownloadFailed(reason)


def download(reader: type, root: str) -> int:
    """Fetch the dataset's Drive files, print what to get by hand; 0 when all files are there."""
    name = reader.__name__
    source = SOURCES[reader]
    folder = osp.join(osp.abspath(root), reader.dataset_dir)
    os.makedirs(folder, exist_ok=True)

    failed: List[Tuple[DriveFile, str]] = []
    for file in source.files:
        target = osp.join(folder, file.name)
        local = osp.join(root, file.copy_from) if file.copy_from else ""
        if osp.exists(target):
            print(f"{target} is already there (kept)")
        elif local and osp.isfile(local):
            shutil.copyfile(local, target + ".part")
            os.replace(target + ".part", target)
            print(f"Copied {local} to {target}")
        else:
            print(f"Fetching {file.name} from {file.url}")
            try:
                fetch_from_drive(file.file_id, target)
                print(f"Saved {target}")
            except DownloadFailed as error:
                failed.append((file, str(error)))
    if not source.files:
        print(f"{name} has no split file to download: the release's own lists are its split.")

    print(f"\nImages to fetch by hand for {name}:")
    for archive in source.archives:
        placement = archive.placement.format(root=osp.abspath(root), folder=folder)
        print(f"  * {archive.name}\n      from  {archive.source}\n      then  {placement}")
    print(f"\nThen run `{command('check', name, root)}`.")

    if failed:
        names = ", ".join(file.name for file, _ in failed)
        urls = " ".join(file.url for file, _ in failed)
        reasons = "; ".join(sorted({reason for _, reason in failed}))
        print(f"error: could not download {names} ({reasons}); fetch {urls} by hand into "
              f"{folder}/, or run this command again when online", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- check

def check(reader: type, root: str) -> int:
    """Print what is wrong with the dataset folder under ``root``; 0 when nothing is."""
    name = reader.__name__
    try:
        located = reader.located_at(root)
    except DatasetError as error:
        problems = [str(error)]
    else:
        print(f"Checking {name} in {located.dataset_dir}")
        problems = missing_files(located, root)
        if not problems:
            problems = listing_problems(located)

    if problems:
        print(f"{name}: {len(problems)} problem(s) found")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(f"{name}: OK")
    return 0


def missing_files(located: CoOpDataset, root: str) -> List[str]:
    """The files ``download`` fetches that are not in the dataset folder."""
    reader = type(located)
    fetch = command("download", reader.__name__, root)
    return [f'"{osp.join(located.dataset_dir, file.name)}" is missing; `{fetch}` fetches it'
            for file in SOURCES[reader].files
            if not osp.isfile(osp.join(located.dataset_dir, file.name))]


def listing_problems(located: CoOpDataset) -> List[str]:
    """List the splits as the reader does, print their sizes, and check them."""
    try:
        splits = located.list_splits()
    except DatasetError as error:
        return [str(error)]
    named = {key: items for key, items in zip(("train", "val", "test"), splits)
             if items is not None}
    for key, items in named.items():
        print(f"  {key}: {len(items):,} images, {len({x.label for x in items})} classes")
    return split_problems(named, located.class_count, located.dataset_dir)


def split_problems(splits: Dict[str, Sequence], class_count: int, dataset_dir: str) -> List[str]:
    """Missing images, wrong class counts, label/name clashes and images in two splits."""
    problems = []

    listed = {item.impath for items in splits.values() for item in items}
    missing = sorted(path for path in listed if not osp.isfile(path))
    if missing:
        examples = ", ".join(osp.relpath(path, dataset_dir) for path in missing[:MAX_EXAMPLES])
        problems.append(f"{len(missing):,} of the {len(listed):,} listed images are missing, "
                        f"e.g. {examples}")

    expected = set(range(class_count))
    for key, items in splits.items():
        labels = {item.label for item in items}
        if labels != expected:
            absent = sorted(expected - labels)[:MAX_EXAMPLES]
            extra = sorted(labels - expected)[:MAX_EXAMPLES]
            detail = "; ".join(part for part in (
                f"labels {absent} are absent" if absent else "",
                f"labels {extra} are outside 0..{class_count - 1}" if extra else "") if part)
            problems.append(f"{key} has {len(labels)} classes, expected {class_count} ({detail})")

    names_of, labels_of = defaultdict(set), defaultdict(set)
    for items in splits.values():
        for item in items:
            names_of[item.label].add(item.classname)
            labels_of[item.classname].add(item.label)
    for label, names in sorted(names_of.items()):
        if len(names) > 1:
            problems.append(f"label {label} has several class names: {sorted(names)}")
    for classname, labels in sorted(labels_of.items()):
        if len(labels) > 1:
            problems.append(f'class name "{classname}" has several labels: {sorted(labels)}')

    seen_in = defaultdict(list)
    for key, items in splits.items():
        for path in {item.impath for item in items}:
            seen_in[path].append(key)
    shared = sorted(path for path, keys in seen_in.items() if len(keys) > 1)
    if shared:
        examples = ", ".join(f"{osp.relpath(path, dataset_dir)} ({'/'.join(seen_in[path])})"
                             for path in shared[:MAX_EXAMPLES])
        problems.append(f"{len(shared):,} images are in more than one split, e.g. {examples}")
    return problems


# ----------------------------------------------------------------------------- command line

def find_reader(name: str) -> Optional[type]:
    """The reader registered as ``name`` (any letter case)."""
    return next((reader for key, reader in READERS.items() if key.lower() == name.lower()), None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.prepare",
                                     description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    for action, help_text in (("download", "fetch the split files, list the images to get"),
                              ("check", "verify a dataset folder")):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("--dataset", required=True, help=f"one of {', '.join(READERS)}")
        sub.add_argument("--root", required=True, help="the data root (DATASET.ROOT)")
    args = parser.parse_args(argv)

    reader = find_reader(args.dataset)
    if reader is None:
        parser.error(f'unknown dataset "{args.dataset}"; choose one of {", ".join(READERS)}')
    logging.getLogger("datasets").setLevel(logging.WARNING)
    if args.action == "download":
        return download(reader, args.root)
    if not osp.isdir(args.root):
        print(f'error: --root "{args.root}" is not a directory', file=sys.stderr)
        return 2
    return check(reader, args.root)


if __name__ == "__main__":
    sys.exit(main())
