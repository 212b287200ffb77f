"""Interrupted runs, atomic checkpoints, untrusted checkpoints, diverging losses, determinism."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, read_results, run_cli_in_process, run_train, tiny_argv
from runtime.utils import CheckpointFormatError, load_checkpoint, save_checkpoint
from wordnet_fixture import write_wordnet

# Small batches give many steps per epoch, so a kill lands well inside an epoch.
SHORT_RUN = ("OPTIM.MAX_EPOCH", 3, "DATALOADER.TRAIN_X.BATCH_SIZE", 2, "TRAIN.PRINT_FREQ", 1,
             "TRAIN.CHECKPOINT_FREQ", 1)


@pytest.fixture(scope="module")
def wordnet_dir(tmp_path_factory):
    return write_wordnet(str(tmp_path_factory.mktemp("nltk_data")))


def dor_run(data_root, out, wordnet_dir, *opts, seed: int = 1):
    """A CoOpDOR run: it has a sampler and random augmentations whose state must survive.
    Runs beside each other share one vocabulary feature cache, as one user's runs do."""
    return tiny_argv(data_root, "CoOpDOR", out, "TRAINER.DOR.WORDNET_DIR", wordnet_dir,
                     "TRAINER.DOR.CACHE_DIR", osp.join(osp.dirname(str(out)), "cache"),
                     "TRAINER.DOR.POOL_SIZE", 8, "TRAINER.DOR.NUM_OUTLIERS", 4, *opts, seed=seed)


def final_state(out):
    checkpoint = torch.load(osp.join(out, "prompt_learner", "model.pth.tar-3"),
                            weights_only=True)
    return checkpoint["state_dict"]["ctx"]


def outlier_files(out) -> dict:
    folder = osp.join(out, "dor")
    return {name: open(osp.join(folder, name)).read() for name in sorted(os.listdir(folder))
            if name.startswith("outliers_")}


# ----------------------------------------------------------------------------- kill and resume

def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(data_root, wordnet_dir,
                                                                     tmp_path):
    reference = tmp_path / "reference"
    run_train(dor_run(data_root, reference, wordnet_dir, *SHORT_RUN))

    killed = tmp_path / "killed"
    argv = [str(a) for a in dor_run(data_root, killed, wordnet_dir, *SHORT_RUN)]
    process = subprocess.Popen([sys.executable, "train.py", *argv], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    for line in process.stdout:
        if "epoch [2/3] batch [5/" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=120)
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    # The kill fell inside epoch 2: epoch 1 is the latest checkpoint, nothing was tested yet.
    assert (killed / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-1\n"
    assert not (killed / "results.json").exists()

    resumed = run_cli_in_process(argv)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Restored the random states saved with the checkpoint" in resumed.stdout
    assert "epoch [1/3]" not in resumed.stdout and "epoch [2/3] batch [1/" in resumed.stdout

    assert torch.equal(final_state(killed), final_state(reference))
    assert read_results(killed)["metrics"] == read_results(reference)["metrics"]
    assert outlier_files(killed) == outlier_files(reference)


def test_resuming_a_dor_run_with_another_pool_is_refused(data_root, wordnet_dir, tmp_path):
    out = tmp_path / "run"
    run_train(dor_run(data_root, out, wordnet_dir, "OPTIM.MAX_EPOCH", 1))

    result = run_cli_in_process(dor_run(data_root, out, wordnet_dir, "OPTIM.MAX_EPOCH", 2,
                                        "TRAINER.DOR.STRATEGY", "far"))
    assert result.returncode == 2
    assert "The outlier pool differs from the one the checkpoint" in result.stderr
    assert (out / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-1\n"


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 1}, str(tmp_path))
    before = (tmp_path / "model.pth.tar-1").read_bytes()

    def dies_half_way(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"state_dict": model.state_dict(), "epoch": 2}, str(tmp_path))

    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-1\n"
    assert not (tmp_path / "model.pth.tar-2").exists()
    assert (tmp_path / "model.pth.tar-1").read_bytes() == before
    assert load_checkpoint(str(tmp_path / "model.pth.tar-1"))["epoch"] == 1


# ----------------------------------------------------------------------------- untrusted files

class Payload:
    """Unpickling this object calls ``open(marker, "w")``: the file appears if it ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_checkpoint(path, marker) -> None:
    torch.save({"state_dict": {"ctx": torch.zeros(4, 64)}, "epoch": 3,
                "hook": Payload(str(marker))}, str(path))


def test_the_crafted_payload_runs_when_unpickled_without_protection(tmp_path):
    # The payload is live: plain unpickling executes it (what the project never does).
    path, marker = tmp_path / "evil.pth.tar", tmp_path / "ran"
    crafted_checkpoint(path, marker)
    torch.load(str(path), weights_only=False)
    assert marker.exists()


def test_a_checkpoint_with_a_pickled_callable_is_refused_unrun(data_root, tmp_path):
    model_dir, marker = tmp_path / "model", tmp_path / "payload_ran"
    (model_dir / "prompt_learner").mkdir(parents=True)
    crafted_checkpoint(model_dir / "prompt_learner" / "model-best.pth.tar", marker)

    out = tmp_path / "eval"
    result = run_cli_in_process(tiny_argv(data_root, "CoOp", out,
                                          flags=["--eval-only", "--model-dir", model_dir]))
    assert result.returncode == 2
    assert "holds pickled Python objects besides tensors, so it is refused" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert not (out / "results.json").exists()

    with pytest.raises(CheckpointFormatError):
        load_checkpoint(str(model_dir / "prompt_learner" / "model-best.pth.tar"))
    assert not marker.exists()


def test_resuming_from_a_checkpoint_with_a_pickled_callable_is_refused(data_root, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "payload_ran"
    (out / "prompt_learner").mkdir(parents=True)
    crafted_checkpoint(out / "prompt_learner" / "model.pth.tar-1", marker)
    (out / "prompt_learner" / "checkpoint").write_text("model.pth.tar-1\n")

    result = run_cli_in_process(tiny_argv(data_root, "CoOp", out))
    assert result.returncode == 2
    assert "so it is refused" in result.stderr and not marker.exists()


def test_a_truncated_checkpoint_is_named_as_damaged(tmp_path):
    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": {"w": torch.ones(100)}, "epoch": 1}, str(path))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointFormatError, match="is damaged or is not a PyTorch checkpoint"):
        load_checkpoint(str(path))


# ----------------------------------------------------------------------------- numerical faults

def test_a_diverging_loss_stops_the_run_naming_step_terms_and_a_hint(data_root, tmp_path):
    out = tmp_path / "diverged"
    result = run_cli_in_process(tiny_argv(data_root, "CoOp", out, "OPTIM.LR", 1e30,
                                          "OPTIM.WARMUP_EPOCH", 0, "TRAIN.PRINT_FREQ", 1))
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    message = errors[0]
    assert "The training loss is not finite at epoch 1, batch " in message
    assert "(step " in message and "loss " in message
    assert "the learning rate may be too high (OPTIM.LR 1e+30)" in message
    assert not (out / "prompt_learner" / "model.pth.tar-1").exists()


def test_fp16_divergence_suggests_another_precision(data_root, tmp_path, monkeypatch):
    from toolbox import build_trainer
    from trainers.base import NonFiniteLossError
    import train

    argv = tiny_argv(data_root, "CoOp", tmp_path / "fp16")
    cfg = train.setup_cfg(train.parse_args([str(a) for a in argv]))
    trainer = build_trainer(cfg)
    monkeypatch.setattr(type(trainer), "precision", property(lambda self: "fp16"))  # as on CUDA
    trainer.epoch, trainer.batch_idx, trainer.num_batches = 0, 2, 10
    with pytest.raises(NonFiniteLossError) as raised:
        trainer.check_finite(torch.tensor(float("nan")), {"loss": float("nan")})
    assert "epoch 1, batch 3/10 (step 3): loss nan" in str(raised.value)
    assert "PREC fp16 overflows easily: try TRAINER.COOP.PREC amp or fp32" in str(raised.value)


# ----------------------------------------------------------------------------- determinism

def test_two_runs_with_the_same_seed_write_identical_results(data_root, wordnet_dir, tmp_path):
    for name in ("first", "second"):
        run_train(dor_run(data_root, tmp_path / name, wordnet_dir, "OPTIM.MAX_EPOCH", 2))

    first, second = tmp_path / "first", tmp_path / "second"
    assert (first / "results.json").read_bytes() == (second / "results.json").read_bytes()
    assert outlier_files(first) == outlier_files(second) != {}
    assert (first / "dor" / "pool.tsv").read_text() == (second / "dor" / "pool.tsv").read_text()


def test_another_seed_gives_other_draws(data_root, wordnet_dir, tmp_path):
    for seed in (1, 2):
        run_train(dor_run(data_root, tmp_path / f"seed{seed}", wordnet_dir, "OPTIM.MAX_EPOCH", 1,
                          seed=seed))
    first, second = (json.load(open(tmp_path / f"seed{s}" / "results.json")) for s in (1, 2))
    assert outlier_files(tmp_path / "seed1") != outlier_files(tmp_path / "seed2")
    assert first["provenance"]["seed"] == 1 and second["provenance"]["seed"] == 2
