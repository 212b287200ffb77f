"""The outlier pool: vocabulary labels scored against the base classes in zero-shot text space.

Every vocabulary label is encoded with frozen CLIP under the dataset's template; a label's
score is its largest cosine similarity to a base class. ``near`` keeps the K highest scores
(near-OOD, DOR's default), ``far`` the K lowest, ``random`` K at random, and ``oracle`` the
dataset's new class names (an ablation only: in the base-to-new protocol new classes are
unknown while training). Labels equal to a base class name or to a WordNet synonym of one are
removed before scoring. New class names never enter the other strategies.

The vocabulary features are cached on disk, keyed by backbone, weights identity, template and
vocabulary content, so a second run scores the vocabulary without re-encoding it.
"""
import hashlib
import json
import logging
import os
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone.prompted import encode_labels
from runtime.files import atomic_write

from .vocabulary import Vocabulary, comparison_key

logger = logging.getLogger(__name__)

STRATEGIES = ("near", "far", "random", "oracle")
CACHE_FORMAT = 1
DEFAULT_CACHE_DIR = osp.join(osp.expanduser("~"), ".cache", "dor_clip")


@dataclass
class OutlierPool:
    """Pool labels with their scores and normalised zero-shot features (float32, CPU)."""

    labels: List[str]
    scores: torch.Tensor
    features: torch.Tensor
    strategy: str
    num_excluded: int

    def __len__(self) -> int:
        return len(self.labels)

    def write_tsv(self, path: str) -> None:
        """One line per label: rank, score, label (in pool order)."""
        with open(path, "w") as f:
            f.write("rank\tscore\tlabel\n")
            for rank, (label, score) in enumerate(zip(self.labels, self.scores.tolist()), 1):
                f.write(f"{rank}\t{score:.6f}\t{label}\n")


class FeatureCache:
    """Vocabulary features on disk, one file per (backbone, weights, template, vocabulary)."""

    def __init__(self, directory: str = ""):
        self.directory = directory or os.environ.get("DOR_CACHE_DIR", DEFAULT_CACHE_DIR)

    @staticmethod
    def key(backbone: str, weights_id: str, template: str, vocabulary: Vocabulary) -> dict:
        return {"format": CACHE_FORMAT, "backbone": backbone, "weights_id": weights_id,
                "template": template, "vocabulary_sha256": vocabulary.sha256,
                "num_labels": len(vocabulary.labels)}

    def path(self, key: dict) -> str:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return osp.join(self.directory, f"vocab-{digest[:32]}.pt")

    def load(self, key: dict) -> Optional[torch.Tensor]:
        """Cached features for ``key``; None (and a warning) if absent, corrupt or mismatched."""
        path = self.path(key)
        if not osp.isfile(path):
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            features = entry["features"].float()
            valid = (entry.get("key") == key and features.dim() == 2
                     and features.shape[0] == key["num_labels"]
                     and bool(torch.isfinite(features).all()))
        except Exception as error:  # unreadable, truncated or foreign: rebuild it
            logger.warning('Rebuilding the unreadable feature cache "%s" (%s)', path, error)
            return None
        if not valid:
            logger.warning('Rebuilding the feature cache "%s": it does not match its key', path)
            return None
        logger.info("Loaded vocabulary features from %s", path)
        return features

    def save(self, key: dict, features: torch.Tensor) -> str:
        """Write an entry atomically, so runs filling the same entry at once never mix their
        bytes."""
        path = self.path(key)
        with atomic_write(path) as staging:
            torch.save({"key": key, "features": features.half()}, staging)
        logger.info("Cached vocabulary features in %s", path)
        return path


def vocabulary_features(clip_model: nn.Module, vocabulary: Vocabulary, template: str,
                        backbone: str, weights_id: str, cache: FeatureCache,
                        batch_size: int = 512,
                        device: Optional[torch.device] = None) -> torch.Tensor:
    """Normalised zero-shot features of every vocabulary label, from the cache when possible."""
    key = FeatureCache.key(backbone, weights_id, template, vocabulary)
    features = cache.load(key)
    if features is None:
        logger.info("Encoding %d vocabulary labels with template %r", len(vocabulary.labels),
                    template)
        features = encode_labels(clip_model, vocabulary.labels, template, batch_size,
                                 progress=True, device=device)
        cache.save(key, features)
    # The cache keeps fp16. Fresh features take the same rounding, so a first run and a cached
    # run score identically; renormalising restores unit norm in float32.
    return F.normalize(features.half().float(), dim=-1)


def excluded_keys(vocabulary: Vocabulary, base_classnames: Sequence[str]) -> set:
    """Comparison keys of the base class names and of their WordNet synonyms."""
    names = [name.replace("_", " ") for name in base_classnames]
    return {comparison_key(name) for name in names} | vocabulary.synonyms(names)


def select_pool(vocabulary: Vocabulary, features: torch.Tensor, base_features: torch.Tensor,
                base_classnames: Sequence[str], strategy: str, pool_size: Optional[int],
                seed: int) -> OutlierPool:
    """Pick ``pool_size`` vocabulary labels by ``strategy`` (near, far or random); None keeps
    every eligible label, in ``strategy`` order. Asking for more than there are is an error."""
    if strategy not in ("near", "far", "random"):
        raise ValueError(f'TRAINER.DOR.STRATEGY must be one of {STRATEGIES}, got "{strategy}"')
    excluded = excluded_keys(vocabulary, base_classnames)
    eligible = torch.tensor([i for i, label in enumerate(vocabulary.labels)
                             if comparison_key(label) not in excluded], dtype=torch.long)
    if len(eligible) == 0:
        raise ValueError(f"Every label of the vocabulary {vocabulary.source} "
                         f"({len(vocabulary.labels)}) is a base class name or a synonym of one: "
                         "no outlier is left")
    if pool_size is None:
        pool_size = len(eligible)
    if pool_size > len(eligible):
        raise ValueError(f"TRAINER.DOR.POOL_SIZE ({pool_size}) exceeds the {len(eligible)} "
                         f"labels of {vocabulary.source} left after excluding the base classes "
                         f"and their synonyms; set POOL_SIZE to at most {len(eligible)}")

    scores = (features[eligible] @ base_features.t()).max(dim=1).values
    if strategy == "random":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9001]))
        chosen = torch.from_numpy(rng.choice(len(eligible), pool_size, replace=False))
    else:
        # A stable sort keeps vocabulary order among equal scores, so pools are reproducible.
        order = torch.from_numpy(np.argsort(-scores.numpy() if strategy == "near"
                                            else scores.numpy(), kind="stable"))
        chosen = order[:pool_size]

    index = eligible[chosen]
    return OutlierPool(labels=[vocabulary.labels[i] for i in index.tolist()],
                       scores=scores[chosen], features=features[index], strategy=strategy,
                       num_excluded=len(vocabulary.labels) - len(eligible))


def oracle_pool(clip_model: nn.Module, new_classnames: Sequence[str], base_features: torch.Tensor,
                template: str, device: Optional[torch.device] = None) -> OutlierPool:
    """The new class names as outliers: the upper-bound ablation, never a default."""
    labels = [name.replace("_", " ") for name in new_classnames]
    features = encode_labels(clip_model, labels, template, device=device)
    scores = (features @ base_features.t()).max(dim=1).values
    return OutlierPool(labels=labels, scores=scores, features=features, strategy="oracle",
                       num_excluded=0)
