"""End-to-end runs of train.py on the generated dataset with the tiny CLIP."""
import os.path as osp
import sys

import torch

import train
from conftest import read_results, run_train, tiny_argv
from toolbox import build_trainer

RESULT_KEYS = {"accuracy", "error_rate", "macro_f1", "ece"}
PROVENANCE_KEYS = {"trainer", "backbone", "weights_id", "seed", "config_sha256",
                   "split_file_sha256", "train_list_sha256", "test_list_sha256",
                   "project_version", "torch_version"}


def test_coop_end_to_end_writes_checkpoint_results_and_provenance(data_root, tmp_path):
    out = tmp_path / "coop"
    run_train(tiny_argv(data_root, "CoOp", out))

    assert osp.isfile(out / "prompt_learner" / "model.pth.tar-3")
    assert (out / "prompt_learner" / "checkpoint").read_text().strip() == "model.pth.tar-3"
    assert osp.isfile(out / "config.yaml") and osp.isfile(out / "log.txt")
    assert any(p.name.startswith("events") for p in (out / "tensorboard").iterdir())

    results = read_results(out)
    assert results["split"] == "test" and results["num_classes"] == 5
    assert results["num_samples"] == 50 and results["epoch"] == 3
    assert RESULT_KEYS <= set(results["metrics"])
    assert 0.0 <= results["metrics"]["ece"] <= 100.0
    prov = results["provenance"]
    assert PROVENANCE_KEYS <= set(prov)
    assert prov["trainer"] == "CoOp" and prov["weights_id"] == "random-init:tiny-vit:seed0"
    assert len(prov["split_file_sha256"]) == 64 and prov["torch_version"] == torch.__version__

    log = (out / "log.txt").read_text()
    assert "Finish training" in log and f"* accuracy: {results['metrics']['accuracy']:.2f}%" in log

    checkpoint = torch.load(out / "prompt_learner" / "model.pth.tar-3", weights_only=True)
    assert set(checkpoint) == {"state_dict", "epoch", "optimizer", "scheduler", "val_result",
                               "rng_state", "extras"}
    assert checkpoint["epoch"] == 3 and checkpoint["val_result"] is None
    assert checkpoint["extras"] == {"trainer": "CoOp", "backbone": "tiny-vit"}
    assert set(checkpoint["rng_state"]) == {"python", "numpy", "torch"}
    assert set(checkpoint["state_dict"]) == {"ctx", "token_prefix", "token_suffix"}


def test_frozen_clip_is_unchanged_and_only_the_context_moves(data_root, tmp_path):
    trainer = build_trainer(train.setup_cfg(train.parse_args(
        [str(a) for a in tiny_argv(data_root, "CoOp", tmp_path / "run")])))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    stdout = sys.stdout
    try:
        trainer.train()
    finally:
        sys.stdout = stdout
    after = trainer.model.state_dict()

    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"prompt_learner.ctx"}


def test_eval_only_reload_gives_identical_metrics(data_root, tmp_path):
    out = tmp_path / "train"
    run_train(tiny_argv(data_root, "CoOp", out))
    reloaded = tmp_path / "eval"
    run_train(tiny_argv(data_root, "CoOp", reloaded,
                        flags=["--eval-only", "--model-dir", out, "--load-epoch", 3]))
    assert read_results(reloaded)["metrics"] == read_results(out)["metrics"]
    assert read_results(reloaded)["epoch"] == 3


def test_new_classes_reload_a_base_checkpoint(data_root, tmp_path):
    out = tmp_path / "train"
    run_train(tiny_argv(data_root, "CoOp", out))
    new = tmp_path / "new"
    run_train(tiny_argv(data_root, "CoOp", new, subsample="new",
                        flags=["--eval-only", "--model-dir", out, "--load-epoch", 3]))
    results = read_results(new)
    assert results["classnames"] == ["bicycle", "tree", "house", "fish", "lamp"]
    assert results["provenance"]["subsample_classes"] == "new"


def test_a_base_checkpoint_classifies_new_classes_with_their_own_names(data_root, tmp_path):
    # The class-name token buffers in a checkpoint belong to the base classes; loading must
    # keep the new classes' own, or the new classes would be scored with base-class prompts.
    out = tmp_path / "train"
    run_train(tiny_argv(data_root, "CoOp", out, "OPTIM.MAX_EPOCH", 1))
    features = {}
    for subsample in ("base", "new"):
        trainer = build_trainer(train.setup_cfg(train.parse_args([str(a) for a in tiny_argv(
            data_root, "CoOp", tmp_path / subsample, subsample=subsample)])))
        trainer.load_model(str(out), epoch=1)
        with torch.no_grad():
            features[subsample] = trainer.model.label_text_features()
    saved = torch.load(out / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    assert torch.equal(trainer.model.prompt_learner.ctx, saved["state_dict"]["ctx"])
    assert not torch.equal(trainer.model.prompt_learner.token_suffix,
                           saved["state_dict"]["token_suffix"])
    assert (features["base"] - features["new"]).abs().max() > 1e-3


def test_resume_flag_continues_another_directorys_run(data_root, tmp_path):
    first = tmp_path / "first"
    run_train(tiny_argv(data_root, "CoOp", first, "OPTIM.MAX_EPOCH", 1))
    second = tmp_path / "second"
    run_train(tiny_argv(data_root, "CoOp", second, "OPTIM.MAX_EPOCH", 2,
                        flags=["--resume", first]))

    log = (second / "log.txt").read_text()
    assert f'Found checkpoint at "{first}"' in log
    assert "epoch [2/2]" in log and "epoch [1/2]" not in log
    assert (second / "prompt_learner" / "checkpoint").read_text().strip() == "model.pth.tar-2"
    assert (first / "prompt_learner" / "checkpoint").read_text().strip() == "model.pth.tar-1"


def test_resume_continues_from_the_last_checkpoint(data_root, tmp_path):
    out = tmp_path / "run"
    run_train(tiny_argv(data_root, "CoOp", out, "OPTIM.MAX_EPOCH", 2))
    first = torch.load(out / "prompt_learner" / "model.pth.tar-2", weights_only=True)

    run_train(tiny_argv(data_root, "CoOp", out, "OPTIM.MAX_EPOCH", 3))
    logs = sorted(p.name for p in out.iterdir() if p.name.startswith("log.txt"))
    assert len(logs) == 2  # the first log is kept, the second gets a timestamp
    second_log = (out / logs[1]).read_text()
    assert "Found checkpoint" in second_log and "epoch [3/3]" in second_log
    assert "epoch [1/3]" not in second_log and "epoch [2/3]" not in second_log
    resumed = torch.load(out / "prompt_learner" / "model.pth.tar-3", weights_only=True)
    assert resumed["epoch"] == 3
    assert not torch.equal(resumed["state_dict"]["ctx"], first["state_dict"]["ctx"])
    # Resuming restored the scheduler: epoch 3 ran at the cosine LR for e=2, not the warmup LR.
    assert "lr 1.0000e-05" not in second_log


def test_zeroshot_clip_evaluates_through_the_same_path(data_root, tmp_path):
    out = tmp_path / "zs"
    run_train(tiny_argv(data_root, "ZeroshotCLIP", out, flags=["--eval-only"]))
    results = read_results(out)
    assert results["provenance"]["trainer"] == "ZeroshotCLIP" and results["epoch"] == 0
    assert RESULT_KEYS <= set(results["metrics"])
