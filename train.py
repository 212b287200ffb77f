"""Train or evaluate a CLIP prompt learner; the command line of CoOp's train.py.

    python train.py --root DATA --trainer CoOpDOR --dataset-config-file configs/datasets/X.yaml \
        --config-file configs/trainers/CoOpDOR/vit_b16_ep50.yaml --output-dir OUT --seed 1 \
        DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base
"""
import argparse
import contextlib
import glob
import json
import logging
import os
import os.path as osp
import sys
import time
from typing import Optional

import torch

logger = logging.getLogger("train")


def reset_cfg(cfg, args) -> None:
    """Command-line flags override the config files when given (CoOp's ``reset_cfg``)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None and args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args):
    """Merge in CoOp's order: defaults, project keys, dataset yaml, method yaml, flags,
    ``opts``; then freeze."""
    from toolbox import get_cfg_default
    from trainers.config import extend_cfg

    cfg = get_cfg_default()
    extend_cfg(cfg)
    for path in (args.dataset_config_file, args.config_file):
        if path:
            if not osp.isfile(path):
                raise FileNotFoundError(f'Config file "{path}" does not exist')
            with config_errors(f'in "{path}"'):
                cfg.merge_from_file(path)
    reset_cfg(cfg, args)
    if len(args.opts) % 2:
        raise ValueError(f"opts must be KEY VALUE pairs; got {len(args.opts)} items: {args.opts}")
    with config_errors("on the command line"):
        cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


@contextlib.contextmanager
def config_errors(where: str):
    """Turn yacs' assertion, key and type errors into one readable ``ValueError``."""
    try:
        yield
    except (AssertionError, KeyError, ValueError) as error:
        detail = error.args[0] if error.args else repr(error)
        raise ValueError(f"Config error {where}: {detail}") from error


def save_config(cfg) -> str:
    """Write the resolved config as ``config.yaml``; beside a differing older one (which is
    left as it is) it goes to ``config.yaml-<time>``. Returns the path written or matched."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    path = osp.join(cfg.OUTPUT_DIR, "config.yaml")
    text = cfg.dump()
    if osp.exists(path):
        with open(path) as f:
            if f.read() == text:
                return path
        path += time.strftime("-%Y-%m-%d-%H-%M-%S")
        logger.info("config.yaml holds another config; this run's is in %s", path)
    with open(path, "w") as f:
        f.write(text)
    return path


def finished_run(cfg, args) -> Optional[str]:
    """The results file in OUTPUT_DIR of a finished run identical to this one, else None.

    Identical means the same config (locations aside) and, for ``--eval-only``, the same
    checkpoint file evaluated. A training run is finished only once its last epoch is saved;
    one trained with ``TEST.NO_TEST`` counts as finished then, under the same config.yaml.
    """
    from calibration.records import config_hash, results_filename

    pointers = glob.glob(osp.join(cfg.OUTPUT_DIR, "*", "checkpoint"))
    if not args.eval_only and not last_epoch_saved(pointers, cfg.OPTIM.MAX_EPOCH):
        return None  # an interrupted training run: re-running it resumes
    if cfg.TEST.NO_TEST and not args.eval_only:
        with contextlib.suppress(OSError):
            with open(osp.join(cfg.OUTPUT_DIR, "config.yaml")) as f:
                if pointers and f.read() == cfg.dump():
                    return osp.dirname(pointers[0])
        return None

    path = osp.join(cfg.OUTPUT_DIR, results_filename(cfg.TEST.SPLIT))
    try:
        with open(path) as f:
            record = json.load(f)
        provenance = record["provenance"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if provenance.get("config_sha256") != config_hash(cfg):
        return None
    if args.eval_only:
        evaluated = provenance.get("evaluated_checkpoint")
        if not args.model_dir:
            return path if evaluated is None else None
        wanted = "model-best.pth.tar" if args.load_epoch is None else \
            f"model.pth.tar-{args.load_epoch}"
        if not evaluated or osp.basename(evaluated) != wanted or \
                osp.dirname(osp.dirname(evaluated)) != osp.abspath(args.model_dir):
            return None
    return path


def last_epoch_saved(pointers, max_epoch: int) -> bool:
    """Whether every ``checkpoint`` pointer file names the checkpoint of the last epoch."""
    for pointer in pointers:
        try:
            with open(pointer) as f:
                if f.read().strip() != f"model.pth.tar-{max_epoch}":
                    return False
        except OSError:
            return False
    return True


def set_aside_outputs(cfg, args) -> Optional[str]:
    """Move this run's earlier outputs into ``OUTPUT_DIR/replaced-<time>/`` (for ``--force``).

    A training run moves everything (checkpoints too, so it starts afresh); an evaluation
    moves only what it writes (results, diagrams, predictions), since OUTPUT_DIR may also be
    the model directory.
    """
    if not osp.isdir(cfg.OUTPUT_DIR):
        return None
    if args.eval_only:
        patterns = ("results*.json", "reliability*.png", "predictions*.npz")
        entries = sorted({osp.basename(p) for pattern in patterns
                          for p in glob.glob(osp.join(cfg.OUTPUT_DIR, pattern))})
    else:
        entries = sorted(e for e in os.listdir(cfg.OUTPUT_DIR) if not e.startswith("replaced-"))
    if not entries:
        return None

    target = osp.join(cfg.OUTPUT_DIR, time.strftime("replaced-%Y-%m-%d-%H-%M-%S"))
    os.makedirs(target)
    for entry in entries:
        os.replace(osp.join(cfg.OUTPUT_DIR, entry), osp.join(target, entry))
    return target


def make_deterministic() -> None:
    """Ask CUDA for reproducible kernels (slower); CPU runs are reproducible without this."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def main(args) -> None:
    from calibration.records import config_hash
    from toolbox import BACKEND, build_trainer, collect_env_info, set_random_seed, setup_logger
    import datasets  # noqa: F401  (registers the dataset readers)
    import trainers  # noqa: F401  (registers the trainers)

    cfg = setup_cfg(args)
    finished = finished_run(cfg, args)
    if finished and not args.force:
        print(f'Skipped: "{cfg.OUTPUT_DIR}" already holds this finished run ({finished}); '
              "pass --force to run it again (its outputs are then kept in replaced-<time>/)",
              file=sys.stderr)
        return
    set_aside = set_aside_outputs(cfg, args) if args.force else None

    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if set_aside:
        logger.info("--force: the earlier outputs were moved to %s", set_aside)
    if cfg.SEED >= 0:
        logger.info("Setting fixed seed: %d", cfg.SEED)
    if args.deterministic:
        make_deterministic()
    elif torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True  # Dassl's setting: fastest kernels, not bitwise

    arguments = "\n".join(f"{k}: {v}" for k, v in sorted(vars(args).items()))
    logger.info("** Arguments **\n%s", arguments)
    logger.info("** Config ** (sha256 %s, toolbox %s)\n%s", config_hash(cfg), BACKEND, cfg)
    logger.info("** System info **\n%s\n", collect_env_info())
    save_config(cfg)

    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=str, default="", help="path to the datasets")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="",
                        help="checkpoint directory to resume training from")
    parser.add_argument("--seed", type=int, default=-1,
                        help="fixed seed when >= 0 (0 included)")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains (DA/DG)")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains (DA/DG)")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="method config file")
    parser.add_argument("--dataset-config-file", type=str, default="",
                        help="dataset config file")
    parser.add_argument("--trainer", type=str, default="", help="name of the trainer")
    parser.add_argument("--backbone", type=str, default="", help="CLIP backbone name")
    parser.add_argument("--head", type=str, default="", help="name of head (unused by CLIP)")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="",
                        help="load the model from this directory for evaluation")
    parser.add_argument("--load-epoch", type=int,
                        help="load the checkpoint of this epoch (default: model-best)")
    parser.add_argument("--no-train", action="store_true", help="build the trainer only")
    parser.add_argument("--force", action="store_true",
                        help="run even if OUTPUT_DIR holds this finished run; earlier outputs "
                             "are moved to OUTPUT_DIR/replaced-<time>/")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic CUDA kernels (slower; CPU runs are always "
                             "reproducible)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options from the command line (KEY VALUE ...)")
    return parser.parse_args(argv)


def user_errors() -> tuple:
    """Errors caused by the command line, the config, files on disk or a diverging loss
    (reported in one line)."""
    from clip_backbone.loader import WeightsUnavailableError
    from dor.vocabulary import VocabularyError
    from runtime.utils import CheckpointFormatError, ImageReadError
    from toolbox import ToolboxError
    from trainers.base import NonFiniteLossError

    return (ValueError, KeyError, FileNotFoundError, NotADirectoryError, AssertionError,
            WeightsUnavailableError, CheckpointFormatError, ToolboxError, VocabularyError,
            ImageReadError, NonFiniteLossError)


def one_line(error: BaseException) -> str:
    """The message of ``error``; for one re-raised from a data-loading worker, the original's."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    message = str(error)
    if "Original Traceback" in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[-1]
    return message


def cli(argv=None) -> int:
    """Run the command line; returns the exit status (2: bad input, reported in one line).

    Set DOR_DEBUG=1 to see the traceback of such an error instead.
    """
    args = parse_args(argv)
    try:
        main(args)
    except Exception as error:
        try:
            is_user_error = isinstance(error, user_errors())
        except Exception:  # the toolbox itself failed to import: that is the error to report
            is_user_error = True
        if not is_user_error or os.environ.get("DOR_DEBUG"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
