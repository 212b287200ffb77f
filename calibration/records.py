"""What a run writes about each evaluation: ``results*.json`` with its provenance."""
import datetime
import hashlib
import json
import logging
import os
import os.path as osp
import subprocess
from typing import Any, Dict, Iterable, Optional

import torch

logger = logging.getLogger(__name__)

PROJECT_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROJECT_VERSION = "0.1.0"

# Keys that locate a run on disk but cannot change its numbers; the config hash ignores them.
LOCATION_KEYS = ("OUTPUT_DIR", "RESUME", "DATASET.ROOT")


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
            node = node[parent]
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


def results_filename(split: str) -> str:
    """``results.json`` for the test split, ``results_<split>.json`` for any other."""
    return "results.json" if split == "test" else f"results_{split}.json"


def write_results(output_dir: str, split: str, record: Dict[str, Any]) -> str:
    """Write one evaluation record atomically and return its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = osp.join(output_dir, results_filename(split))
    record = dict(record, written_at=datetime.datetime.now().isoformat(timespec="seconds"),
                  torch_version=torch.__version__)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)
    logger.info("Results written to %s", path)
    return path
