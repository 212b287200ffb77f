"""Every registered trainer, base and DOR variant: configs exist, training, evaluation on base
and new classes, and eval-only reloads that reproduce the trained model's metrics."""
import os
import os.path as osp

import pytest

import trainers  # noqa: F401  (registers the trainers)
from conftest import ROOT, read_results, run_train, tiny_argv
from toolbox import TRAINER_REGISTRY
from wordnet_fixture import write_wordnet

TRAINERS = sorted(TRAINER_REGISTRY.registered_names())
NEW_CLASSES = ["bicycle", "tree", "house", "fish", "lamp"]


@pytest.fixture(scope="module")
def wordnet_dir(tmp_path_factory):
    return write_wordnet(str(tmp_path_factory.mktemp("nltk_data")))


def dor_opts(trainer: str, wordnet_dir: str, cache_dir) -> list:
    """Small, fast DOR settings on the test WordNet (no effect on non-DOR trainers)."""
    if not trainer.endswith("DOR"):
        return []
    return ["TRAINER.DOR.WORDNET_DIR", wordnet_dir, "TRAINER.DOR.CACHE_DIR", cache_dir,
            "TRAINER.DOR.POOL_SIZE", 8, "TRAINER.DOR.NUM_OUTLIERS", 4]


def test_the_project_registers_every_learner_and_its_dor_variant():
    learners = {"CoOp", "CoCoOp", "KgCoOp", "MaPLe", "PromptSRC", "TCP"}
    assert learners | {f"{name}DOR" for name in learners} | {"ZeroshotCLIP"} == set(TRAINERS)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_has_its_configs(trainer):
    folder = osp.join(ROOT, "configs", "trainers", trainer)
    assert osp.isdir(folder), f"{trainer} has no configs/trainers/{trainer}/"
    files = os.listdir(folder)
    assert "tiny.yaml" in files, f"{trainer} has no tiny.yaml for tests and the demo"
    assert any(f.startswith(("vit_b16", "rn50")) for f in files), \
        f"{trainer} has no configuration for a real backbone"
    if trainer.endswith("DOR"):
        base = osp.join(ROOT, "configs", "trainers", trainer[:-3])
        assert sorted(files) == sorted(os.listdir(base)), \
            f"{trainer} must offer the same config names as {trainer[:-3]}"


@pytest.mark.parametrize("trainer", TRAINERS)
def test_train_evaluate_and_reload(trainer, data_root, wordnet_dir, tmp_path):
    opts = ["OPTIM.MAX_EPOCH", 1, *dor_opts(trainer, wordnet_dir, tmp_path / "cache")]
    out = tmp_path / "base"
    run_train(tiny_argv(data_root, trainer, out, *opts))
    trained = read_results(out)
    assert trained["num_classes"] == 5 and trained["provenance"]["trainer"] == trainer

    if trainer == "ZeroshotCLIP":
        assert trained["epoch"] == 0
        reload_flags = ["--eval-only"]
    else:
        assert trained["epoch"] == 1
        reload_flags = ["--eval-only", "--model-dir", out, "--load-epoch", 1]
        log = (out / "log.txt").read_text()
        assert ("loss_dor" in log) == trainer.endswith("DOR")

    reloaded = tmp_path / "reloaded"
    run_train(tiny_argv(data_root, trainer, reloaded, *opts, flags=reload_flags))
    assert read_results(reloaded)["metrics"] == trained["metrics"]

    new = tmp_path / "new"
    run_train(tiny_argv(data_root, trainer, new, *opts, flags=reload_flags, subsample="new"))
    results = read_results(new)
    assert results["classnames"] == NEW_CLASSES and results["num_samples"] == 50
