"""Calibration metrics computed from softmax probabilities.

Conventions (shared by every metric here and by the reliability diagrams):

* Confidence is the largest class probability; the prediction is its argmax (ties go to the
  lowest class index, as ``argmax`` does).
* Equal-width bins split [0, 1] at k/B (computed as ``k / B`` so that a confidence typed as
  ``0.3`` sits exactly on the edge 3/10). Bins are left-closed, ``[k/B, (k+1)/B)``; the last bin
  is closed, so a confidence of exactly 1.0 belongs to bin B-1. This matches the binning of
  the DOR authors' published evaluation code, except that code leaves confidences of 1.0 out
  of the last bin's averages while counting them in its weight; here they count in both.
* Empty bins contribute nothing (weight 0).
* ECE, MCE, ACE, accuracy, mean confidence and the confidence gap are reported in percent;
  NLL (nats, mean per sample) and the Brier score (mean over samples of the squared error
  summed over classes, range [0, 2]) are not.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict

import numpy as np

DEFAULT_NUM_BINS = 10


@dataclass
class BinStats:
    """Per-bin sample counts, accuracies and mean confidences (NaN where a bin is empty)."""

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def gaps(self) -> np.ndarray:
        return np.abs(self.accuracy - self.confidence)


def confidences_and_hits(probs: np.ndarray, labels: np.ndarray):
    """Max probability per sample and whether its argmax equals the label."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be [N, C] and labels [N]; got {probs.shape} and "
                         f"{labels.shape}")
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)


def equal_width_bins(confidence: np.ndarray, hits: np.ndarray,
                     num_bins: int = DEFAULT_NUM_BINS) -> BinStats:
    """Statistics of ``num_bins`` equal-width, left-closed confidence bins (last bin closed)."""
    if num_bins < 1:
        raise ValueError("num_bins must be at least 1")
    edges = np.arange(num_bins + 1) / num_bins
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, num_bins - 1)
    return _bin_stats(edges, index, confidence, hits, num_bins)


def equal_mass_bins(confidence: np.ndarray, hits: np.ndarray,
                    num_bins: int = DEFAULT_NUM_BINS) -> BinStats:
    """Statistics of bins holding equal numbers of samples, after sorting by confidence.

    Sample i of the sorted order goes to bin floor(i * B / N), so bin sizes differ by at most
    one; samples with equal confidence may fall into neighbouring bins. With fewer samples
    than bins, the surplus bins are empty.
    """
    n = len(confidence)
    order = np.argsort(confidence, kind="stable")
    index = np.empty(n, dtype=np.int64)
    index[order] = (np.arange(n) * num_bins) // max(n, 1)

    # Lower edge of bin b: the confidence of its first sorted sample, i = ceil(b * n / B).
    sorted_conf = confidence[order]
    first = [-(-b * n // num_bins) for b in range(num_bins)]
    edges = np.array([sorted_conf[i] if i < n else np.nan for i in first]
                     + [sorted_conf[-1] if n else np.nan])
    return _bin_stats(edges, index, confidence, hits, num_bins)


def _bin_stats(edges, index, confidence, hits, num_bins) -> BinStats:
    counts = np.bincount(index, minlength=num_bins).astype(np.float64)
    hit_sum = np.bincount(index, weights=hits, minlength=num_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, hit_sum / counts, np.nan)
        mean_conf = np.where(counts > 0, conf_sum / counts, np.nan)
    return BinStats(edges=edges, counts=counts, accuracy=accuracy, confidence=mean_conf)


def expected_calibration_error(stats: BinStats) -> float:
    """Count-weighted mean of |accuracy − confidence| over bins (a fraction)."""
    total = stats.counts.sum()
    if total == 0:
        return 0.0
    filled = stats.counts > 0
    return float(np.sum(stats.counts[filled] * stats.gaps[filled]) / total)


def maximum_calibration_error(stats: BinStats) -> float:
    """The largest |accuracy − confidence| over non-empty bins (a fraction)."""
    filled = stats.counts > 0
    return float(stats.gaps[filled].max()) if filled.any() else 0.0


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """Mean −log p(label) in nats; probabilities are clipped at ``eps`` to stay finite."""
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, eps, None))))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over samples of Σ_c (p_c − 1[c = label])²."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(labels)), labels] = 1.0
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def calibration_metrics(probs: np.ndarray, labels: np.ndarray,
                        num_bins: int = DEFAULT_NUM_BINS) -> Dict[str, float]:
    """Every metric of this module for one evaluation, keyed as written to results.json."""
    labels = np.asarray(labels).astype(np.int64)
    confidence, hits = confidences_and_hits(probs, labels)
    width = equal_width_bins(confidence, hits, num_bins)
    mass = equal_mass_bins(confidence, hits, num_bins)
    accuracy = float(hits.mean()) if len(hits) else 0.0
    mean_conf = float(confidence.mean()) if len(confidence) else 0.0

    return OrderedDict(
        ece=100.0 * expected_calibration_error(width),
        mce=100.0 * maximum_calibration_error(width),
        ace=100.0 * expected_calibration_error(mass),
        nll=negative_log_likelihood(probs, labels),
        brier=brier_score(probs, labels),
        confidence=100.0 * mean_conf,
        conf_gap=100.0 * (mean_conf - accuracy),
    )
