"""The experiment scripts end to end on the generated dataset with the tiny CLIP.

They are called as a user would (bash, settings from the environment and options) and write
CoOp's output layout; a finished run is skipped and left untouched, an unfinished one resumed.
"""
import csv
import os
import os.path as osp
import subprocess
import sys

import pytest

from conftest import ROOT, read_results

NEW_CLASSES = ["bicycle", "tree", "house", "fish", "lamp"]
SHORT = ["--", "OPTIM.MAX_EPOCH", "1"]  # config overrides passed through to train.py


def run_script(name: str, *args, env=None, **settings) -> subprocess.CompletedProcess:
    """``bash scripts/<name> ARGS`` with the given settings in its environment."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("TRAINER", "CFG", "SHOTS", "LOADEP", "DATA", "OUT", "DATASETS",
                                "SEEDS", "SOURCE", "IMAGENET_CFG")}
    environment.update(PYTHON=sys.executable, TQDM_DISABLE="1", **(env or {}))
    environment.update({key: str(value) for key, value in settings.items()})
    return subprocess.run(["bash", osp.join("scripts", name), *[str(a) for a in args]],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("output"))


def base2new_dir(out: str, split: str, seed: int = 1) -> str:
    return osp.join(out, "base2new", split, "generated_shapes", "shots_16", "CoOp", "tiny",
                    f"seed{seed}")


@pytest.fixture(scope="module")
def seed1(data_root, out):
    """Base-to-new seed 1, trained and tested by the scripts: (train dir, test dir, outputs)."""
    settings = dict(DATA=data_root, OUT=out, TRAINER="CoOp")
    train = succeeded(run_script("base2new_train.sh", "--cfg", "tiny", "generated_shapes", 1,
                                 **settings))
    test = succeeded(run_script("base2new_test.sh", "--cfg=tiny", "generated_shapes", 1,
                                **settings))
    return base2new_dir(out, "train_base"), base2new_dir(out, "test_new"), train, test


def test_base2new_train_then_test_in_coops_layout(seed1):
    train_dir, test_dir, train, _ = seed1
    assert "Skipping" not in train.stdout and "Continuing" not in train.stdout

    base = read_results(train_dir)
    assert base["provenance"]["subsample_classes"] == "base" and base["num_classes"] == 5
    assert base["provenance"]["num_shots"] == 16 and base["epoch"] == 3
    new = read_results(test_dir)
    assert new["classnames"] == NEW_CLASSES and new["epoch"] == 3  # load epoch read from disk
    assert new["provenance"]["subsample_classes"] == "new"


@pytest.mark.parametrize("script", ["base2new_train.sh", "base2new_test.sh"])
def test_finished_runs_are_skipped_and_left_untouched(seed1, data_root, out, script):
    folder = seed1[0] if script == "base2new_train.sh" else seed1[1]
    results = osp.join(folder, "results.json")
    stamp = os.stat(results).st_mtime_ns

    again = succeeded(run_script(script, "--trainer", "CoOp", "--cfg", "tiny",
                                 "generated_shapes", 1, DATA=data_root, OUT=out))
    assert again.stdout.strip() == (f"Skipping {folder}: it holds a finished run "
                                    "(results.json); delete the folder to run it again")
    assert os.stat(results).st_mtime_ns == stamp


def test_an_unfinished_run_is_resumed_not_restarted(seed1, data_root, out):
    train_dir = seed1[0]
    checkpoint = osp.join(train_dir, "prompt_learner", "model.pth.tar-3")
    stamp = os.stat(checkpoint).st_mtime_ns
    os.remove(osp.join(train_dir, "results.json"))

    resumed = succeeded(run_script("base2new_train.sh", "--trainer", "CoOp", "--cfg", "tiny",
                                   "generated_shapes", 1, DATA=data_root, OUT=out))
    assert f"Continuing the unfinished run in {train_dir}" in resumed.stdout
    assert read_results(train_dir)["epoch"] == 3
    assert os.stat(checkpoint).st_mtime_ns == stamp  # all 3 epochs were done: nothing retrained


def test_driver_runs_every_dataset_and_seed_then_parses(seed1, data_root, out):
    if not osp.isfile(osp.join(ROOT, "parse_test_res.py")):
        pytest.fail("parse_test_res.py does not exist yet")
    result = succeeded(run_script("run_base2new.sh", "--trainer", "CoOp", "--cfg", "tiny",
                                  "--seeds", "1 2", *SHORT, DATA=data_root, OUT=out,
                                  DATASETS="generated_shapes"))

    assert f"Skipping {base2new_dir(out, 'train_base', 1)}" in result.stdout
    assert f"Skipping {base2new_dir(out, 'test_new', 1)}" in result.stdout
    for seed in (1, 2):
        assert read_results(base2new_dir(out, "test_new", seed))["classnames"] == NEW_CLASSES
    assert read_results(base2new_dir(out, "test_new", 2))["epoch"] == 1  # the override reached

    with open(osp.join(out, "base2new", "summary.csv")) as f:
        rows = [row for row in csv.DictReader(f) if row["dataset"] == "generated_shapes"]
    assert len(rows) == 1 and rows[0]["trainer"] == "CoOp" and rows[0]["config"] == "tiny"
    new_accuracies = [read_results(base2new_dir(out, "test_new", seed))["metrics"]["accuracy"]
                      for seed in (1, 2)]
    assert float(rows[0]["new_accuracy"]) == pytest.approx(sum(new_accuracies) / 2)


def test_fewshot_and_cross_dataset_scripts(data_root, out):
    settings = dict(DATA=data_root, OUT=out, TRAINER="CoOp", CFG="tiny")
    source_dir = osp.join(out, "generated_shapes", "CoOp", "tiny_16shots", "seed1")

    succeeded(run_script("fewshot.sh", "generated_shapes", 1, *SHORT, **settings))
    fewshot = read_results(source_dir)
    assert fewshot["num_classes"] == 10 and fewshot["provenance"]["num_shots"] == 16

    same_run = succeeded(run_script("xd_train.sh", "--source", "generated_shapes", 1,
                                    **settings))
    assert f"Skipping {source_dir}" in same_run.stdout
    succeeded(run_script("xd_test.sh", "generated_shapes", 1, SOURCE="generated_shapes",
                         **settings))
    target = read_results(osp.join(out, "evaluation", "CoOp", "tiny_16shots", "generated_shapes",
                                   "seed1"))
    assert target["epoch"] == 1 and target["num_classes"] == 10  # epoch of the 1-epoch run


@pytest.mark.parametrize("script, args, settings, message", [
    ("base2new_train.sh", [], {}, "error: expected DATASET and SEED"),
    ("base2new_train.sh", ["--bogus", "x", "generated_shapes", 1], {},
     "error: unknown option --bogus"),
    ("base2new_train.sh", ["generated_shapes", 1], {"TRAINER": ""}, "error: no trainer"),
    ("base2new_train.sh", ["generated_shapes", 1], {"DATA": ""}, "error: no data root"),
    ("base2new_train.sh", ["generated_shapes", "one"], {}, 'SEED must be a whole number'),
    ("base2new_test.sh", ["--shots", "0", "generated_shapes", 1], {},
     'the number of shots must be a positive whole number, got "0"'),
    ("xd_train.sh", ["1", "--", "OPTIM.MAX_EPOCH"], {}, "must be KEY VALUE pairs"),
    ("run_base2new.sh", ["extra"], {}, "error: unexpected argument extra"),
    ("fewshot.sh", ["--trainer"], {}, "error: --trainer needs a value"),
])
def test_usage_errors_print_the_usage_line(data_root, script, args, settings, message):
    environment = {"DATA": data_root, "TRAINER": "CoOp", "CFG": "tiny", **settings}
    result = run_script(script, *args, **environment)
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: {script} ") and message in result.stderr


@pytest.mark.parametrize("script, args, message", [
    ("base2new_train.sh", ["--cfg", "nope", "generated_shapes", 1],
     'no config "nope" for trainer CoOp'),
    ("base2new_train.sh", ["--trainer", "CoOpp", "generated_shapes", 1],
     'no configs for trainer "CoOpp"'),
    ("base2new_train.sh", ["caltech102", 1], 'unknown dataset "caltech102"'),
    ("base2new_test.sh", ["generated_shapes", 7], "no training run in"),
    ("xd_test.sh", ["imagenet_a", 1], "no training run in"),
])
def test_bad_settings_fail_with_one_message(data_root, tmp_path, script, args, message):
    result = run_script(script, *args, DATA=data_root, OUT=tmp_path, TRAINER="CoOp", CFG="tiny")
    assert result.returncode == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr and "Traceback" not in result.stderr
    if "nope" in args:
        assert "available: " in result.stderr and "tiny" in result.stderr


def test_test_script_refuses_an_unfinished_training_run(data_root, tmp_path):
    unfinished = base2new_dir(str(tmp_path), "train_base")
    os.makedirs(osp.join(unfinished, "prompt_learner"))
    result = run_script("base2new_test.sh", "generated_shapes", 1, DATA=data_root, OUT=tmp_path,
                        TRAINER="CoOp", CFG="tiny")
    assert result.returncode == 1
    assert f"the training run in {unfinished} has not finished" in result.stderr


def test_zero_shot_clip_runs_through_the_base2new_scripts(data_root, tmp_path):
    settings = dict(DATA=data_root, OUT=tmp_path, TRAINER="ZeroshotCLIP")
    succeeded(run_script("base2new_train.sh", "--cfg", "tiny", "generated_shapes", 1,
                         **settings))
    succeeded(run_script("base2new_test.sh", "--cfg", "tiny", "generated_shapes", 1,
                         **settings))
    run = osp.join("generated_shapes", "shots_16", "ZeroshotCLIP", "tiny", "seed1")
    base = read_results(osp.join(tmp_path, "base2new", "train_base", run))
    new = read_results(osp.join(tmp_path, "base2new", "test_new", run))
    assert base["num_classes"] == 5 and base["epoch"] == 0
    assert new["classnames"] == NEW_CLASSES and new["epoch"] == 0
