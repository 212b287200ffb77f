"""Shared end-to-end checks for the prompt learners: one short training run whose weights are
compared before and after, and the eval-only reloads that must reproduce or extend it."""
import os.path as osp
import sys
from dataclasses import dataclass

import torch

import datasets  # noqa: F401  (registers the dataset readers)
import train
import trainers  # noqa: F401  (registers the trainers)
from conftest import read_results, run_train, tiny_argv
from toolbox import build_trainer, set_random_seed, setup_logger

NEW_CLASSES = ["bicycle", "tree", "house", "fish", "lamp"]


@dataclass
class TrainedRun:
    trainer: object
    output_dir: str
    before: dict  # full model state dict before training
    after: dict
    log: str

    def changed(self) -> set:
        return {k for k in self.before if not torch.equal(self.before[k], self.after[k])}

    def learnable_shapes(self) -> dict:
        return {n: tuple(p.shape) for n, p in self.trainer.model.named_parameters()
                if p.requires_grad}


def train_tiny(data_root: str, trainer_name: str, output_dir, *opts) -> TrainedRun:
    """Train ``trainer_name`` on the generated base classes as train.py would, keeping the
    trainer and its full state dict before and after training."""
    argv = [str(a) for a in tiny_argv(data_root, trainer_name, output_dir, *opts)]
    cfg = train.setup_cfg(train.parse_args(argv))
    set_random_seed(cfg.SEED)
    stdout = sys.stdout
    try:
        setup_logger(cfg.OUTPUT_DIR)
        trainer = build_trainer(cfg)
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.train()
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
    with open(osp.join(cfg.OUTPUT_DIR, "log.txt")) as f:
        log = f.read()
    return TrainedRun(trainer, str(output_dir), before, trainer.model.state_dict(), log)


def check_reload_and_new_classes(data_root: str, trainer_name: str, run: TrainedRun,
                                 tmp_path) -> None:
    """``--eval-only --load-epoch 3`` reproduces the run's metrics; new classes evaluate."""
    trained = read_results(run.output_dir)
    assert trained["epoch"] == 3 and trained["num_classes"] == 5

    reloaded = tmp_path / "eval"
    run_train(tiny_argv(data_root, trainer_name, reloaded,
                        flags=["--eval-only", "--model-dir", run.output_dir, "--load-epoch", 3]))
    assert read_results(reloaded)["metrics"] == trained["metrics"]
    assert read_results(reloaded)["epoch"] == 3

    new = tmp_path / "new"
    run_train(tiny_argv(data_root, trainer_name, new, subsample="new",
                        flags=["--eval-only", "--model-dir", run.output_dir, "--load-epoch", 3]))
    results = read_results(new)
    assert results["classnames"] == NEW_CLASSES and results["num_samples"] == 50
    assert results["epoch"] == 3 and 0.0 <= results["metrics"]["accuracy"] <= 100.0
