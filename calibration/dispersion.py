"""Dispersion of class text features: how far apart tuning has pushed the class prompts.

Prompt tuning with cross-entropy spreads the class text features apart, which the DOR paper
links to overconfidence on new classes. The dispersion of n class features t_1..t_n is the
mean cosine distance over the n(n−1)/2 distinct class pairs,

    D = 2 / (n (n − 1)) · Σ_{i<j} (1 − cos(t_i, t_j)),

and its ratio to zero-shot CLIP's dispersion on the same class names tells whether tuning
spread the classes (ratio > 1) or drew them together (ratio < 1).
"""
from typing import Optional

import torch
import torch.nn.functional as F


def mean_pairwise_cosine_distance(features: torch.Tensor) -> Optional[float]:
    """D above for the rows of ``features`` [n, d] (any scale); None when n < 2.

    Uses Σ_{i≠j} cos(t_i, t_j) = ‖Σ_i t̂_i‖² − n for unit vectors t̂_i,
    which needs O(n·d) memory instead of an n×n similarity matrix.
    """
    if features.dim() != 2:
        raise ValueError(f"Expected class features [n, d]; got shape {tuple(features.shape)}")
    n = features.shape[0]
    if n < 2:
        return None

    unit = F.normalize(features.detach().to("cpu", torch.float64), dim=-1)
    pair_cosine_sum = float(unit.sum(dim=0).pow(2).sum()) - n
    return 1.0 - pair_cosine_sum / (n * (n - 1))


def dispersion_ratio(tuned: Optional[float], zeroshot: Optional[float]) -> Optional[float]:
    """tuned / zero-shot dispersion, or None when either is missing or zero-shot is 0."""
    if tuned is None or zeroshot is None or zeroshot <= 0.0:
        return None
    return tuned / zeroshot
