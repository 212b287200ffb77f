"""The one place trainers and datasets import the Dassl API from.

It resolves to the real Dassl when the process has already imported it (a Dassl-based
repository loading this project's trainers: plugin mode) or when ``DOR_TOOLBOX=dassl``, and to
the project's built-in runtime otherwise (``DOR_TOOLBOX=builtin`` forces it).

In either case the optimizer and scheduler builders come from the built-in runtime: Dassl
0.6.3's warmup schedulers pass an argument PyTorch 2.7 removed, and the built-in builders
produce the same learning rates. Checkpoints are always read with ``weights_only=True``, and
``atomic_write`` (the project's own) writes files whole.
"""
import logging
import os
import sys

from runtime.files import atomic_write
from runtime.optim import build_lr_scheduler, build_optimizer
from runtime.utils import install_console_logging, load_checkpoint

_CHOICES = ("builtin", "dassl")


class ToolboxError(RuntimeError):
    """The requested Dassl implementation cannot be used."""


def _requested_backend() -> str:
    requested = os.environ.get("DOR_TOOLBOX", "").strip().lower()
    if requested and requested not in _CHOICES:
        raise ToolboxError(f'DOR_TOOLBOX must be one of {_CHOICES}, got "{requested}"')
    if requested:
        return requested
    return "dassl" if "dassl" in sys.modules else "builtin"


BACKEND = _requested_backend()

if BACKEND == "dassl":
    try:
        from dassl.config import get_cfg_default
        from dassl.data import DataManager, DatasetWrapper
        from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
        from dassl.data.transforms import INTERPOLATION_MODES, build_transform
        from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
        from dassl.evaluation import EVALUATOR_REGISTRY, Classification, build_evaluator
        from dassl.metrics import compute_accuracy
        from dassl.utils import (AverageMeter, MetricMeter, Registry, check_availability,
                                 collect_env_info, count_num_param, listdir_nohidden,
                                 load_pretrained_weights, mkdir_if_missing, read_image,
                                 read_json, resume_from_checkpoint, save_checkpoint,
                                 set_random_seed, setup_logger, write_json)
    except ImportError as error:
        raise ToolboxError(
            "DOR_TOOLBOX=dassl, but Dassl cannot be imported: install Dassl.pytorch "
            f"(github.com/KaiyangZhou/Dassl.pytorch) or unset DOR_TOOLBOX. ({error})"
        ) from error
    # Importing Dassl imports WILDS, which disables logging below WARNING process-wide.
    logging.disable(logging.NOTSET)
else:
    from runtime.config import get_cfg_default
    from runtime.data import (DATASET_REGISTRY, INTERPOLATION_MODES, DataManager, DatasetBase,
                              DatasetWrapper, Datum, build_dataset, build_transform)
    from runtime.engine import TRAINER_REGISTRY, TrainerX, build_trainer
    from runtime.evaluation import (EVALUATOR_REGISTRY, Classification, build_evaluator,
                                    compute_accuracy)
    from runtime.registry import Registry, check_availability
    from runtime.utils import (AverageMeter, MetricMeter, collect_env_info, count_num_param,
                               listdir_nohidden, load_pretrained_weights, mkdir_if_missing,
                               read_image, read_json, resume_from_checkpoint, save_checkpoint,
                               set_random_seed, setup_logger, write_json)

install_console_logging()
_logger = logging.getLogger(__name__)


def _register_into(registry):
    """A decorator registering into ``registry``; in plugin mode a name the host already
    registered is left to the host (its own CoOp stays CoOp) instead of raising."""

    def decorator(obj):
        if obj.__name__ in registry.registered_names():
            if BACKEND == "dassl":
                _logger.debug("%s is already registered by the host; keeping its version",
                              obj.__name__)
                return obj
        registry.register(obj)
        return obj

    return decorator


register_trainer = _register_into(TRAINER_REGISTRY)
register_dataset = _register_into(DATASET_REGISTRY)

__all__ = [
    "BACKEND", "AverageMeter", "atomic_write", "Classification", "DATASET_REGISTRY", "DataManager",
    "DatasetBase", "DatasetWrapper", "Datum", "EVALUATOR_REGISTRY", "INTERPOLATION_MODES",
    "MetricMeter", "Registry", "TRAINER_REGISTRY", "TrainerX", "build_dataset",
    "build_evaluator", "build_lr_scheduler", "build_optimizer", "build_trainer",
    "build_transform", "check_availability", "collect_env_info", "compute_accuracy",
    "count_num_param", "get_cfg_default", "listdir_nohidden", "load_checkpoint",
    "load_pretrained_weights", "mkdir_if_missing", "read_image", "read_json",
    "register_dataset", "register_trainer", "resume_from_checkpoint", "save_checkpoint",
    "set_random_seed", "setup_logger", "write_json",
]
