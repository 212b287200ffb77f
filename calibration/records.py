"""What a run writes about each evaluation: ``results*.json`` with its provenance."""
import hashlib
import json
import logging
import os
import os.path as osp
import subprocess
from typing import Any, Dict, Iterable, Optional, Sequence

import numpy as np
import torch

from runtime.files import atomic_write

logger = logging.getLogger(__name__)

PROJECT_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROJECT_VERSION = "0.1.0"

# Keys that locate a run on disk but cannot change its numbers; the config hash ignores them.
LOCATION_KEYS = ("OUTPUT_DIR", "RESUME", "DATASET.ROOT", "TRAINER.DOR.CACHE_DIR")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Optional[str]) -> Optional[str]:
    if not path or not osp.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def config_hash(cfg) -> str:
    """SHA-256 of the resolved config with the location keys blanked out."""
    clone = cfg.clone()
    clone.defrost()
    for dotted in LOCATION_KEYS:
        node = clone
        *parents, leaf = dotted.split(".")
        for parent in parents:
            node = node.get(parent) if node is not None else None
        if node is not None and leaf in node:
            node[leaf] = ""
    return sha256_text(clone.dump())


def datum_list_hash(items: Iterable, root: str) -> str:
    """Order-free SHA-256 of (image path relative to the data root, label) pairs."""
    lines = sorted(
        f"{osp.relpath(item.impath, root) if root else item.impath}\t{item.label}"
        for item in items
    )
    return sha256_text("\n".join(lines))


def project_version() -> str:
    """The git commit of the project (with ``-dirty`` for local changes), else its version."""
    try:
        commit = subprocess.run(["git", "-C", PROJECT_ROOT, "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run(["git", "-C", PROJECT_ROOT, "status", "--porcelain",
                                 "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return PROJECT_VERSION
    return commit.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def split_filename(stem: str, split: str, extension: str) -> str:
    """``<stem>.<extension>`` for the test split, ``<stem>_<split>.<extension>`` for others."""
    return f"{stem}.{extension}" if split == "test" else f"{stem}_{split}.{extension}"


def results_filename(split: str) -> str:
    """``results.json`` for the test split, ``results_<split>.json`` for any other."""
    return split_filename("results", split, "json")


def predictions_filename(split: str) -> str:
    """``predictions.npz`` for the test split, ``predictions_<split>.npz`` for any other."""
    return split_filename("predictions", split, "npz")


def reliability_filename(split: str) -> str:
    """``reliability.png`` for the test split, ``reliability_<split>.png`` for any other."""
    return split_filename("reliability", split, "png")


def write_results(output_dir: str, split: str, record: Dict[str, Any]) -> str:
    """Write one evaluation record atomically and return its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = osp.join(output_dir, results_filename(split))
    provenance = dict(record.get("provenance") or {}, torch_version=torch.__version__)
    record = dict(record, provenance=provenance)
    with atomic_write(path) as staging, open(staging, "w") as f:
        json.dump(record, f, indent=2)
    logger.info("Results written to %s", path)
    return path


def read_results(path: str) -> Dict[str, Any]:
    """A results record from a ``results*.json`` file or a run directory's ``results.json``."""
    if osp.isdir(path):
        path = osp.join(path, results_filename("test"))
    if not osp.isfile(path):
        raise FileNotFoundError(f'No results file at "{path}"')
    with open(path) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f'"{path}" is not valid JSON: {error}') from error
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        raise ValueError(f'"{path}" has no "metrics" record')
    return record


def save_predictions(output_dir: str, split: str, probs: np.ndarray, labels: np.ndarray,
                     classnames: Sequence[str]) -> str:
    """Write per-sample probabilities, argmax predictions and labels as an ``.npz``.

    Arrays: ``probs`` (float32 [N, C], the softmax the metrics were computed from),
    ``predictions`` and ``labels`` (int64 [N]), ``classnames`` (str [C]) and ``split``.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = osp.join(output_dir, predictions_filename(split))
    probs = np.asarray(probs, dtype=np.float32)
    with atomic_write(path) as staging, open(staging, "wb") as f:
        np.savez(f, probs=probs, predictions=probs.argmax(axis=1).astype(np.int64),
                 labels=np.asarray(labels, dtype=np.int64),
                 classnames=np.array(list(classnames), dtype=str), split=np.array(split))
    logger.info("Predictions written to %s", path)
    return path


def load_predictions(path: str) -> Dict[str, Any]:
    """The arrays of a predictions ``.npz`` (see ``save_predictions``), checked for shape."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'No predictions file at "{path}"')
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise ValueError(f'"{path}" is not a predictions .npz file: {error}') from error

    missing = {"probs", "labels"} - set(arrays)
    if missing:
        raise ValueError(f'"{path}" lacks the array(s) {sorted(missing)}')
    probs, labels = arrays["probs"], arrays["labels"]
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f'"{path}": probs {probs.shape} and labels {labels.shape} do not '
                         "fit ([N, C] and [N])")
    return arrays
