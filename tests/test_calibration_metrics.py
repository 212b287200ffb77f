"""Calibration metrics against hand-computed values, a plain-Python reference and torchmetrics."""
import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from calibration.dispersion import dispersion_ratio, mean_pairwise_cosine_distance
from calibration.metrics import (METRIC_KEYS, BinStats, calibration_metrics, equal_mass_bins,
                                 equal_width_bins, format_metric, reliability_bins)

# Five samples, three classes. Confidences 0.9, 0.6, 0.65, 1.0, 0.4; hits 1, 0, 1, 1, 0.
# 0.9, 0.6 and 0.4 sit on bin edges, 1.0 on the upper end; bins 0-3, 5, 7 and 8 are empty.
HAND_PROBS = np.array([[0.9, 0.05, 0.05],
                       [0.6, 0.3, 0.1],
                       [0.65, 0.25, 0.1],
                       [1.0, 0.0, 0.0],
                       [0.4, 0.35, 0.25]])
HAND_LABELS = np.array([0, 1, 0, 0, 2])


def reference_metrics(probs, labels, num_bins):
    """The definitions written out as plain loops over samples and bins."""
    probs = [[float(p) for p in row] for row in probs]
    labels = [int(label) for label in labels]
    n = len(labels)
    conf, hit = [], []
    for row, label in zip(probs, labels):
        best = max(row)
        conf.append(best)
        hit.append(1.0 if row.index(best) == label else 0.0)

    def gaps(assignment):
        result = []
        for b in range(num_bins):
            members = [i for i in range(n) if assignment[i] == b]
            if members:
                acc = sum(hit[i] for i in members) / len(members)
                mean_conf = sum(conf[i] for i in members) / len(members)
                result.append((len(members), abs(acc - mean_conf)))
        return result

    width = []
    for c in conf:
        k = 0
        while k + 1 < num_bins and (k + 1) / num_bins <= c:
            k += 1
        width.append(k)
    order = sorted(range(n), key=lambda i: conf[i])
    mass = [0] * n
    for rank, i in enumerate(order):
        mass[i] = rank * num_bins // n

    width_gaps, mass_gaps = gaps(width), gaps(mass)
    accuracy, mean_conf = sum(hit) / n, sum(conf) / n
    nll = -sum(math.log(max(probs[i][labels[i]], 1e-12)) for i in range(n)) / n
    brier = sum(sum((p - (1.0 if c == labels[i] else 0.0)) ** 2
                    for c, p in enumerate(probs[i])) for i in range(n)) / n
    return {
        "accuracy": 100 * accuracy,
        "ece": 100 * sum(count * gap for count, gap in width_gaps) / n,
        "mce": 100 * max(gap for _, gap in width_gaps),
        "ace": 100 * sum(count * gap for count, gap in mass_gaps) / n,
        "nll": nll,
        "brier": brier,
        "confidence": 100 * mean_conf,
        "conf_gap": 100 * (mean_conf - accuracy),
    }


def random_probs(seed, n=300, classes=7, sharpness=0.3):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(classes, sharpness), size=n)
    labels = np.where(rng.random(n) < 0.6, probs.argmax(axis=1), rng.integers(0, classes, n))
    return probs, labels


def test_hand_computed_example():
    metrics = calibration_metrics(HAND_PROBS, HAND_LABELS, num_bins=10)
    # Non-empty bins: 4 {0.4 miss}, 6 {0.6 miss, 0.65 hit}, 9 {0.9 hit, 1.0 hit}.
    # ECE = (1·0.4 + 2·|0.5 − 0.625| + 2·|1 − 0.95|) / 5 = 0.15; MCE = 0.4.
    assert list(metrics) == list(METRIC_KEYS)
    assert metrics["ece"] == pytest.approx(15.0)
    assert metrics["mce"] == pytest.approx(40.0)
    # Two equal-mass bins: {0.4, 0.6, 0.65} (acc 1/3, conf 0.55) and {0.9, 1.0}.
    assert equal_mass_bins(np.array([0.9, 0.6, 0.65, 1.0, 0.4]),
                           np.array([1.0, 0, 1, 1, 0]), 2).counts.tolist() == [3, 2]
    assert calibration_metrics(HAND_PROBS, HAND_LABELS, num_bins=2)["ace"] == pytest.approx(15.0)
    assert metrics["accuracy"] == pytest.approx(60.0)
    assert metrics["confidence"] == pytest.approx(71.0)
    assert metrics["conf_gap"] == pytest.approx(11.0)
    assert metrics["nll"] == pytest.approx(
        -(math.log(0.9) + math.log(0.3) + math.log(0.65) + 0.0 + math.log(0.25)) / 5)
    assert metrics["brier"] == pytest.approx((0.015 + 0.86 + 0.195 + 0.0 + 0.845) / 5)


def test_bin_edges_and_confidence_one():
    confidence = np.array([0.0, 0.1, 0.3, 0.7, 0.99999, 1.0, 0.29999999])
    stats = equal_width_bins(confidence, np.ones(len(confidence)), num_bins=10)
    # Left-closed bins: an edge value goes up; 1.0 is kept in the last bin.
    assert stats.counts.tolist() == [1, 1, 1, 1, 0, 0, 0, 1, 0, 2]
    assert stats.confidence[9] == pytest.approx((0.99999 + 1.0) / 2)
    assert stats.confidence[2] == pytest.approx(0.29999999)
    assert np.isnan(stats.accuracy[4]) and np.isnan(stats.confidence[4])


def test_empty_bins_weigh_nothing():
    stats = reliability_bins(HAND_PROBS, HAND_LABELS, num_bins=10)
    assert stats.counts.tolist() == [0, 0, 0, 0, 1, 0, 2, 0, 0, 2]
    assert np.isnan(stats.gaps[[0, 1, 2, 3, 5, 7, 8]]).all()
    assert calibration_metrics(HAND_PROBS, HAND_LABELS, num_bins=10)["ece"] == pytest.approx(
        100 * (0.4 + 2 * 0.125 + 2 * 0.05) / 5)


@pytest.mark.parametrize("num_bins", [1, 3, 10, 15])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_metric_equals_the_plain_loop_reference(seed, num_bins):
    probs, labels = random_probs(seed)
    metrics = calibration_metrics(probs, labels, num_bins=num_bins)
    expected = reference_metrics(probs, labels, num_bins)
    for key in METRIC_KEYS:
        assert metrics[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key


def test_reference_agrees_on_the_hand_example():
    metrics = calibration_metrics(HAND_PROBS, HAND_LABELS, num_bins=10)
    expected = reference_metrics(HAND_PROBS, HAND_LABELS, 10)
    assert metrics == pytest.approx(expected)


@pytest.mark.parametrize("num_bins", [5, 10, 15])
def test_ece_and_mce_equal_torchmetrics_away_from_edges(num_bins):
    # Random confidences never sit on an edge or at 1.0, where the binnings differ.
    # torchmetrics computes in float32, hence the tolerance.
    probs, labels = random_probs(3, n=500)
    metrics = calibration_metrics(probs, labels, num_bins=num_bins)
    preds, target = torch.from_numpy(probs), torch.from_numpy(labels)
    ece = multiclass_calibration_error(preds, target, num_classes=7, n_bins=num_bins, norm="l1")
    mce = multiclass_calibration_error(preds, target, num_classes=7, n_bins=num_bins,
                                       norm="max")
    assert metrics["ece"] == pytest.approx(100 * ece.item(), abs=1e-4)
    assert metrics["mce"] == pytest.approx(100 * mce.item(), abs=1e-4)


def test_confidence_one_differs_from_torchmetrics_as_documented():
    # A hit at 0.92 and a miss at 1.0 share the last bin here: |1/2 − 0.96| · 2/2 = 0.46.
    # torchmetrics gives 1.0 a bin of its own: (|1 − 0.92| + |0 − 1|) / 2 = 0.54.
    probs = np.array([[0.92, 0.08], [1.0, 0.0]])
    labels = np.array([0, 1])
    assert calibration_metrics(probs, labels)["ece"] == pytest.approx(46.0)
    torch_ece = multiclass_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels),
                                             num_classes=2, n_bins=10, norm="l1")
    assert 100 * torch_ece.item() == pytest.approx(54.0)


def test_all_correct_and_certain_is_perfectly_calibrated():
    labels = np.array([2, 0, 1, 1])
    probs = np.eye(3)[labels]
    metrics = calibration_metrics(probs, labels)
    assert metrics["accuracy"] == 100.0 and metrics["confidence"] == 100.0
    for key in ("ece", "mce", "ace", "nll", "brier", "conf_gap"):
        assert metrics[key] == pytest.approx(0.0, abs=1e-12), key


def test_all_wrong_and_certain_is_maximally_miscalibrated():
    labels = np.array([2, 0, 1, 1])
    probs = np.eye(3)[(labels + 1) % 3]
    metrics = calibration_metrics(probs, labels)
    assert metrics["accuracy"] == 0.0 and metrics["confidence"] == 100.0
    assert metrics["ece"] == metrics["mce"] == metrics["ace"] == metrics["conf_gap"] == 100.0
    assert metrics["brier"] == pytest.approx(2.0)
    assert metrics["nll"] == pytest.approx(-math.log(1e-12))


def test_single_bin_reduces_ece_to_the_confidence_gap():
    probs, labels = random_probs(5)
    metrics = calibration_metrics(probs, labels, num_bins=1)
    assert metrics["ece"] == pytest.approx(abs(metrics["conf_gap"]))
    assert metrics["mce"] == pytest.approx(abs(metrics["conf_gap"]))
    assert metrics["ace"] == pytest.approx(abs(metrics["conf_gap"]))


def test_tied_probabilities_predict_the_lowest_class():
    probs = np.full((4, 4), 0.25)
    first = calibration_metrics(probs, np.zeros(4, dtype=int))
    assert first["accuracy"] == 100.0 and first["ece"] == pytest.approx(75.0)
    assert first["conf_gap"] == pytest.approx(-75.0)
    other = calibration_metrics(probs, np.ones(4, dtype=int))
    assert other["accuracy"] == 0.0 and other["ece"] == pytest.approx(25.0)


def test_equal_mass_bins_split_ties_in_input_order_and_leave_surplus_bins_empty():
    tied = equal_mass_bins(np.full(4, 0.5), np.array([1.0, 1.0, 0.0, 0.0]), num_bins=2)
    assert tied.counts.tolist() == [2, 2] and tied.accuracy.tolist() == [1.0, 0.0]
    few = equal_mass_bins(np.array([0.9, 0.5, 0.7]), np.array([1.0, 0.0, 1.0]), num_bins=10)
    assert few.counts.tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]


def test_bins_round_trip_through_json():
    stats = reliability_bins(HAND_PROBS, HAND_LABELS, num_bins=10)
    record = stats.to_json()
    assert record["counts"] == [0, 0, 0, 0, 1, 0, 2, 0, 0, 2] and record["accuracy"][0] is None
    back = BinStats.from_json(record)
    np.testing.assert_array_equal(back.counts, stats.counts)
    np.testing.assert_array_equal(back.confidence, stats.confidence)


@pytest.mark.parametrize("probs, labels, message", [
    (np.array([[2.0, -1.0]]), np.array([0]), "softmax"),
    (np.array([[0.5, 0.3]]), np.array([0]), "sum to 1"),
    (np.array([[0.5, 0.5]]), np.array([2]), r"labels must lie in \[0, 1\]"),
    (np.zeros((0, 3)), np.zeros(0, dtype=int), "No samples"),
    (np.array([[0.5, 0.5]]), np.array([0.0]), "integers"),
    (np.array([0.5, 0.5]), np.array([0]), r"\[N, C\]"),
])
def test_bad_inputs_are_refused_with_a_clear_message(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        calibration_metrics(probs, labels)


def test_bad_bin_counts_are_refused():
    with pytest.raises(ValueError, match="positive integer"):
        calibration_metrics(HAND_PROBS, HAND_LABELS, num_bins=0)


def test_format_metric_units():
    assert format_metric("ece", 3.14159) == "3.14%"
    assert format_metric("nll", 0.123456) == "0.1235"


def test_dispersion_equals_the_pairwise_loop():
    features = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)) * 3
    unit = [f / f.norm() for f in features.double()]
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    expected = sum(1.0 - float(unit[i] @ unit[j]) for i, j in pairs) / len(pairs)
    assert mean_pairwise_cosine_distance(features) == pytest.approx(expected, rel=1e-12)
    assert mean_pairwise_cosine_distance(features * 7.5) == pytest.approx(expected, rel=1e-6)


def test_dispersion_of_special_configurations():
    assert mean_pairwise_cosine_distance(torch.eye(4)) == pytest.approx(1.0)
    assert mean_pairwise_cosine_distance(torch.ones(3, 2)) == pytest.approx(0.0, abs=1e-12)
    assert mean_pairwise_cosine_distance(torch.tensor([[1.0, 0], [-2.0, 0]])) == pytest.approx(2)
    assert mean_pairwise_cosine_distance(torch.ones(1, 8)) is None
    assert dispersion_ratio(0.3, 0.6) == pytest.approx(0.5)
    assert dispersion_ratio(0.3, 0.0) is None and dispersion_ratio(None, 0.6) is None
