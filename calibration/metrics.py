"""Calibration metrics computed from softmax probabilities.

Conventions (shared by every metric here and by the reliability diagrams):

* Confidence is the largest class probability; the prediction is its argmax (ties go to the
  lowest class index, as ``argmax`` does). Values are compared in float64, so a float32
  probability is binned by its exact float64 value.
* Equal-width bins split [0, 1] at k/B (computed as ``k / B`` so that a confidence typed as
  ``0.3`` sits exactly on the edge 3/10; edges from ``linspace`` put 3/10 a hair above 0.3).
  Bins are left-closed, ``[k/B, (k+1)/B)``: a confidence on an inner edge belongs to the bin
  above it. The last bin is closed, so a confidence of exactly 1.0 belongs to bin B-1. This
  matches the binning of the DOR authors' published evaluation code (CLIP_Calibration),
  except that code leaves confidences of 1.0 out of the last bin's averages while counting
  them in its weight; here they count in both. torchmetrics' ``calibration_error`` uses
  ``linspace`` edges and gives 1.0 a bin of its own; elsewhere it bins alike.
* Equal-mass bins (ACE) sort the samples by confidence and cut the sorted list into B runs
  whose sizes differ by at most one; tied confidences keep their input order and may fall
  into neighbouring bins. CLIP_Calibration uses quantile edges instead, which keeps ties
  together and may merge bins, so its ACE can differ slightly.
* Empty bins contribute nothing (weight 0) and are left out of MCE's maximum.
* MCE is the plain maximum of |accuracy − confidence| over non-empty bins. CLIP_Calibration
  reports a count-weighted maximum (each gap times its bin's share of samples) instead, which
  is never larger.
* Accuracy, ECE, MCE, ACE, mean confidence and the confidence gap (mean confidence −
  accuracy; positive means overconfident) are reported in percent; NLL (nats, mean per
  sample) and the Brier score (mean over samples of the squared error summed over classes,
  range [0, 2]) are not.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np

DEFAULT_NUM_BINS = 10

# Keys of ``calibration_metrics`` in the order they are written.
METRIC_KEYS = ("accuracy", "ece", "mce", "ace", "nll", "brier", "confidence", "conf_gap")

# Keys reported in percent, here and by the evaluator (``* accuracy: 81.25%``).
PERCENT_KEYS = frozenset({"accuracy", "error_rate", "macro_f1", "perclass_accuracy", "ece",
                          "mce", "ace", "confidence", "conf_gap"})

# How far a row of probabilities may sum from 1 before the input is refused.
ROW_SUM_TOLERANCE = 1e-3


@dataclass
class BinStats:
    """Per-bin sample counts, accuracies and mean confidences (NaN where a bin is empty)."""

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def num_bins(self) -> int:
        return len(self.counts)

    @property
    def gaps(self) -> np.ndarray:
        return np.abs(self.accuracy - self.confidence)

    def to_json(self) -> Dict[str, Any]:
        """A JSON-safe record (empty bins as ``null``), as stored in results.json."""
        def listed(values):
            return [None if np.isnan(v) else float(v) for v in values]

        return {"num_bins": self.num_bins, "edges": listed(self.edges),
                "counts": [int(c) for c in self.counts], "accuracy": listed(self.accuracy),
                "confidence": listed(self.confidence)}

    @classmethod
    def from_json(cls, record: Dict[str, Any]) -> "BinStats":
        """Inverse of ``to_json``."""
        def array(values):
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        return cls(edges=array(record["edges"]), counts=array(record["counts"]),
                   accuracy=array(record["accuracy"]), confidence=array(record["confidence"]))


def check_inputs(probs, labels) -> Tuple[np.ndarray, np.ndarray]:
    """Validated float64 probabilities [N, C] and int64 labels [N]; ValueError otherwise."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.ndim != 1 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be [N, C] and labels [N]; got {probs.shape} and "
                         f"{labels.shape}")
    if probs.shape[0] == 0:
        raise ValueError("No samples to evaluate")

    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers; got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must lie in [0, {probs.shape[1] - 1}]; got "
                         f"[{labels.min()}, {labels.max()}]")

    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1 + 1e-6:
        raise ValueError("probs must be probabilities in [0, 1] (logits must go through a "
                         "softmax first)")
    deviation = float(np.abs(probs.sum(axis=1) - 1.0).max())
    if deviation > ROW_SUM_TOLERANCE:
        raise ValueError(f"Each row of probs must sum to 1; the largest deviation is "
                         f"{deviation:.3g}")
    return probs, labels


def confidences_and_hits(probs: np.ndarray, labels: np.ndarray
                         ) -> Tuple[np.ndarray, np.ndarray]:
    """Max probability per sample and whether its argmax equals the label (1.0 or 0.0)."""
    probs, labels = check_inputs(probs, labels)
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)


def equal_width_bins(confidence: np.ndarray, hits: np.ndarray,
                     num_bins: int = DEFAULT_NUM_BINS) -> BinStats:
    """Statistics of ``num_bins`` equal-width, left-closed confidence bins (last bin closed)."""
    _check_num_bins(num_bins)
    confidence = np.asarray(confidence, dtype=np.float64)
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
    _check_num_bins(num_bins)
    confidence = np.asarray(confidence, dtype=np.float64)
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


def _check_num_bins(num_bins: int) -> None:
    if int(num_bins) != num_bins or num_bins < 1:
        raise ValueError(f"The number of bins must be a positive integer; got {num_bins}")


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
    probs, labels = check_inputs(probs, labels)
    picked = probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, eps, None))))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over samples of Σ_c (p_c − 1[c = label])²."""
    probs, labels = check_inputs(probs, labels)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(labels)), labels] = 1.0
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def reliability_bins(probs: np.ndarray, labels: np.ndarray,
                     num_bins: int = DEFAULT_NUM_BINS) -> BinStats:
    """The equal-width bins behind ECE and MCE, as drawn in a reliability diagram."""
    confidence, hits = confidences_and_hits(probs, labels)
    return equal_width_bins(confidence, hits, num_bins)


def calibration_metrics(probs: np.ndarray, labels: np.ndarray,
                        num_bins: int = DEFAULT_NUM_BINS) -> Dict[str, float]:
    """Every metric of this module for one evaluation, keyed as written to results.json."""
    probs, labels = check_inputs(probs, labels)
    confidence, hits = confidences_and_hits(probs, labels)
    width = equal_width_bins(confidence, hits, num_bins)
    mass = equal_mass_bins(confidence, hits, num_bins)
    accuracy = float(hits.mean())
    mean_conf = float(confidence.mean())

    return OrderedDict(
        # As the evaluator computes it (100 · correct / total), so the two agree to the bit.
        accuracy=100.0 * int(hits.sum()) / len(hits),
        ece=100.0 * expected_calibration_error(width),
        mce=100.0 * maximum_calibration_error(width),
        ace=100.0 * expected_calibration_error(mass),
        nll=negative_log_likelihood(probs, labels),
        brier=brier_score(probs, labels),
        confidence=100.0 * mean_conf,
        conf_gap=100.0 * (mean_conf - accuracy),
    )


def format_metric(key: str, value: float) -> str:
    """``81.25%`` for percent metrics, ``0.4321`` for the others (as logged and tabulated)."""
    return f"{value:.2f}%" if key in PERCENT_KEYS else f"{value:.4f}"
