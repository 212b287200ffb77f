"""Evaluators (``TEST.EVALUATOR``) and ``compute_accuracy``, as Dassl provides them."""
import logging
import os.path as osp
from collections import OrderedDict, defaultdict
from typing import List, Optional, Sequence

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score

from .registry import Registry, check_availability

logger = logging.getLogger(__name__)

EVALUATOR_REGISTRY = Registry("EVALUATOR")


def compute_accuracy(output, target: torch.Tensor,
                     topk: Sequence[int] = (1,)) -> List[torch.Tensor]:
    """Top-k accuracies in percent, one-element tensors (a tuple output uses its first item)."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True) * (100.0 / batch_size)
            for k in topk]


class EvaluatorBase:
    """Accumulates model outputs over a split, then summarises them."""

    def __init__(self, cfg):
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo, gt) -> None:
        raise NotImplementedError

    def evaluate(self) -> "OrderedDict[str, float]":
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error rate and macro-F1 (percent) of argmax predictions."""

    def __init__(self, cfg, lab2cname: Optional[dict] = None, **kwargs):
        super().__init__(cfg)
        self._lab2cname = lab2cname
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise ValueError("TEST.PER_CLASS_RESULT needs lab2cname")
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: List[int] = []
        self._y_pred: List[int] = []
        self._per_class_res = defaultdict(list) if self.cfg.TEST.PER_CLASS_RESULT else None

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        pred = mo.max(1)[1]
        matches = pred.eq(gt).float()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.cpu().tolist())
        self._y_pred.extend(pred.cpu().tolist())
        if self._per_class_res is not None:
            for label, hit in zip(gt.cpu().tolist(), matches.cpu().tolist()):
                self._per_class_res[label].append(int(hit))

    def evaluate(self) -> "OrderedDict[str, float]":
        results = OrderedDict()
        acc = 100.0 * self._correct / max(self._total, 1)
        macro_f1 = 100.0 * f1_score(self._y_true, self._y_pred, average="macro",
                                    labels=np.unique(self._y_true))
        results["accuracy"] = acc
        results["error_rate"] = 100.0 - acc
        results["macro_f1"] = macro_f1

        logger.info("=> result\n* total: %s\n* correct: %s\n* accuracy: %.2f%%\n"
                    "* error: %.2f%%\n* macro_f1: %.2f%%",
                    f"{self._total:,}", f"{self._correct:,}", acc, 100.0 - acc, macro_f1)

        if self._per_class_res is not None:
            accs = []
            logger.info("=> per-class result")
            for label in sorted(self._per_class_res):
                hits = self._per_class_res[label]
                class_acc = 100.0 * sum(hits) / len(hits)
                accs.append(class_acc)
                logger.info("* class: %d (%s)\ttotal: %s\tcorrect: %s\tacc: %.2f%%", label,
                            self._lab2cname[label], f"{len(hits):,}", f"{sum(hits):,}",
                            class_acc)
            results["perclass_accuracy"] = float(np.mean(accs))
            logger.info("* average: %.2f%%", results["perclass_accuracy"])

        if self.cfg.TEST.COMPUTE_CMAT:
            cmat = confusion_matrix(self._y_true, self._y_pred, normalize="true")
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            torch.save(cmat, save_path)
            logger.info('Confusion matrix is saved to "%s"', save_path)
        return results


def build_evaluator(cfg, **kwargs) -> EvaluatorBase:
    """Instantiate the evaluator named by ``cfg.TEST.EVALUATOR``."""
    check_availability(cfg.TEST.EVALUATOR, EVALUATOR_REGISTRY.registered_names())
    if cfg.VERBOSE:
        logger.info("Loading evaluator: %s", cfg.TEST.EVALUATOR)
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)
