"""Trainer base classes with Dassl's lifecycle: build data → build model → train → test.

``TrainerX`` drives labelled-data training. Subclasses implement ``build_model`` and
``forward_backward``; everything else (epochs, logging, checkpoints, resume, testing) is here.
"""
import datetime
import logging
import os.path as osp
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Union

import numpy as np
import torch
import torch.nn as nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from .data.manager import DataManager
from .evaluation import build_evaluator
from .registry import Registry, check_availability
from .utils import (AverageMeter, MetricMeter, capture_rng_state, format_eta, load_checkpoint,
                    mkdir_if_missing, restore_rng_state, resume_from_checkpoint,
                    save_checkpoint)

logger = logging.getLogger(__name__)

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg):
    """Instantiate the trainer registered under ``cfg.TRAINER.NAME``."""
    check_availability(cfg.TRAINER.NAME, TRAINER_REGISTRY.registered_names())
    if cfg.VERBOSE:
        logger.info("Loading trainer: %s", cfg.TRAINER.NAME)
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)


class TrainerBase:
    """Model registry (model/optimizer/scheduler per name), checkpoints and the epoch loop."""

    def __init__(self):
        self._models: "OrderedDict[str, nn.Module]" = OrderedDict()
        self._optims: "OrderedDict[str, Optional[torch.optim.Optimizer]]" = OrderedDict()
        self._scheds: "OrderedDict[str, object]" = OrderedDict()
        self._writer: Optional[SummaryWriter] = None

    def register_model(self, name: str = "model", model: Optional[nn.Module] = None,
                       optim=None, sched=None) -> None:
        if self.__dict__.get("_models") is None:
            raise AttributeError("Call super().__init__() before register_model()")
        if name in self._models:
            raise KeyError(f'A model named "{name}" is already registered')
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: Union[str, List[str], None] = None) -> List[str]:
        registered = list(self._models.keys())
        if names is None:
            return registered
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            if name not in registered:
                raise KeyError(f'No registered model named "{name}" (have {registered})')
        return names

    def save_model(self, epoch: int, directory: str, is_best: bool = False,
                   val_result: Optional[float] = None, model_name: str = "") -> None:
        """Write one checkpoint per registered model under ``directory/<name>/``.

        Besides Dassl's entries, each holds the global RNG states and ``checkpoint_extras()``,
        which a resumed run restores so that it continues exactly as an uninterrupted one.
        """
        rng_state = capture_rng_state()
        extras = self.checkpoint_extras()
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            save_checkpoint(
                {
                    "state_dict": self._models[name].state_dict(),
                    "epoch": epoch + 1,
                    "optimizer": optim.state_dict() if optim is not None else None,
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "val_result": val_result,
                    "rng_state": rng_state,
                    "extras": extras,
                },
                osp.join(directory, name),
                is_best=is_best,
                model_name=model_name,
            )

    def checkpoint_extras(self) -> dict:
        """Trainer state saved in every checkpoint (tensors and plain values only)."""
        return {}

    def restore_checkpoint_extras(self, extras: dict) -> None:
        """Take back what ``checkpoint_extras`` saved, when training resumes."""

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume every registered model from ``directory`` if all have checkpoints there."""
        names = self.get_model_names()
        if not names or not all(osp.exists(osp.join(directory, n, "checkpoint")) for n in names):
            logger.info("No checkpoint found, train from scratch")
            return 0

        logger.info('Found checkpoint at "%s" (will resume training)', directory)
        start_epoch, checkpoint = 0, {}
        for name in names:
            start_epoch, checkpoint = resume_from_checkpoint(
                osp.join(directory, name), self._models[name], self._optims[name],
                self._scheds[name], return_checkpoint=True)

        self.restore_checkpoint_extras(checkpoint.get("extras") or {})
        if checkpoint.get("rng_state") is not None:
            restore_rng_state(checkpoint["rng_state"])
            logger.info("Restored the random states saved with the checkpoint")
        else:
            logger.warning("The checkpoint holds no random states: the resumed run draws "
                           "different data orders than an uninterrupted one would")
        return start_epoch

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load ``model-best.pth.tar`` (or ``model.pth.tar-<epoch>``) into each model, strictly."""
        if not directory:
            logger.info("load_model() is skipped: no model directory given")
            return

        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise FileNotFoundError(f'No model at "{model_path}"')
            checkpoint = load_checkpoint(model_path)
            val_result = checkpoint.get("val_result")
            suffix = f", val_result = {val_result:.1f}" if val_result is not None else ""
            logger.info('Loading weights to %s from "%s" (epoch = %s%s)', name, model_path,
                        checkpoint["epoch"], suffix)
            self._models[name].load_state_dict(checkpoint["state_dict"])

    def set_model_mode(self, mode: str = "train", names=None) -> None:
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(f'Unknown model mode "{mode}"')

    def update_lr(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def init_writer(self, log_dir: str) -> None:
        if self._writer is None:
            logger.info("Initialize tensorboard (log_dir=%s)", log_dir)
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value, global_step=None) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch: int, max_epoch: int) -> None:
        """The epoch loop; ``before_train`` may move ``start_epoch`` (resume)."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch

        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def test(self, split: Optional[str] = None):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch) -> Dict[str, float]:
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    def model_zero_grad(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """Builds data, model and evaluator from the config; trains and tests."""

    def __init__(self, cfg):
        super().__init__()
        self.check_cfg(cfg)

        if torch.cuda.is_available() and cfg.USE_CUDA:
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")

        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR

        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg) -> None:
        """Validate trainer-specific settings before anything is built."""

    def build_data_loader(self) -> None:
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        raise NotImplementedError(
            "The built-in runtime has no generic classifier: a trainer must implement build_model()"
        )

    def train(self) -> None:
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)

        writer_dir = osp.join(self.output_dir, "tensorboard")
        mkdir_if_missing(writer_dir)
        self.init_writer(writer_dir)
        self.time_start = time.time()

    def after_train(self) -> None:
        logger.info("Finish training")

        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                logger.info("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                logger.info("Deploy the last-epoch model")
            self.test()

        elapsed = datetime.timedelta(seconds=round(time.time() - self.time_start))
        logger.info("Elapsed: %s", elapsed)
        self.close_writer()

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0

        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result,
                                model_name="model-best.pth.tar")

        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate on ``split`` (default ``TEST.SPLIT``) and return the first metric."""
        self.set_model_mode("eval")
        self.evaluator.reset()

        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        logger.info("Evaluate on the *%s* set", split)

        for batch in tqdm(data_loader, disable=None):
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)

        results = self.evaluator.evaluate()
        for key, value in results.items():
            self.write_scalar(f"{split}/{key}", value, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names=None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """A trainer that iterates over the labelled training loader only."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)

        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            print_freq = self.cfg.TRAIN.PRINT_FREQ
            if (self.batch_idx + 1) % print_freq == 0 or self.num_batches < print_freq:
                batches_left = self.num_batches - self.batch_idx - 1
                batches_left += (self.max_epoch - self.epoch - 1) * self.num_batches
                logger.info(
                    "epoch [%d/%d] batch [%d/%d] time %.3f (%.3f) data %.3f (%.3f) %s "
                    "lr %.4e eta %s",
                    self.epoch + 1, self.max_epoch, self.batch_idx + 1, self.num_batches,
                    batch_time.val, batch_time.avg, data_time.val, data_time.avg, losses,
                    self.get_current_lr(), format_eta(batch_time.avg * batches_left))

            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()

    def parse_batch_train(self, batch):
        return (batch["img"].to(self.device), batch["label"].to(self.device),
                batch["domain"].to(self.device))
