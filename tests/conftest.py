"""Shared fixtures: a generated dataset on disk and an in-process runner for train.py."""
import contextlib
import io
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

import train
from datasets.generated import draw_dataset

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
GENERATED = osp.join(ROOT, "configs", "datasets", "generated_shapes.yaml")


def trainer_config(trainer: str, name: str = "tiny") -> str:
    return osp.join(ROOT, "configs", "trainers", trainer, f"{name}.yaml")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> str:
    """A DATASET.ROOT holding the generated dataset (drawn once per test session)."""
    root = str(tmp_path_factory.mktemp("data"))
    draw_dataset(osp.join(root, "generated_shapes"))
    return root


def run_train(argv) -> None:
    """Run train.py's main() in this process, then undo its console tee."""
    stdout = sys.stdout
    try:
        train.main(train.parse_args([str(a) for a in argv]))
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout


def run_cli_in_process(argv, env=None) -> subprocess.CompletedProcess:
    """train.py's command line run in this process (no interpreter start-up): its exit status,
    stdout (the console log) and stderr, as ``subprocess.run`` would report them."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env = {key: os.environ.get(key) for key in (env or {})}
    os.environ.update(env or {})
    os.environ.pop("DOR_DEBUG", None)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = train.cli([str(a) for a in argv])
            finally:
                if sys.stdout is not stdout:  # the log file tee that setup_logger installed
                    sys.stdout.close()
                    sys.stdout = stdout
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(argv, status, stdout.getvalue(), stderr.getvalue())


def tiny_argv(data_root: str, trainer: str, output_dir, *opts, flags=(), seed: int = 1,
              subsample: str = "base", shots: int = 16, config: str = "tiny") -> list:
    """Arguments for a short run of ``trainer`` on the generated dataset with the tiny CLIP.

    ``flags`` are extra command-line flags; ``opts`` are KEY VALUE config overrides.
    """
    return ["--root", data_root, "--trainer", trainer, "--seed", seed,
            "--dataset-config-file", GENERATED, "--config-file", trainer_config(trainer, config),
            "--output-dir", output_dir, *flags, "DATASET.NUM_SHOTS", shots,
            "DATASET.SUBSAMPLE_CLASSES", subsample, *opts]


def read_results(output_dir, name: str = "results.json") -> dict:
    with open(osp.join(output_dir, name)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def clip_model():
    """The tiny random CLIP in fp32 (its weights are fixed by its own seed)."""
    from clip_backbone.loader import load_clip

    return load_clip("tiny-vit").model.float()


@pytest.fixture
def seeded():
    """Random contexts and meta-networks draw from the global generator: fix it per test."""
    import torch

    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_dassl_env(monkeypatch):
    """Tests run against the built-in runtime unless a test asks otherwise."""
    monkeypatch.delenv("DOR_TOOLBOX", raising=False)
    os.environ.setdefault("TQDM_DISABLE", "1")
