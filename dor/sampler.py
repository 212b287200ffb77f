"""Dynamic outlier sampling: a fresh subset of the pool for every epoch (or iteration).

Each draw is a pure function of (seed, epoch, iteration), computed with its own generator, so
the same seed gives the same draws, a resumed run draws what an uninterrupted one would, and
DOR leaves the global random state (data order, augmentation) untouched.
"""
from typing import Optional

import numpy as np
import torch

SAMPLINGS = ("uniform", "similarity")


class OutlierSampler:
    """Draws ``num_outliers`` distinct pool indices, uniformly or favouring high scores.

    With ``similarity`` sampling, label i is drawn with probability proportional to
    exp(score_i / temperature) (successively, without replacement).
    """

    def __init__(self, scores: torch.Tensor, num_outliers: int, seed: int,
                 sampling: str = "uniform", temperature: float = 0.05):
        if sampling not in SAMPLINGS:
            raise ValueError(f'TRAINER.DOR.SAMPLING must be one of {SAMPLINGS}, got "{sampling}"')
        if num_outliers < 1:
            raise ValueError("TRAINER.DOR.NUM_OUTLIERS must be at least 1")
        self.pool_size = len(scores)
        self.num_outliers = min(num_outliers, self.pool_size)
        self.seed = seed
        self.probabilities = None
        if sampling == "similarity":
            logits = scores.double().numpy() / temperature
            weights = np.exp(logits - logits.max())
            self.probabilities = weights / weights.sum()

    def draw(self, epoch: int, iteration: Optional[int] = None) -> torch.Tensor:
        """Pool indices for ``epoch`` (and ``iteration`` when resampling every iteration)."""
        entropy = [self.seed, epoch] + ([] if iteration is None else [iteration + 1])
        rng = np.random.default_rng(np.random.SeedSequence(entropy))
        index = rng.choice(self.pool_size, self.num_outliers, replace=False,
                           p=self.probabilities)
        return torch.from_numpy(index)
