"""The one reader of CoOp-format datasets: split files, few-shot caches, base/new classes.

Every dataset follows the same steps: read (or generate and save) the fixed split → draw the
few-shot lists, cached per (shots, seed) under ``split_fewshot/`` → keep the base or new half
of the classes, relabelled from 0 → hand train/val/test to ``DatasetBase``.
"""
import io
import logging
import math
import os
import os.path as osp
import pickle
import random
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from toolbox import DatasetBase, Datum, listdir_nohidden, read_json, write_json

logger = logging.getLogger(__name__)

# Dassl pickles few-shot caches with this class path; both runtimes read and write it.
DASSL_DATUM_PATH = ("dassl.data.datasets.base_dataset", "Datum")
SUBSAMPLE_CHOICES = ("all", "base", "new")


class DatasetError(ValueError):
    """A dataset folder, split file or setting that cannot be read as asked."""


# ----------------------------------------------------------------------------- split files

def read_split(filepath: str, path_prefix: str) -> Tuple[List[Datum], List[Datum], List[Datum]]:
    """Read a CoOp split JSON (``train``/``val``/``test`` lists of [path, label, classname])."""
    logger.info("Reading split from %s", filepath)
    split = read_json(filepath)
    missing = [key for key in ("train", "val", "test") if key not in split]
    if missing:
        raise DatasetError(f'Split file "{filepath}" lacks the key(s) {missing}')

    def convert(items):
        return [Datum(impath=osp.join(path_prefix, impath), label=int(label),
                      classname=classname) for impath, label, classname in items]

    try:
        return convert(split["train"]), convert(split["val"]), convert(split["test"])
    except (FileNotFoundError, TypeError, ValueError) as error:
        raise DatasetError(f'Split file "{filepath}" does not match the images under '
                           f'"{path_prefix}": {error}') from error


def save_split(train, val, test, filepath: str, path_prefix: str) -> None:
    """Write a CoOp split JSON, image paths relative to ``path_prefix``."""
    def extract(items):
        return [(osp.relpath(item.impath, path_prefix), item.label, item.classname)
                for item in items]

    write_json({"train": extract(train), "val": extract(val), "test": extract(test)}, filepath)
    logger.info("Saved split to %s", filepath)


def split_trainval(trainval: Sequence[Datum], p_val: float = 0.2):
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


def read_and_split_data(image_dir: str, p_trn: float = 0.5, p_val: float = 0.2,
                        ignored: Iterable[str] = (), new_cnames: Optional[Dict[str, str]] = None):
    """Split a ``<class>/<image>`` folder per class into train/val/test (50/20/30 by default).

    Classes are the sorted sub-folders; images are listed in sorted order before shuffling so
    the split depends only on the seed, not on the file system's listing order.
    """
    categories = sorted(c for c in listdir_nohidden(image_dir) if c not in set(ignored))
    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = osp.join(image_dir, category)
        images = [osp.join(category_dir, im) for im in listdir_nohidden(category_dir, sort=True)]
        random.shuffle(images)
        n_train = round(len(images) * p_trn)
        n_val = round(len(images) * p_val)
        if min(n_train, n_val, len(images) - n_train - n_val) <= 0:
            raise DatasetError(f'Class folder "{category_dir}" has too few images to split')

        name = (new_cnames or {}).get(category, category)
        for target, chunk in ((train, images[:n_train]),
                              (val, images[n_train:n_train + n_val]),
                              (test, images[n_train + n_val:])):
            target.extend(Datum(impath=im, label=label, classname=name) for im in chunk)
    return train, val, test


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


# ----------------------------------------------------------------------------- few-shot cache

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
    """Write a few-shot cache atomically, in the format Dassl-based code reads."""
    buffer = io.BytesIO()
    _DatumPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(data)
    with open(path + ".tmp", "wb") as f:
        f.write(buffer.getvalue())
    os.replace(path + ".tmp", path)


def load_fewshot(path: str, dataset_dir: str) -> Optional[dict]:
    """Read a few-shot cache; None when it is unreadable (it is then rebuilt).

    A cache written under another ``DATASET.ROOT`` holds absolute paths from there; paths are
    re-rooted at this ``dataset_dir`` when the image exists at the same relative place.
    """
    try:
        with open(path, "rb") as f:
            data = _DatumUnpickler(f).load()
    except Exception as error:  # truncated, foreign or corrupt: all mean "rebuild it"
        logger.warning('Ignoring unreadable few-shot cache "%s" (%s); rebuilding it', path, error)
        return None

    folder = osp.basename(osp.normpath(dataset_dir))
    for key, items in data.items():
        data[key] = [_reroot(item, folder, dataset_dir) for item in items]
    return data


def _reroot(item: Datum, folder: str, dataset_dir: str) -> Datum:
    if osp.exists(item.impath):
        return item
    marker = os.sep + folder + os.sep
    if marker in item.impath:
        candidate = osp.join(dataset_dir, item.impath.rsplit(marker, 1)[1])
        if osp.exists(candidate):
            return Datum(impath=candidate, label=item.label, domain=item.domain,
                         classname=item.classname)
    raise DatasetError(f'Few-shot cache lists "{item.impath}", which does not exist here; '
                       "delete the cache file to draw the few-shot lists again")


# ----------------------------------------------------------------------------- the reader

class CoOpDataset(DatasetBase):
    """A dataset laid out as in CoOp's DATASETS.md, read through its split file.

    Subclasses set ``dataset_dir`` (folder under ``DATASET.ROOT``), ``image_dir`` (relative
    to it), ``split_name`` and, when the split can be generated from the raw release,
    ``generate_split``. ``path_prefix`` is what split paths are relative to (the image
    folder unless a subclass says otherwise).
    """

    dataset_dir = ""
    image_dir = ""
    split_name = ""
    split_relative_to_dataset_dir = False

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        if not cfg.DATASET.ROOT or not osp.isdir(root):
            raise DatasetError(f'DATASET.ROOT "{cfg.DATASET.ROOT}" is not a directory '
                               "(set it with --root)")
        self.dataset_dir = osp.join(root, type(self).dataset_dir)
        if not osp.isdir(self.dataset_dir):
            raise DatasetError(f'{type(self).__name__} expects its files in "{self.dataset_dir}"'
                               ", which does not exist (see DATASETS.md for the layout)")
        self.image_dir = osp.join(self.dataset_dir, type(self).image_dir)
        self.split_path = osp.join(self.dataset_dir, self.split_name) if self.split_name else None
        self.split_fewshot_dir = osp.join(self.dataset_dir, "split_fewshot")

        train, val, test = self.read_splits()
        train, val = self.few_shot(cfg, train, val)
        train, val, test = subsample_classes(train, val, test,
                                             subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)

    @property
    def path_prefix(self) -> str:
        return self.dataset_dir if self.split_relative_to_dataset_dir else self.image_dir

    def read_splits(self):
        """Train/val/test from the split file, generating and saving it if the subclass can."""
        if osp.exists(self.split_path):
            return read_split(self.split_path, self.path_prefix)

        how = (f"download it with `python -m datasets.prepare download --dataset "
               f"{type(self).__name__} --root <DATA>`")
        try:
            train_val_test = self.generate_split()
        except (DatasetError, FileNotFoundError) as error:
            raise DatasetError(f'Split file "{self.split_path}" is missing and cannot be '
                               f"generated ({error}); {how}") from error
        if train_val_test is None:
            raise DatasetError(f'Split file "{self.split_path}" is missing; {how}')
        save_split(*train_val_test, self.split_path, self.path_prefix)
        return train_val_test

    def generate_split(self):
        """Build the split from the raw release (None: this dataset has no such recipe)."""
        return None

    def few_shot(self, cfg, train, val):
        """Draw (or load from the cache) ``NUM_SHOTS`` items per class of train, ≤4 of val."""
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots < 1:
            return train, val

        os.makedirs(self.split_fewshot_dir, exist_ok=True)
        path = osp.join(self.split_fewshot_dir, f"shot_{num_shots}-seed_{cfg.SEED}.pkl")
        data = load_fewshot(path, self.dataset_dir) if osp.exists(path) else None
        if data is not None:
            logger.info("Loading preprocessed few-shot data from %s", path)
            return data["train"], data.get("val", val)

        train = self.generate_fewshot_dataset(train, num_shots=num_shots)
        val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        logger.info("Saving preprocessed few-shot data to %s", path)
        dump_fewshot({"train": train, "val": val}, path)
        return train, val
