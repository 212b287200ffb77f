"""Utilities Dassl exposes from ``dassl.utils``: files, seeds, logging, meters, checkpoints."""
import datetime
import errno
import json
import logging
import os
import os.path as osp
import pickle
import random
import shutil
import sys
import time
from collections import OrderedDict, defaultdict
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from .files import atomic_write
from .registry import check_availability  # noqa: F401  (part of dassl.utils' surface)
from .registry import Registry  # noqa: F401

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- files

def mkdir_if_missing(dirname: str) -> None:
    """Create ``dirname`` and its parents; an existing directory is fine."""
    if not osp.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as error:
            if error.errno != errno.EEXIST:
                raise


def check_isfile(fpath: str) -> bool:
    """True if ``fpath`` is a file; logs a warning otherwise."""
    isfile = osp.isfile(fpath)
    if not isfile:
        logger.warning('No file found at "%s"', fpath)
    return isfile


def read_json(fpath: str) -> Any:
    with open(fpath, "r") as f:
        return json.load(f)


def write_json(obj: Any, fpath: str) -> None:
    """Write ``obj`` as indented JSON, creating the parent directory."""
    mkdir_if_missing(osp.dirname(fpath) or ".")
    with open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


class ImageReadError(OSError):
    """An image listed in a split that is missing or cannot be decoded."""


def read_image(path: str) -> Image.Image:
    """Open an image file as RGB; a missing or undecodable file raises ``ImageReadError``."""
    if not osp.exists(path):
        raise ImageReadError(f'No file exists at "{path}"')
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:  # PIL's ways of rejecting a file
        raise ImageReadError(f'Image "{path}" cannot be read ({error}); DATASET.SKIP_BAD_IMAGES '
                             "True skips the images PIL cannot open when the run starts") from error


def listdir_nohidden(path: str, sort: bool = False) -> List[str]:
    """Entries of ``path`` whose names do not start with a dot."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def tolist_if_not(x: Any) -> list:
    return x if isinstance(x, list) else [x]


# ----------------------------------------------------------------------------- environment

def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (all CUDA devices included)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def capture_rng_state() -> Dict[str, Any]:
    """Every global random state a training step reads, as tensors and plain values only.

    Stored in checkpoints, so a resumed run draws the same data order, augmentations and
    dropout as an uninterrupted one (``weights_only=True`` can read it back).
    """
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Put back the states ``capture_rng_state`` returned (CUDA ones only where there is CUDA)."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))

    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            logger.warning("The checkpoint holds the RNG states of %d GPUs, this machine has %d: "
                           "CUDA random states are not restored", len(state["cuda"]),
                           torch.cuda.device_count())


def collect_env_info() -> str:
    """PyTorch's environment report plus the Pillow version."""
    import PIL
    from torch.utils.collect_env import get_pretty_env_info

    return get_pretty_env_info() + f"\n        Pillow ({PIL.__version__})"


class _Tee:
    """Writes everything sent to the console into a log file as well."""

    def __init__(self, console, fpath: str):
        self.console = console
        self.file = open(fpath, "w")

    def write(self, msg: str) -> None:
        self.console.write(msg)
        self.file.write(msg)

    def flush(self) -> None:
        self.console.flush()
        self.file.flush()
        os.fsync(self.file.fileno())

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self.file.close()


class _CurrentStdoutHandler(logging.StreamHandler):
    """A logging handler bound to whatever ``sys.stdout`` is when a record is emitted.

    Dassl's ``setup_logger`` swaps ``sys.stdout`` for a tee; binding late keeps log records
    in ``log.txt`` whichever runtime installed the tee.
    """

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def install_console_logging(level: int = logging.INFO) -> None:
    """Send the project's log records to the current stdout as plain lines (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(h, _CurrentStdoutHandler) for h in root.handlers):
        return
    handler = _CurrentStdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


def setup_logger(output: Optional[str] = None) -> Optional[str]:
    """Copy the console into ``<output>/log.txt`` (or ``output`` itself if it ends in .txt/.log).

    An existing log file is never overwritten: the new one gets a ``-YYYY-MM-DD-HH-MM-SS``
    suffix, as in Dassl. Returns the path of the log file.
    """
    install_console_logging()
    if output is None:
        return None

    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")

    mkdir_if_missing(osp.dirname(fpath) or ".")
    console = sys.stdout.console if isinstance(sys.stdout, _Tee) else sys.stdout
    if isinstance(sys.stdout, _Tee):
        sys.stdout.close()
    sys.stdout = _Tee(console, fpath)
    return fpath


# ----------------------------------------------------------------------------- meters

class AverageMeter:
    """Running value, sum, count and average of a scalar."""

    def __init__(self, ema: bool = False):
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val = 0.0
        self.avg = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, val: Any, n: int = 1) -> None:
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = self.avg * 0.9 + self.val * 0.1
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """A dictionary of ``AverageMeter`` fed with the loss summaries of ``forward_backward``."""

    def __init__(self, delimiter: str = " "):
        self.meters: Dict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: Optional[dict]) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("MetricMeter.update() expects a dict of scalars")
        for key, value in input_dict.items():
            if isinstance(value, torch.Tensor):
                value = value.item()
            self.meters[key].update(value)

    def __str__(self) -> str:
        return self.delimiter.join(
            f"{name} {meter.val:.4f} ({meter.avg:.4f})" for name, meter in self.meters.items()
        )


def format_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


# ----------------------------------------------------------------------------- checkpoints

def _strip_module_prefix(state_dict: Dict[str, Any]) -> "OrderedDict[str, Any]":
    stripped = OrderedDict()
    for key, value in state_dict.items():
        stripped[key[7:] if key.startswith("module.") else key] = value
    return stripped


def save_checkpoint(
    state: Dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
) -> str:
    """Write ``state`` as ``model.pth.tar-<epoch>`` (or ``model_name``); note it in ``checkpoint``.

    The file written is atomic (temporary file then rename), so an interrupted save never
    leaves a truncated checkpoint behind.
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = _strip_module_prefix(state["state_dict"])

    fname = model_name or f"model.pth.tar-{state['epoch']}"
    fpath = osp.join(save_dir, fname)
    with atomic_write(fpath) as staging:
        torch.save(state, staging)
    logger.info("Checkpoint saved to %s", fpath)

    # The pointer is replaced only once the file it names is complete.
    with atomic_write(osp.join(save_dir, "checkpoint")) as staging:
        with open(staging, "w") as f:
            f.write(f"{fname}\n")

    if is_best:
        best_fpath = osp.join(save_dir, "model-best.pth.tar")
        with atomic_write(best_fpath) as staging:
            shutil.copy(fpath, staging)
        logger.info('Best checkpoint saved to "%s"', best_fpath)
    return fpath


class CheckpointFormatError(RuntimeError):
    """A checkpoint that cannot be read as tensors and plain containers only."""


def load_checkpoint(fpath: str) -> Dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code runs while loading)."""
    if fpath is None:
        raise ValueError("Checkpoint path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError(f'No checkpoint at "{fpath}"')

    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        return torch.load(fpath, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # the file needs objects other than tensors
        raise CheckpointFormatError(
            f'"{fpath}" holds pickled Python objects besides tensors, so it is refused: '
            "loading it would run code it carries (only weights_only=True loads are done). "
            "If you trust its origin, re-save only its tensors: torch.save({'state_dict': "
            "torch.load(path, weights_only=False)['state_dict'], 'epoch': ...}, path). "
            f"Loader said: {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, OSError) as error:  # truncated, damaged or not torch's
        raise CheckpointFormatError(
            f'"{fpath}" is damaged or is not a PyTorch checkpoint '
            f"({str(error).splitlines()[0]})") from error


def resume_from_checkpoint(fdir: str, model: nn.Module, optimizer=None, scheduler=None,
                           return_checkpoint: bool = False):
    """Load the file named in ``fdir/checkpoint`` into model, optimizer and scheduler.

    Returns the number of epochs that checkpoint had completed (and, with
    ``return_checkpoint``, the checkpoint itself, for the state kept beside the weights).
    """
    with open(osp.join(fdir, "checkpoint"), "r") as f:
        fname = f.read().strip()
    if not fname:
        raise CheckpointFormatError(f'"{osp.join(fdir, "checkpoint")}" names no checkpoint file')
    fpath = osp.join(fdir, fname)

    logger.info('Loading checkpoint from "%s"', fpath)
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    logger.info("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        logger.info("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        logger.info("Loaded scheduler")

    start_epoch = checkpoint["epoch"]
    logger.info("Previous epoch: %d", start_epoch)
    return (start_epoch, checkpoint) if return_checkpoint else start_epoch


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Copy the weights of ``weight_path`` whose name and shape match ``model``'s."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    model_dict = model.state_dict()

    matched, discarded = OrderedDict(), []
    for key, value in _strip_module_prefix(state_dict).items():
        if key in model_dict and model_dict[key].size() == value.size():
            matched[key] = value
        else:
            discarded.append(key)
    model_dict.update(matched)
    model.load_state_dict(model_dict)

    if not matched:
        logger.warning('No weights of "%s" match the model (check key names)', weight_path)
    else:
        logger.info('Loaded pretrained weights from "%s"', weight_path)
        if discarded:
            logger.info("Layers discarded (unmatched name or shape): %s", discarded)


def count_num_param(model: Optional[nn.Module] = None, params: Optional[Iterable] = None) -> int:
    """Number of parameters of ``model`` (or of the iterable ``params``)."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in params)
