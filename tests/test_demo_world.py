"""The demo world: drawing, downstream datasets in CoOp's format, deterministic cached
pretraining, and a reduced run of scripts/demo.sh."""
import csv
import json
import os
import os.path as osp
import random
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import train
from clip_backbone.loader import file_sha256
from conftest import ROOT
from demo_world import build, pretrain, world
from toolbox import build_dataset

# A pretraining small enough for a test: the same code path, a few steps on a small pool.
QUICK = replace(pretrain.DEFAULT_CONFIG, steps=6, batch_size=16, pool_size=64, warmup=2,
                checkpoint_every=3)


def test_drawing_is_a_pure_function_of_the_generator():
    obj = world.WorldObject("red", "star", "large", "striped", "on the left", "snow")
    first = np.asarray(world.draw(random.Random(3), obj))
    second = np.asarray(world.draw(random.Random(3), obj))
    other = np.asarray(world.draw(random.Random(4), obj))
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, second) and not np.array_equal(first, other)


def test_the_downstream_camera_is_warmer_than_pretrainings():
    obj = world.WorldObject("cyan", "square", "large", "solid", "in the middle", "fog")
    clean = np.asarray(world.draw(random.Random(0), obj, world.DEFAULT_SPEC)).astype(float)
    shifted = np.asarray(world.draw(random.Random(0), obj, world.DOWNSTREAM_SPEC)).astype(float)
    assert shifted[..., 0].mean() > clean[..., 0].mean() + 5   # red gain 1.15
    assert shifted[..., 2].mean() < clean[..., 2].mean() - 5   # blue gain 0.82


def test_held_out_kinds_leave_every_word_in_pretraining():
    seen_colours = {colour for colour, _ in world.SEEN}
    seen_shapes = {shape for _, shape in world.SEEN}
    assert len(world.HELD_OUT) == 24 and len(world.SEEN) == 120
    assert seen_colours == set(world.COLOURS) and seen_shapes == set(world.SHAPES)
    assert not set(world.HELD_OUT) & set(world.SEEN)


def test_lexicon_holds_near_and_far_labels_once_each():
    labels = world.lexicon()
    names = [label for label, _ in labels]
    groups = {group for _, group in labels}
    assert len(names) == len(set(names)) == 1745
    assert groups == {"kind", "attributed", "shape", "scene"}
    assert "small striped red star" in names and "snow" in names and "star" in names


def test_splits_are_seeded_kinds_seen_in_pretraining():
    first, again, other = build.split_classes(1), build.split_classes(1), build.split_classes(2)
    assert first == again and first != other
    assert len(first) == len(set(first)) == build.NUM_CLASSES == 42
    assert all(tuple(name.split(" ")) in world.SEEN for name in first)
    with pytest.raises(ValueError, match="whole number"):
        build.split_classes(-1)


def read_demo(root, seed, subsample="base"):
    cfg = train.setup_cfg(train.parse_args([
        "--root", str(root), "--seed", str(seed), "--dataset-config-file",
        osp.join(ROOT, "configs", "datasets", "demo_world.yaml"),
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", subsample]))
    return build_dataset(cfg)


def test_the_reader_draws_and_reads_a_split_in_coops_format(tmp_path):
    base = read_demo(tmp_path, seed=2)
    classes = build.split_classes(2)
    assert base.classnames == classes[:21]
    assert len(base.train_x) == 21 * 16 and len(base.val) == 21 * 4
    assert len(base.test) == 21 * 100

    folder = tmp_path / "demo_world" / "split2"
    with open(folder / build.SPLIT_NAME) as f:
        split = json.load(f)
    assert {len(split[name]) for name in ("train", "val", "test")} == {42 * 20, 42 * 4, 42 * 100}
    assert split["train"][0] == [classes[0].replace(" ", "_") + "/000.png", 0, classes[0]]
    assert (tmp_path / "demo_world" / "lexicon.txt").read_text().count("\n") == 1745

    new = read_demo(tmp_path, seed=2, subsample="new")
    assert new.classnames == classes[21:] and len(new.test) == 21 * 100


def test_a_split_drawn_from_another_world_is_redrawn(tmp_path):
    folder = tmp_path / "split1"
    build.write_split(str(folder), 1)
    marker = folder / "split_fewshot" / "shot_16-seed_1.pkl"  # what a reader adds later
    marker.parent.mkdir()
    marker.write_bytes(b"cache")

    build.write_split(str(folder), 1)  # up to date: the folder is kept as it is
    assert marker.exists()

    stamp = json.loads((folder / build.STAMP_NAME).read_text())
    stamp["spec"]["noise"] = 0.0
    (folder / build.STAMP_NAME).write_text(json.dumps(stamp))
    build.write_split(str(folder), 1)
    assert not marker.exists()  # drawn again, its caches with it
    assert json.loads((folder / build.STAMP_NAME).read_text()) == build.stamp(1)


# ----------------------------------------------------------------------------- pretraining

def test_two_cold_pretrainings_write_the_same_checkpoint(tmp_path):
    first = pretrain.pretrain(str(tmp_path / "a"), config=QUICK)
    second = pretrain.pretrain(str(tmp_path / "b"), config=QUICK)
    assert not first.reused and not second.reused
    assert first.sha256 == second.sha256 == file_sha256(first.path)
    assert set(first.diagnostics) >= {"zeroshot_accuracy_seen", "zeroshot_accuracy_held_out",
                                      "text_mean_pairwise_cosine", "logit_scale"}

    again = pretrain.pretrain(str(tmp_path / "a"), config=QUICK)
    assert again.reused and again.sha256 == first.sha256

    longer = pretrain.pretrain(str(tmp_path / "a"), config=replace(QUICK, steps=7))
    assert not longer.reused and longer.key != first.key and longer.sha256 != first.sha256


def test_an_interrupted_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch):
    reference = pretrain.pretrain(str(tmp_path / "reference"), config=QUICK)

    calls = {"n": 0}
    original = pretrain.contrastive_loss

    def dies_at_step_five(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return original(*args)

    monkeypatch.setattr(pretrain, "contrastive_loss", dies_at_step_five)
    with pytest.raises(KeyboardInterrupt):
        pretrain.pretrain(str(tmp_path / "resumed"), config=QUICK)
    folder = tmp_path / "resumed" / reference.key
    assert (folder / pretrain.PROGRESS_NAME).exists()  # saved after step 3
    assert not (folder / pretrain.CHECKPOINT_NAME).exists()

    monkeypatch.setattr(pretrain, "contrastive_loss", original)
    resumed = pretrain.pretrain(str(tmp_path / "resumed"), config=QUICK)
    assert resumed.sha256 == reference.sha256
    assert not (folder / pretrain.PROGRESS_NAME).exists()


def test_the_pretrained_checkpoint_loads_as_a_backbone(tmp_path):
    from clip_backbone.loader import load_clip

    result = pretrain.pretrain(str(tmp_path), config=QUICK)
    loaded = load_clip("demo-clip", result.path)
    assert loaded.weights_id == f"sha256:{result.sha256}"
    assert loaded.model.visual.output_dim == 32


# ----------------------------------------------------------------------------- the demo

def test_a_reduced_demo_prints_the_table_and_draws_the_diagrams(tmp_path):
    environment = dict(os.environ, PYTHON=sys.executable, DATA=str(tmp_path / "data"),
                       OUT=str(tmp_path / "out"), SEEDS="1", PRETRAIN_STEPS="40",
                       DEMO_WORLD_CACHE=str(tmp_path / "cache"),
                       DOR_CACHE_DIR=str(tmp_path / "dor_cache"),
                       TRAINERS="ZeroshotCLIP CoOp CoOpDOR", DEMO_OPTS="OPTIM.MAX_EPOCH 2")
    result = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert "zero-shot accuracy over 144 kinds" in result.stdout
    assert "class prompts' mean pairwise cosine" in result.stdout
    for method in ("ZeroshotCLIP", "CoOp", "CoOpDOR"):
        assert f"| {method} " in result.stdout
    with open(tmp_path / "out" / "summary.csv") as f:
        rows = [row for row in csv.DictReader(f) if row["dataset"] == "demo_world"]
    assert {row["trainer"] for row in rows} == {"ZeroshotCLIP", "CoOp", "CoOpDOR"}
    for row in rows:
        assert row["complete"] == "True" and row["base_seeds"] == row["new_seeds"] == "seed1"
        for key in ("base_accuracy", "new_accuracy", "base_ece", "new_ece", "base_confidence"):
            assert 0.0 <= float(row[key]) <= 100.0, (key, row)
        assert float(row["base_text_dispersion_ratio"]) > 0.0

    plots = sorted(os.listdir(tmp_path / "out" / "reliability"))
    assert len(plots) == 3 and all(name.endswith(".png") for name in plots)
    dor_dir = (tmp_path / "out" / "base2new" / "train_base" / "demo_world" / "shots_16" /
               "CoOpDOR" / "demo" / "seed1" / "dor")
    assert (dor_dir / "outliers_epoch1.txt").read_text().count("\n") == 32
