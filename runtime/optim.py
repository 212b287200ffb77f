"""Optimizer and learning-rate scheduler builders driven by ``cfg.OPTIM`` (Dassl semantics).

The warmup wrappers keep Dassl's schedule (epoch 0 at the warmup LR, then the successor
restarts from the base LR) but are written against the current ``LRScheduler`` API, and their
state dicts hold only plain values so checkpoints load with ``weights_only=True``.
"""
import logging
from typing import Iterable, Optional, Union

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LRScheduler

logger = logging.getLogger(__name__)

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]
AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


def _parameter_groups(model, optim_cfg):
    if not optim_cfg.STAGED_LR:
        return model.parameters() if isinstance(model, nn.Module) else model

    if not isinstance(model, nn.Module):
        raise TypeError("STAGED_LR needs an nn.Module to find NEW_LAYERS in")
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if not new_layers:
        logger.warning("STAGED_LR is set but NEW_LAYERS is empty")
    if isinstance(new_layers, str):
        new_layers = [new_layers]

    base_params, new_params = [], []
    for name, module in model.named_children():
        target = new_params if name in new_layers else base_params
        target.extend(module.parameters())
    return [
        {"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": new_params},
    ]


def build_optimizer(model: Union[nn.Module, Iterable], optim_cfg,
                    param_groups: Optional[list] = None) -> torch.optim.Optimizer:
    """Build the optimizer named ``optim_cfg.NAME`` over ``model`` (or explicit groups)."""
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ValueError(f'Unknown optimizer "{name}"; choose from {AVAI_OPTIMS}')

    if param_groups is not None:
        if optim_cfg.STAGED_LR:
            logger.warning("param_groups given: STAGED_LR is ignored")
        params = param_groups
    else:
        params = _parameter_groups(model, optim_cfg)

    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING,
                               nesterov=optim_cfg.SGD_NESTEROV)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=betas,
                                amsgrad=name == "amsgrad")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=optim_cfg.MOMENTUM,
                                   weight_decay=wd, alpha=optim_cfg.RMSPROP_ALPHA)
    return torch.optim.RAdam(params, lr=lr, weight_decay=wd, betas=betas)


class _WarmupScheduler(LRScheduler):
    """Runs a warmup rule for ``warmup_epoch`` epochs, then hands over to ``successor``."""

    def __init__(self, optimizer, successor: LRScheduler, warmup_epoch: int,
                 last_epoch: int = -1):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def warmup_lr(self) -> list:
        raise NotImplementedError

    def get_lr(self) -> list:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return self.warmup_lr()

    def step(self, epoch=None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        self.successor.load_state_dict(state.pop("successor"))
        self.__dict__.update(state)


class ConstantWarmupScheduler(_WarmupScheduler):
    """Warmup at a constant learning rate ``cons_lr``."""

    def __init__(self, optimizer, successor, warmup_epoch: int, cons_lr: float,
                 last_epoch: int = -1):
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def warmup_lr(self) -> list:
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_WarmupScheduler):
    """Warmup rising linearly from ``min_lr`` (epoch 0) to the base learning rate."""

    def __init__(self, optimizer, successor, warmup_epoch: int, min_lr: float,
                 last_epoch: int = -1):
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def warmup_lr(self) -> list:
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> LRScheduler:
    """Build the per-epoch scheduler of ``optim_cfg``, wrapped in a warmup when asked."""
    name = optim_cfg.LR_SCHEDULER
    if name not in AVAI_SCHEDS:
        raise ValueError(f'Unknown scheduler "{name}"; choose from {AVAI_SCHEDS}')

    stepsize, max_epoch = optim_cfg.STEPSIZE, optim_cfg.MAX_EPOCH
    if name == "single_step":
        step_size = stepsize[-1] if isinstance(stepsize, (list, tuple)) else stepsize
        if step_size <= 0:
            step_size = max_epoch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size,
                                                    gamma=optim_cfg.GAMMA)
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(f"multi_step needs a list of milestones, got {stepsize!r}")
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(stepsize),
                                                         gamma=optim_cfg.GAMMA)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(max_epoch))

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH,
                                                optim_cfg.WARMUP_CONS_LR)
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH,
                                              optim_cfg.WARMUP_MIN_LR)
        else:
            raise ValueError(f'Unknown WARMUP_TYPE "{optim_cfg.WARMUP_TYPE}" '
                             "(constant or linear)")
    return scheduler
