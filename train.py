"""Train or evaluate a CLIP prompt learner; the command line of CoOp's train.py.

    python train.py --root DATA --trainer CoOpDOR --dataset-config-file configs/datasets/X.yaml \
        --config-file configs/trainers/CoOpDOR/vit_b16_ep50.yaml --output-dir OUT --seed 1 \
        DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base
"""
import argparse
import contextlib
import logging
import os
import os.path as osp
import sys
import time

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
    """Turn yacs' assertion and key errors into one readable ``ValueError``."""
    try:
        yield
    except (AssertionError, KeyError) as error:
        detail = error.args[0] if error.args else repr(error)
        raise ValueError(f"Config error {where}: {detail}") from error


def save_config(cfg) -> None:
    """Write the resolved config as ``config.yaml``; a differing older one is kept, renamed."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    path = osp.join(cfg.OUTPUT_DIR, "config.yaml")
    text = cfg.dump()
    if osp.exists(path):
        with open(path) as f:
            if f.read() == text:
                return
        os.replace(path, path + time.strftime("-%Y-%m-%d-%H-%M-%S"))
    with open(path, "w") as f:
        f.write(text)


def main(args) -> None:
    from calibration.records import config_hash
    from toolbox import BACKEND, build_trainer, collect_env_info, set_random_seed, setup_logger
    import datasets  # noqa: F401  (registers the dataset readers)
    import trainers  # noqa: F401  (registers the trainers)

    cfg = setup_cfg(args)
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if cfg.SEED >= 0:
        logger.info("Setting fixed seed: %d", cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

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
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options from the command line (KEY VALUE ...)")
    return parser.parse_args(argv)


def user_errors() -> tuple:
    """Errors caused by the command line, the config or files on disk (reported in one line)."""
    from clip_backbone.loader import WeightsUnavailableError
    from dor.vocabulary import VocabularyError
    from runtime.utils import CheckpointFormatError
    from toolbox import ToolboxError

    return (ValueError, KeyError, FileNotFoundError, NotADirectoryError, AssertionError,
            WeightsUnavailableError, CheckpointFormatError, ToolboxError, VocabularyError)


if __name__ == "__main__":
    arguments = parse_args()
    try:
        main(arguments)
    except Exception as error:
        try:
            is_user_error = isinstance(error, user_errors())
        except Exception:  # the toolbox itself failed to import: that is the error to report
            is_user_error = True
        if not is_user_error:
            raise
        if os.environ.get("DOR_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
