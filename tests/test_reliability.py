"""Reliability diagrams and the report command line on saved predictions."""
import json

import numpy as np
import pytest
from PIL import Image

from calibration import report
from calibration.metrics import BinStats, calibration_metrics, reliability_bins
from calibration.records import save_predictions
from calibration.reliability import (panel_pixels, save_reliability_diagram,
                                     save_reliability_figure)

CLASSNAMES = ["circle", "square", "star", "cross"]


def bins(accuracy, confidence, counts):
    edges = np.linspace(0, 1, len(counts) + 1)
    return BinStats(edges, np.array(counts, float), np.array(accuracy, float),
                    np.array(confidence, float))


def reddish_pixels(path) -> int:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    return int(((rgb[..., 0] - rgb[..., 1] > 40) & (rgb[..., 0] - rgb[..., 2] > 40)).sum())


def sample_predictions(seed: int, temperature: float):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(400, 4)) * 2
    labels = np.where(rng.random(400) < 0.7, logits.argmax(axis=1), rng.integers(0, 4, 400))
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True), labels


def test_single_panel_has_the_documented_size_and_shades_the_gap(tmp_path):
    centres = np.arange(5) / 5 + 0.1
    calibrated = save_reliability_diagram(
        bins(centres, centres, [10, 20, 30, 20, 10]), str(tmp_path / "calibrated.png"), "c")
    overconfident = save_reliability_diagram(
        bins(centres - 0.1, centres + 0.05, [10, 20, 30, 20, 10]),
        str(tmp_path / "over.png"), "o")

    for path in (calibrated, overconfident):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == panel_pixels(1) == (480, 600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibrated.png", "over.png"]
    # Only the legend patch and the mean-confidence line are red when there is no gap.
    assert reddish_pixels(overconfident) > reddish_pixels(calibrated) + 3000


def test_side_by_side_figure_is_two_panels_wide(tmp_path):
    stats = bins([0.2, np.nan, 0.9], [0.3, np.nan, 0.95], [5, 0, 7])
    path = save_reliability_figure([(stats, "base"), (stats, "new")], str(tmp_path / "bn.png"))
    with Image.open(path) as image:
        assert image.size == panel_pixels(2) == (960, 600)
    with pytest.raises(ValueError, match="no panels"):
        save_reliability_figure([], str(tmp_path / "none.png"))


def test_report_compares_two_locations_and_draws_them_side_by_side(tmp_path, capsys):
    expected = {}
    for name, temperature in (("base", 1.0), ("new", 0.4)):
        probs, labels = sample_predictions(0 if name == "base" else 1, temperature)
        save_predictions(str(tmp_path / name), "test", probs, labels, CLASSNAMES)
        # Metrics are computed from the float32 probabilities that are saved.
        expected[name] = calibration_metrics(probs.astype(np.float32), labels)

    out = tmp_path / "figure.png"
    code = report.main([str(tmp_path / "base" / "predictions.npz"), str(tmp_path / "new"),
                        "--plot", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| metric | base | new |" in printed
    assert (f"| ece | {expected['base']['ece']:.2f}% | {expected['new']['ece']:.2f}% |"
            in printed)
    assert (f"| nll | {expected['base']['nll']:.4f} | {expected['new']['nll']:.4f} |"
            in printed)
    with Image.open(out) as image:
        assert image.size == (960, 600)


def test_report_reads_stored_bins_and_refuses_what_it_cannot_recompute(tmp_path, capsys):
    probs, labels = sample_predictions(2, 1.0)
    stats = reliability_bins(probs, labels, 10)
    run = tmp_path / "run"
    run.mkdir()
    record = {"split": "test", "metrics": dict(calibration_metrics(probs, labels)),
              "reliability": stats.to_json(),
              "provenance": {"dataset": "Shapes", "trainer": "CoOp", "subsample_classes": "new"}}
    (run / "results.json").write_text(json.dumps(record))

    evaluation = report.load_evaluation(str(run))
    assert evaluation.title == "Shapes · CoOp · new classes (test)"
    np.testing.assert_array_equal(evaluation.bins.counts, stats.counts)
    assert report.main([str(run / "results.json")]) == 0
    assert f"| ece | {record['metrics']['ece']:.2f}% |" in capsys.readouterr().out

    assert report.main([str(run), "--bins", "15"]) == 1
    assert "holds 10 bins, not 15" in capsys.readouterr().err

    del record["reliability"]
    (run / "results.json").write_text(json.dumps(record))
    assert report.main([str(run)]) == 1
    assert "holds no per-bin statistics" in capsys.readouterr().err

    assert report.main([str(tmp_path / "missing")]) == 1
    assert "neither a file nor a directory" in capsys.readouterr().err

    (tmp_path / "broken.npz").write_bytes(b"not an archive")
    assert report.main([str(tmp_path / "broken.npz")]) == 1
    assert "is not a predictions .npz file" in capsys.readouterr().err


def test_report_refuses_bad_arguments():
    with pytest.raises(SystemExit) as exit_info:
        report.main(["a.npz", "b.npz", "--labels", "only-one"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        report.main(["a.npz", "b.npz", "c.npz"])
