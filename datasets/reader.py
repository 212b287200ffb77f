"""The one reader of CoOp-format datasets: split files, few-shot caches, base/new classes.

Every dataset follows the same steps: read (or generate and save) the fixed split → draw the
few-shot lists, cached per (shots, seed) under ``split_fewshot/`` → keep the base or new half
of the classes, relabelled from 0 → hand train/val/test to ``DatasetBase``. Test-only datasets
(the ImageNet variants) stop after the first step and hand their whole set over as train_x
and test.
"""
import io
import logging
import math
import os
import os.path as osp
import pickle
import random
from collections import defaultdict
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from toolbox import DatasetBase, Datum, atomic_write, listdir_nohidden, read_json, write_json

logger = logging.getLogger(__name__)

# Dassl pickles few-shot caches with this class path; both runtimes read and write it.
DASSL_DATUM_PATH = ("dassl.data.datasets.base_dataset", "Datum")
SUBSAMPLE_CHOICES = ("all", "base", "new")


class DatasetError(ValueError):
    """A dataset folder, split file or setting that cannot be read as asked."""


class SplitItem(NamedTuple):
    """One image of a split as listed, before it becomes a ``Datum`` (which needs the file)."""

    impath: str
    label: int
    classname: str


Splits = Tuple[Optional[list], Optional[list], Optional[list]]


# ----------------------------------------------------------------------------- split files

def is_readable_image(path: str) -> bool:
    """Whether ``path`` exists and PIL recognises it as an image (its header, not every pixel)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception:  # PIL raises many types for a damaged file; all mean "unreadable"
        return False
    return True


def warn_short_classes(train: Sequence, num_shots: int) -> None:
    """Warn about classes with fewer training images than ``NUM_SHOTS``.

    Like Dassl (which CoOp's readers call with ``repeat=False``), such a class keeps all of its
    images, so it has fewer than ``num_shots`` examples; nothing is repeated.
    """
    counts: Dict[str, int] = defaultdict(int)
    for item in train:
        counts[item.classname] += 1
    short = {name: n for name, n in counts.items() if n < num_shots}
    if short:
        listed = ", ".join(f"{name} ({n})" for name, n in list(short.items())[:5])
        logger.warning("NUM_SHOTS %d exceeds the training images of %d class(es): %s%s. Each "
                       "keeps all its images, as in Dassl", num_shots, len(short), listed,
                       ", ..." if len(short) > 5 else "")


def read_split(filepath: str, path_prefix: str) -> Tuple[List[SplitItem], ...]:
    """Read a CoOp split JSON (``train``/``val``/``test`` lists of [path, label, classname])."""
    logger.info("Reading split from %s", filepath)
    try:
        split = read_json(filepath)
    except ValueError as error:
        raise DatasetError(f'Split file "{filepath}" is not valid JSON: {error}') from error
    if not isinstance(split, dict):
        raise DatasetError(f'Split file "{filepath}" holds a {type(split).__name__}, not an '
                           "object with train/val/test lists")
    missing = [key for key in ("train", "val", "test") if key not in split]
    if missing:
        raise DatasetError(f'Split file "{filepath}" lacks the key(s) {missing}')

    def convert(items):
        return [SplitItem(osp.join(path_prefix, impath), int(label), classname)
                for impath, label, classname in items]

    try:
        return convert(split["train"]), convert(split["val"]), convert(split["test"])
    except (TypeError, ValueError) as error:
        raise DatasetError(f'Split file "{filepath}" has an entry that is not '
                           f"[path, label, classname]: {error}") from error


def save_split(train, val, test, filepath: str, path_prefix: str) -> None:
    """Write a CoOp split JSON, image paths relative to ``path_prefix``."""
    def extract(items):
        return [(osp.relpath(item.impath, path_prefix), item.label, item.classname)
                for item in items]

    write_json({"train": extract(train), "val": extract(val), "test": extract(test)}, filepath)
    logger.info("Saved split to %s", filepath)


def split_trainval(trainval: Sequence, p_val: float = 0.2):
    """Per class, move round(n·p_val) randomly chosen items to val (Python's ``random``)."""
    tracker = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)

    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val == 0:
            raise DatasetError(f"Class {label} has too few images ({len(idxs)}) for a val split")
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def read_lines(path: str) -> List[str]:
    """The non-empty lines of one of a release's text files, stripped."""
    if not osp.isfile(path):
        raise DatasetError(f'"{path}" does not exist')
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def class_folders(image_dir: str, ignored: Iterable[str] = ()) -> List[Tuple[str, List[str]]]:
    """(folder name, sorted image paths) of each class sub-folder of ``image_dir``, sorted.

    Sorted listings make labels and generated splits independent of the file system's order;
    plain files beside the class folders (a README) are skipped.
    """
    if not osp.isdir(image_dir):
        raise DatasetError(f'Image folder "{image_dir}" does not exist')
    ignored = set(ignored)
    folders = [name for name in listdir_nohidden(image_dir, sort=True)
               if name not in ignored and osp.isdir(osp.join(image_dir, name))]
    return [(name, [osp.join(image_dir, name, image)
                    for image in listdir_nohidden(osp.join(image_dir, name), sort=True)])
            for name in folders]


def split_per_class(groups: Iterable[Tuple[int, str, List[str]]], p_trn: float = 0.5,
                    p_val: float = 0.2):
    """Shuffle each class's images and cut them into train/val/test (50/20/30 by default).

    ``groups`` yields (label, class name, image paths), visited in the order given.
    """
    train, val, test = [], [], []
    for label, classname, images in groups:
        images = list(images)
        random.shuffle(images)
        n_train = round(len(images) * p_trn)
        n_val = round(len(images) * p_val)
        if min(n_train, n_val, len(images) - n_train - n_val) <= 0:
            raise DatasetError(f'Class "{classname}" has too few images ({len(images)}) to '
                               "split into train, val and test")
        for target, chunk in ((train, images[:n_train]),
                              (val, images[n_train:n_train + n_val]),
                              (test, images[n_train + n_val:])):
            target.extend(SplitItem(image, label, classname) for image in chunk)
    return train, val, test


def read_and_split_data(image_dir: str, p_trn: float = 0.5, p_val: float = 0.2,
                        ignored: Iterable[str] = (), new_cnames: Optional[Dict[str, str]] = None):
    """Split a ``<class>/<image>`` folder per class into train/val/test (50/20/30 by default).

    Classes are the sorted sub-folders, named through ``new_cnames`` where it has an entry.
    """
    names = new_cnames or {}
    groups = [(label, names.get(folder, folder), images)
              for label, (folder, images) in enumerate(class_folders(image_dir, ignored))]
    return split_per_class(groups, p_trn, p_val)


# ----------------------------------------------------------------------------- base / new

def subsample_classes(*datasets, subsample: str = "all"):
    """Keep the first ceil(n/2) labels of the train list ("base") or the rest ("new").

    Labels are renumbered from 0 in sorted order, so new classes are 0..n-m-1; this is CoOp's
    base-to-new protocol. ``all`` returns the lists unchanged.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise DatasetError(f'DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, '
                           f'got "{subsample}"')
    if subsample == "all":
        return list(datasets)

    labels = sorted({item.label for item in datasets[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {label: new for new, label in enumerate(selected)}
    logger.info("SUBSAMPLE %s CLASSES!", subsample.upper())

    return [[Datum(impath=item.impath, label=relabel[item.label], classname=item.classname)
             for item in dataset if item.label in relabel] for dataset in datasets]


# ----------------------------------------------------------------------------- Datum pickles

class _DatumPickler(pickle._Pickler):
    """Pickles the built-in runtime's ``Datum`` under Dassl's class path, so real Dassl reads
    the cache too (the pure-Python pickler is the one that lets a global be renamed)."""

    def save_global(self, obj, name=None):
        if obj is Datum and Datum.__module__ != DASSL_DATUM_PATH[0]:
            self.save(DASSL_DATUM_PATH[0])
            self.save(DASSL_DATUM_PATH[1])
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


class _DatumUnpickler(pickle.Unpickler):
    """Reads few-shot caches without running arbitrary code: only ``Datum`` and the container
    helpers pickle needs are allowed, and either runtime's ``Datum`` path maps to the active one."""

    ALLOWED = {("copyreg", "_reconstructor"), ("builtins", "object"),
               ("collections", "defaultdict"), ("builtins", "list")}

    def find_class(self, module, name):
        if name == "Datum" and module in (DASSL_DATUM_PATH[0], Datum.__module__,
                                          "runtime.data.base_dataset"):
            return Datum
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"few-shot cache refers to {module}.{name}, which is not "
                                     "a Datum")


def dump_fewshot(data: dict, path: str) -> None:
    """Write a dict of ``Datum`` lists atomically, in the format Dassl-based code reads.

    Used for the few-shot caches and for ImageNet's ``preprocessed.pkl``.
    """
    buffer = io.BytesIO()
    _DatumPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(data)
    # A temporary file of its own, so runs writing the same cache at once cannot collide.
    with atomic_write(path) as staging, open(staging, "wb") as f:
        f.write(buffer.getvalue())


def load_fewshot(path: str, dataset_dir: str) -> Optional[dict]:
    """Read a pickle written by ``dump_fewshot`` (or Dassl); None when it is unreadable.

    A pickle written under another ``DATASET.ROOT`` holds absolute paths from there; paths are
    re-rooted at this ``dataset_dir`` when the image exists at the same relative place.
    """
    try:
        with open(path, "rb") as f:
            data = _DatumUnpickler(f).load()
    except Exception as error:  # truncated, foreign or corrupt: all mean "rebuild it"
        logger.warning('Ignoring unreadable cache "%s" (%s); rebuilding it', path, error)
        return None

    folder = osp.basename(osp.normpath(dataset_dir))
    for key, items in data.items():
        data[key] = [_reroot(item, folder, dataset_dir, path) for item in items]
    return data


def _reroot(item: Datum, folder: str, dataset_dir: str, cache_path: str) -> Datum:
    if osp.exists(item.impath):
        return item
    marker = os.sep + folder + os.sep
    if marker in item.impath:
        candidate = osp.join(dataset_dir, item.impath.rsplit(marker, 1)[1])
        if osp.exists(candidate):
            return Datum(impath=candidate, label=item.label, domain=item.domain,
                         classname=item.classname)
    raise DatasetError(f'"{cache_path}" lists "{item.impath}", which does not exist here; '
                       "delete that file to have it built again")


# ----------------------------------------------------------------------------- the reader

class CoOpDataset(DatasetBase):
    """A dataset laid out as in CoOp's DATASETS.md, read through its split file.

    Subclasses set ``dataset_dir`` (folder under ``DATASET.ROOT``), ``image_dir`` (relative
    to it), ``split_name``, ``class_count`` and, when the split can be listed from the raw
    release, ``generate_split``. ``split_name`` is a CoOp split JSON, a ``.pkl`` of ``Datum``
    lists built from the release on first use (ImageNet's ``preprocessed.pkl``), or empty when
    the release's own lists are read every time. ``path_prefix`` is what split paths are
    relative to (the image folder unless a subclass says otherwise). A split whose val is None
    has no val set of its own: its test set doubles as val (ImageNet). ``test_only`` datasets
    hand their whole test set over as train_x and test and ignore NUM_SHOTS and
    SUBSAMPLE_CLASSES.
    """

    dataset_dir = ""
    image_dir = ""
    split_name = ""
    split_relative_to_dataset_dir = False
    class_count = 0
    test_only = False
    skip_bad_images = False

    def __init__(self, cfg):
        self.locate(cfg.DATASET.ROOT)
        self.skip_bad_images = bool(cfg.DATASET.get("SKIP_BAD_IMAGES", False))
        self.skipped_images: List[str] = []
        train, val, test = self.read_splits()
        if self.skipped_images:
            logger.warning("Skipped %d listed images that are missing or unreadable "
                           "(DATASET.SKIP_BAD_IMAGES), e.g. %s", len(self.skipped_images),
                           ", ".join(self.skipped_images[:3]))
        if self.test_only:
            if cfg.DATASET.NUM_SHOTS > 0 or cfg.DATASET.SUBSAMPLE_CLASSES != "all":
                logger.info("%s is a test-only dataset: NUM_SHOTS and SUBSAMPLE_CLASSES are "
                            "ignored", type(self).__name__)
            super().__init__(train_x=test, test=test)
            return

        train, val = self.few_shot(cfg, train, val)
        subsample = cfg.DATASET.SUBSAMPLE_CLASSES
        if val is None:
            train, test = subsample_classes(train, test, subsample=subsample)
            val = test
        else:
            train, val, test = subsample_classes(train, val, test, subsample=subsample)
        super().__init__(train_x=train, val=val, test=test)

    @classmethod
    def located_at(cls, root: str) -> "CoOpDataset":
        """A reader pointed at ``root`` that has read nothing yet (to check a dataset folder)."""
        reader = cls.__new__(cls)
        reader.locate(root)
        return reader

    def locate(self, root: str) -> None:
        """Set the dataset's paths under ``root``; the dataset folder must exist."""
        self.root = osp.abspath(osp.expanduser(root))
        if not root or not osp.isdir(self.root):
            raise DatasetError(f'DATASET.ROOT "{root}" is not a directory (set it with --root)')
        self.dataset_dir = osp.join(self.root, self.folder())
        if not osp.isdir(self.dataset_dir):
            raise DatasetError(f'{type(self).__name__} expects its files in "{self.dataset_dir}"'
                               f", which does not exist; {self.how_to_prepare()}")
        self.image_dir = osp.join(self.dataset_dir, type(self).image_dir)
        self.split_path = osp.join(self.dataset_dir, self.split_name) if self.split_name else None
        self.split_fewshot_dir = osp.join(self.dataset_dir, "split_fewshot")

    def folder(self) -> str:
        """The dataset's folder under ``DATASET.ROOT`` (``dataset_dir`` unless it depends on
        the config)."""
        return type(self).dataset_dir

    @property
    def path_prefix(self) -> str:
        return self.dataset_dir if self.split_relative_to_dataset_dir else self.image_dir

    @property
    def split_is_json(self) -> bool:
        return bool(self.split_path) and not self.split_path.endswith(".pkl")

    def how_to_prepare(self) -> str:
        """The command that fetches what this dataset needs (for error messages)."""
        return (f"`python -m datasets.prepare download --dataset {type(self).__name__} --root "
                "<DATA>` fetches its split files and says which images to get and where")

    # ------------------------------------------------------------------ reading the split

    def read_splits(self) -> Splits:
        """Train/val/test as ``Datum`` lists; a split listed from the release is saved."""
        listed = self.read_split_file()
        generated = listed is None
        if generated:
            listed = self.list_release()

        splits = tuple(None if items is None else self.to_datums(items) for items in listed)
        if generated and self.split_path:
            self.save_split_file(*splits)
        return splits

    def list_splits(self) -> Splits:
        """Train/val/test as listed (split file, else release); writes and checks nothing."""
        return self.read_split_file() or self.list_release()

    def read_split_file(self) -> Optional[Splits]:
        """The lists in ``split_name``; None when there is no (readable) such file."""
        if not self.split_path or not osp.exists(self.split_path):
            return None
        if self.split_is_json:
            return read_split(self.split_path, self.path_prefix)

        data = load_fewshot(self.split_path, self.dataset_dir)
        if data is None or "train" not in data or "test" not in data:
            return None
        logger.info("Loaded the image lists from %s", self.split_path)
        return data["train"], data.get("val"), data["test"]

    def save_split_file(self, train, val, test) -> None:
        """Write the lists in ``split_name``'s format (CoOp's JSON, or Dassl's pickle)."""
        if self.split_is_json:
            save_split(train, val, test, self.split_path, self.path_prefix)
            return
        data = {"train": train, "test": test}
        if val is not None:
            data["val"] = val
        dump_fewshot(data, self.split_path)
        logger.info("Saved the image lists to %s", self.split_path)

    def list_release(self) -> Splits:
        """``generate_split``, with a missing file reported as what to download."""
        try:
            splits = self.generate_split()
        except (DatasetError, OSError) as error:
            cause = f" ({error})"
        else:
            if splits is not None:
                return splits
            cause = ""

        if self.split_is_json:
            generated = " and cannot be generated" if cause else ""
            raise DatasetError(f'Split file "{self.split_path}" is missing{generated}{cause}; '
                               f"{self.how_to_prepare()}")
        raise DatasetError(f'{type(self).__name__} cannot be read from "{self.dataset_dir}"'
                           f"{cause}; {self.how_to_prepare()}")

    def generate_split(self) -> Optional[Splits]:
        """List the split from the raw release (None: this dataset has no such recipe)."""
        return None

    def to_datums(self, items) -> List[Datum]:
        """``Datum`` objects for split items; a missing image names the check to run.

        With ``DATASET.SKIP_BAD_IMAGES`` missing images, and files PIL cannot identify as an
        image, are left out instead (and counted in ``skipped_images``).
        """
        datums = []
        for item in items:
            if isinstance(item, Datum):
                datums.append(item)
                continue
            if self.skip_bad_images and not is_readable_image(item.impath):
                self.skipped_images.append(item.impath)
                continue
            try:
                datums.append(Datum(impath=item.impath, label=item.label,
                                    classname=item.classname))
            except (AssertionError, FileNotFoundError) as error:
                raise DatasetError(
                    f'Image "{item.impath}" is listed in {type(self).__name__}\'s split but '
                    "does not exist; `python -m datasets.prepare check --dataset "
                    f"{type(self).__name__} --root {self.root}` lists every missing image, and "
                    "DATASET.SKIP_BAD_IMAGES True trains without such images"
                ) from error
        return datums

    # ------------------------------------------------------------------ few-shot lists

    def few_shot(self, cfg, train, val):
        """Draw (or load from the cache) ``NUM_SHOTS`` items per class of train, ≤4 of val.

        Without a val set of its own (ImageNet) only train is drawn and cached.
        """
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots < 1:
            return train, val
        warn_short_classes(train, num_shots)

        os.makedirs(self.split_fewshot_dir, exist_ok=True)
        path = osp.join(self.split_fewshot_dir, f"shot_{num_shots}-seed_{cfg.SEED}.pkl")
        data = load_fewshot(path, self.dataset_dir) if osp.exists(path) else None
        if data is not None:
            logger.info("Loading preprocessed few-shot data from %s", path)
            if val is None:  # no val set of its own (ImageNet): only train was cached
                return data["train"], None
            return data["train"], data.get("val", val)

        train = self.generate_fewshot_dataset(train, num_shots=num_shots)
        cache = {"train": train}
        if val is not None:
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
            cache["val"] = val
        logger.info("Saving preprocessed few-shot data to %s", path)
        dump_fewshot(cache, path)
        return train, val
