"""What an evaluation writes: metrics, reliability bins and diagram, predictions, dispersion."""
import numpy as np
import pytest
import torch.nn as nn
from PIL import Image

import train
from calibration import report
from calibration.metrics import METRIC_KEYS, BinStats, calibration_metrics
from calibration.reliability import panel_pixels
from conftest import read_results, run_train, tiny_argv
from toolbox import build_trainer

DISPERSION_KEYS = ("text_dispersion", "text_dispersion_zeroshot", "text_dispersion_ratio")


@pytest.fixture(scope="module")
def coop_run(data_root, tmp_path_factory):
    """One CoOp run on the base classes that also saves its predictions."""
    out = tmp_path_factory.mktemp("coop_calibration")
    run_train(tiny_argv(data_root, "CoOp", out, "TEST.SAVE_PREDICTIONS", "True"))
    return out


def test_results_hold_every_metric_and_the_bins_behind_ece(coop_run):
    results = read_results(coop_run)
    metrics = results["metrics"]
    assert list(metrics)[:3] == ["accuracy", "error_rate", "macro_f1"]
    assert set(METRIC_KEYS) | set(DISPERSION_KEYS) <= set(metrics)

    bins = results["reliability"]
    assert bins["num_bins"] == 10 and sum(bins["counts"]) == results["num_samples"] == 50
    stats = BinStats.from_json(bins)
    filled = stats.counts > 0
    ece = 100 * float(np.sum(stats.counts[filled] * stats.gaps[filled]) / 50)
    assert metrics["ece"] == pytest.approx(ece, abs=1e-12)
    accuracy = 100 * float(np.nansum(stats.accuracy * stats.counts) / 50)
    assert metrics["accuracy"] == pytest.approx(accuracy)

    log = (coop_run / "log.txt").read_text()
    for key in ("ece", "mce", "ace", "confidence", "conf_gap"):
        assert f"* {key}: {metrics[key]:.2f}%" in log
    assert f"* nll: {metrics['nll']:.4f}" in log
    assert f"* text_dispersion_ratio: {metrics['text_dispersion_ratio']:.4f}" in log


def test_reliability_diagram_is_written_beside_the_results(coop_run):
    path = coop_run / "reliability.png"
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == panel_pixels(1) == (480, 600)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # something is drawn, not a blank canvas


def test_predictions_recompute_the_same_metrics(coop_run, capsys):
    with np.load(coop_run / "predictions.npz") as data:
        probs, labels = data["probs"], data["labels"]
        assert probs.shape == (50, 5) and probs.dtype == np.float32
        np.testing.assert_array_equal(data["predictions"], probs.argmax(axis=1))
        assert data["classnames"].tolist() == read_results(coop_run)["classnames"]
        assert str(data["split"]) == "test"

    stored = read_results(coop_run)["metrics"]
    recomputed = calibration_metrics(probs, labels, num_bins=10)
    for key in METRIC_KEYS:
        assert recomputed[key] == stored[key], key

    assert report.main([str(coop_run / "predictions.npz")]) == 0
    printed = capsys.readouterr().out
    assert f"| ece | {stored['ece']:.2f}% |" in printed
    assert f"| brier | {stored['brier']:.4f} |" in printed


def test_report_rebins_from_the_predictions_of_a_run_directory(coop_run, capsys):
    with np.load(coop_run / "predictions.npz") as data:
        expected = calibration_metrics(data["probs"], data["labels"], num_bins=15)
    out = coop_run / "rebinned.png"
    assert report.main([str(coop_run), "--bins", "15", "--plot", str(out)]) == 0
    assert f"| ece | {expected['ece']:.2f}% |" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.size == (480, 600)


def test_switches_turn_the_diagram_and_predictions_off_and_on(data_root, tmp_path):
    out = tmp_path / "quiet"
    run_train(tiny_argv(data_root, "CoOp", out, "TEST.CALIBRATION.PLOT", "False",
                        "TEST.CALIBRATION.NUM_BINS", "4", "OPTIM.MAX_EPOCH", "1"))
    assert (out / "results.json").is_file()
    assert not (out / "reliability.png").exists()
    assert not (out / "predictions.npz").exists()  # TEST.SAVE_PREDICTIONS defaults to False
    assert read_results(out)["reliability"]["num_bins"] == 4


def test_zeroshot_clip_dispersion_equals_its_own_reference(data_root, tmp_path):
    out = tmp_path / "zs"
    run_train(tiny_argv(data_root, "ZeroshotCLIP", out, flags=["--eval-only"]))
    metrics = read_results(out)["metrics"]
    assert set(METRIC_KEYS) | set(DISPERSION_KEYS) <= set(metrics)
    assert metrics["text_dispersion"] > 0
    assert metrics["text_dispersion_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert (out / "reliability.png").is_file()


def test_untrained_coop_with_the_template_as_context_has_the_zero_shot_dispersion(
        data_root, tmp_path):
    # The generated dataset's zero-shot template is "a photo of a {}.", so CoOp initialised
    # with the context "a photo of a" encodes exactly the zero-shot prompts.
    out = tmp_path / "init"
    run_train(tiny_argv(data_root, "CoOp", out, "TRAINER.COOP.CTX_INIT", "a_photo_of_a",
                        flags=["--eval-only"]))
    metrics = read_results(out)["metrics"]
    assert metrics["text_dispersion_ratio"] == pytest.approx(1.0, abs=1e-5)

    random_context = tmp_path / "random"
    run_train(tiny_argv(data_root, "CoOp", random_context, flags=["--eval-only"]))
    other = read_results(random_context)["metrics"]
    assert other["text_dispersion_zeroshot"] == pytest.approx(metrics["text_dispersion_zeroshot"])
    assert abs(other["text_dispersion_ratio"] - 1.0) > 1e-3


class Opaque(nn.Module):
    """A model that computes logits but exposes no class text features."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, image):
        return self.inner(image)


class Conditional(Opaque):
    """A model whose text features depend on the image: it answers None."""

    def label_text_features(self):
        return None


@pytest.mark.parametrize("wrapper", [Opaque, Conditional])
def test_a_model_without_class_text_features_skips_dispersion(data_root, tmp_path, caplog,
                                                              wrapper):
    out = tmp_path / "skip"
    cfg = train.setup_cfg(train.parse_args([str(a) for a in tiny_argv(
        data_root, "CoOp", out, "TEST.CALIBRATION.PLOT", "False")]))
    trainer = build_trainer(cfg)
    trainer.model = wrapper(trainer.model)
    with caplog.at_level("INFO"):
        trainer.test()

    metrics = read_results(out)["metrics"]
    assert not set(DISPERSION_KEYS) & set(metrics)
    assert set(METRIC_KEYS) <= set(metrics)
    assert (f"Text dispersion skipped: {wrapper.__name__} provides no class text features"
            in caplog.text)
