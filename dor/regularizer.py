"""``DORMixin``: Dynamic Outlier Regularization for any prompt learner of this project.

Mixed in front of a trainer (``class CoOpDOR(DORMixin, CoOp)``), it adds

    loss = loss_task + λ · (1 − mean_o cos(f_tuned(o), f_zeroshot(o)))

over outlier labels o drawn from the near-OOD pool every epoch (or iteration). The zero-shot
features are computed once with the frozen CLIP; the tuned ones go through the learner's own
prompted text path (``model.label_text_features(model.label_prompts(names))``), so deep,
class-aware or instance-conditioned prompts are regularised exactly as the learner uses them.
The pool is built when training starts, so evaluation-only runs need no vocabulary.
"""
import hashlib
import json
import logging
import os
import os.path as osp
import random
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F

from clip_backbone.prompted import encode_labels
from clip_backbone.templates import zeroshot_template

from .pool import FeatureCache, OutlierPool, oracle_pool, select_pool, vocabulary_features
from .sampler import OutlierSampler
from .vocabulary import load_vocabulary

logger = logging.getLogger(__name__)

RESAMPLE_CHOICES = ("epoch", "iter")


def pool_hash(labels) -> str:
    """SHA-256 of the pool's labels in pool order (what the draws index into)."""
    return hashlib.sha256("\n".join(labels).encode("utf-8")).hexdigest()


def _unwrap(model):
    return model.module if isinstance(model, torch.nn.DataParallel) else model


class DORMixin:
    """Adds the outlier regulariser to ``compute_loss`` of the trainer it is mixed into."""

    @property
    def dor_cfg(self):
        return self.cfg.TRAINER.DOR

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        dor = cfg.TRAINER.DOR
        if dor.RESAMPLE not in RESAMPLE_CHOICES:
            raise ValueError(f"TRAINER.DOR.RESAMPLE must be one of {RESAMPLE_CHOICES}")
        if dor.LAMBDA < 0:
            raise ValueError("TRAINER.DOR.LAMBDA must be non-negative")
        if dor.POOL_SIZE < 1 or dor.NUM_OUTLIERS < 1:
            raise ValueError("TRAINER.DOR.POOL_SIZE and NUM_OUTLIERS must be positive")
        if dor.STRATEGY != "oracle" and dor.NUM_OUTLIERS > dor.POOL_SIZE:
            raise ValueError(f"TRAINER.DOR.NUM_OUTLIERS ({dor.NUM_OUTLIERS}) exceeds POOL_SIZE "
                             f"({dor.POOL_SIZE}): each draw takes distinct pool labels")

    # ------------------------------------------------------------------ pool

    def dor_template(self) -> str:
        """The template both the pool scores and the zero-shot targets use."""
        return zeroshot_template(self.cfg.DATASET.NAME)

    def dor_seed(self) -> int:
        """The run's seed, or one drawn from the OS (and logged) when the run has none."""
        if self.cfg.SEED >= 0:
            return self.cfg.SEED
        seed = random.SystemRandom().randrange(2 ** 31)
        logger.info("No fixed SEED: outlier draws use seed %d", seed)
        return seed

    def new_classnames(self):
        """The dataset's new classes; read only for the ``oracle`` ablation."""
        from toolbox import build_dataset

        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATASET.SUBSAMPLE_CLASSES = "new"
        return build_dataset(cfg).classnames

    @torch.no_grad()
    def build_outlier_pool(self) -> OutlierPool:
        """Score the vocabulary against the training (base) classes and select the pool."""
        dor = self.dor_cfg
        clip_model = self.clip_info.model.to(self.device)
        template = self.dor_template()
        base_features = encode_labels(clip_model, self.dm.dataset.classnames, template,
                                      device=self.device)

        if dor.STRATEGY == "oracle":
            logger.warning("DOR oracle ablation: the pool is the dataset's NEW class names")
            return oracle_pool(clip_model, self.new_classnames(), base_features, template,
                               device=self.device)

        vocabulary = load_vocabulary(dor.VOCAB, dor.WORDNET_DIR)
        features = vocabulary_features(
            clip_model, vocabulary, template, self.clip_info.backbone, self.clip_info.weights_id,
            FeatureCache(dor.CACHE_DIR), batch_size=dor.ENCODE_BATCH_SIZE, device=self.device)
        pool = select_pool(vocabulary, features, base_features, self.dm.dataset.classnames,
                           dor.STRATEGY, dor.POOL_SIZE, self.dor_state["seed"])
        logger.info("DOR pool: %d %s labels of %d (%d excluded as base names or synonyms)",
                    len(pool), dor.STRATEGY, len(vocabulary.labels), pool.num_excluded)
        self.dor_state["vocabulary"] = {"source": vocabulary.source,
                                        "num_labels": len(vocabulary.labels),
                                        "sha256": vocabulary.sha256}
        return pool

    def checkpoint_extras(self) -> dict:
        """The draw seed and the pool's identity: a resumed run must draw from the same pool."""
        extras = super().checkpoint_extras()
        extras["dor"] = {"seed": self.dor_state["seed"],
                         "pool_sha256": self.dor_state["pool_sha256"]}
        return extras

    def restore_checkpoint_extras(self, extras: dict) -> None:
        super().restore_checkpoint_extras(extras)
        self.resumed_dor_state = extras.get("dor")

    def before_train(self) -> None:
        super().before_train()
        dor = self.dor_cfg
        resumed = getattr(self, "resumed_dor_state", None)
        seed = resumed["seed"] if resumed else self.dor_seed()
        self.dor_state = {"seed": seed, "template": self.dor_template()}
        self.outlier_pool = self.build_outlier_pool()
        self.dor_state["pool_sha256"] = pool_hash(self.outlier_pool.labels)
        if resumed and resumed["pool_sha256"] != self.dor_state["pool_sha256"]:
            raise ValueError(
                f'The outlier pool differs from the one the checkpoint in "{self.output_dir}" '
                "was trained with (the vocabulary, the DOR settings or the weights changed), so "
                "resuming would not continue that run; restore them, or start afresh with "
                "--force")
        if dor.NUM_OUTLIERS > len(self.outlier_pool):
            raise ValueError(f"TRAINER.DOR.NUM_OUTLIERS ({dor.NUM_OUTLIERS}) exceeds the "
                             f"{len(self.outlier_pool)} labels of the {dor.STRATEGY} pool")
        self.outlier_targets = self.outlier_pool.features.to(self.device)
        self.outlier_sampler = OutlierSampler(self.outlier_pool.scores, dor.NUM_OUTLIERS,
                                              self.dor_state["seed"], dor.SAMPLING,
                                              dor.TEMPERATURE)
        self.dor_dir = osp.join(self.output_dir, "dor")
        os.makedirs(self.dor_dir, exist_ok=True)
        self.outlier_pool.write_tsv(osp.join(self.dor_dir, "pool.tsv"))
        with open(osp.join(self.dor_dir, "settings.json"), "w") as f:
            json.dump(self.dor_provenance(), f, indent=2)

    # ------------------------------------------------------------------ sampling

    def draw_outliers(self, iteration: Optional[int] = None) -> None:
        """Draw this epoch's (or iteration's) outliers and prepare their prompts."""
        index = self.outlier_sampler.draw(self.epoch, iteration)
        names = [self.outlier_pool.labels[i] for i in index.tolist()]
        self.outlier_index = index.to(self.device)
        self.outlier_prompts = _unwrap(self.model).label_prompts(names)

        path = osp.join(self.dor_dir, f"outliers_epoch{self.epoch + 1}.txt")
        if iteration is None:
            with open(path, "w") as f:
                f.write("\n".join(names) + "\n")
        else:
            with open(path, "w" if iteration == 0 else "a") as f:
                f.writelines(f"{iteration}\t{name}\n" for name in names)

    def before_epoch(self) -> None:
        super().before_epoch()
        if self.dor_cfg.RESAMPLE == "epoch":
            self.draw_outliers()

    # ------------------------------------------------------------------ loss

    def outlier_text_features(self, prompts) -> torch.Tensor:
        """Tuned features of the drawn outliers through the learner's prompt path.

        Returns [n, d], or [..., n, d] for learners whose text features depend on the image;
        the loss averages over every leading dimension.
        """
        return _unwrap(self.model).label_text_features(prompts)

    def outlier_loss(self) -> torch.Tensor:
        """1 − mean cosine similarity between tuned and zero-shot outlier features."""
        tuned = F.normalize(self.outlier_text_features(self.outlier_prompts).float(), dim=-1)
        targets = self.outlier_targets[self.outlier_index]
        return 1.0 - (tuned * targets).sum(dim=-1).mean()

    def compute_loss(self, image, label):
        loss_task, summary = super().compute_loss(image, label)
        if self.dor_cfg.RESAMPLE == "iter":
            self.draw_outliers(self.batch_idx)
        loss_dor = self.outlier_loss()
        loss = loss_task + self.dor_cfg.LAMBDA * loss_dor

        terms = OrderedDict(loss=loss.item(), loss_task=loss_task.item())
        terms.update((k, v) for k, v in summary.items() if k != "loss")
        terms["loss_dor"] = loss_dor.item()
        return loss, terms

    # ------------------------------------------------------------------ records

    def dor_provenance(self) -> dict:
        dor = self.dor_cfg
        record = {key.lower(): dor[key] for key in dor.keys()}
        record.update(getattr(self, "dor_state", {}))
        if getattr(self, "outlier_pool", None) is not None:
            record["pool_labels"] = len(self.outlier_pool)
        return record

    def provenance(self) -> dict:
        record = super().provenance()
        record["dor"] = self.dor_provenance()
        return record
