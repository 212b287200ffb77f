"""parse_test_res.py on fabricated output trees and on a real base-to-new tree."""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import parse_test_res
from conftest import ROOT, run_train, tiny_argv

# (dataset, split) → accuracy and ECE per seed. dtd's test_new lacks seed 3.
VALUES = {
    ("caltech101", "train_base"): {1: (80.0, 2.0), 2: (82.0, 3.0), 3: (84.0, 4.0)},
    ("caltech101", "test_new"): {1: (60.0, 12.0), 2: (62.0, 13.0), 3: (64.0, 14.0)},
    ("dtd", "train_base"): {1: (70.0, 1.0), 2: (71.0, 2.0), 3: (75.0, 6.0)},
    ("dtd", "test_new"): {1: (50.0, 9.0), 2: (52.0, 11.0)},
    ("eurosat", "train_base"): {1: (90.0, 1.5), 2: (92.0, 2.5), 3: (91.0, 2.0)},
    ("eurosat", "test_new"): {1: (70.0, 5.0), 2: (74.0, 7.0), 3: (72.0, 6.0)},
}


def write_run(folder, accuracy, ece, **extra):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"split": "test", "metrics": dict(accuracy=accuracy, ece=ece, **extra)}, f)


def fabricate_base2new(root):
    for (dataset, split), seeds in VALUES.items():
        for seed, (accuracy, ece) in seeds.items():
            write_run(root / split / dataset / "shots_16" / "CoOp" / "vit_b16" / f"seed{seed}",
                      accuracy, ece, nll=0.5)
    # Zero-shot CLIP: one seed, both splits from evaluation; caltech101 only.
    for split, (accuracy, ece) in (("train_base", (88.0, 4.0)), ("test_new", (86.0, 5.0))):
        write_run(root / split / "caltech101" / "shots_16" / "ZeroshotCLIP" / "vit_b16" / "seed1",
                  accuracy, ece)
    # A run folder whose evaluation never finished.
    (root / "test_new" / "eurosat" / "shots_16" / "CoOp" / "vit_b16" / "seed4").mkdir()


def population_std(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def rows_by_key(path):
    with open(path, newline="") as f:
        return {(row["dataset"], row["trainer"]): row for row in csv.DictReader(f)}


def test_base2new_table_means_stds_h_and_missing_seeds(tmp_path, capsys):
    root = tmp_path / "base2new"
    fabricate_base2new(root)
    assert parse_test_res.main([str(root), "--csv", str(tmp_path / "summary.csv")]) == 0
    printed = capsys.readouterr().out

    # caltech101 CoOp: base 82.00 ± 1.63, new 62.00 ± 1.63, H = 2·82·62/144 = 70.61; the
    # seed4 folder of eurosat makes seed4 expected everywhere, so the row is incomplete.
    assert ("| caltech101 | CoOp | vit_b16 | shots_16 | incomplete: base 3/4, new 3/4 | "
            "82.00 ± 1.63 (n=3) | 62.00 ± 1.63 (n=3) | 72.00 | 70.61 | 3.00 ± 0.82 (n=3) | "
            "13.00 ± 0.82 (n=3) | 8.00 |") in printed
    # seed4 exists for eurosat test_new only: every dataset now misses seed4 somewhere.
    assert "eurosat · CoOp/vit_b16 · shots_16 · test_new: `" in printed
    assert "seed4` has no results.json" in printed
    assert "dtd · CoOp/vit_b16 · shots_16 · test_new: missing seed3, seed4" in printed
    assert "caltech101 · CoOp/vit_b16 · shots_16 · train_base: missing seed4" in printed
    assert "CoOp/vit_b16/shots_16: no complete dataset, no average" in printed

    rows = rows_by_key(tmp_path / "summary.csv")
    dtd = rows[("dtd", "CoOp")]
    assert dtd["complete"] == "False" and dtd["new_seeds"] == "seed1, seed2"
    assert float(dtd["new_accuracy"]) == pytest.approx(51.0)
    assert float(dtd["base_ece_std"]) == pytest.approx(population_std([1.0, 2.0, 6.0]))
    assert float(dtd["base_ece_std"]) == pytest.approx(np.std([1.0, 2.0, 6.0]))


def test_base2new_averages_only_complete_datasets(tmp_path, capsys):
    root = tmp_path / "base2new"
    fabricate_base2new(root)
    csv_path = tmp_path / "summary.csv"
    code = parse_test_res.main([str(root), "--csv", str(csv_path), "--seeds", "1", "2", "3",
                                "--metrics", "accuracy", "ece", "nll"])
    assert code == 0
    printed = capsys.readouterr().out

    # With seeds 1-3 expected, seed4 is ignored and only dtd (missing new seed3) is left out.
    base_acc = (82.0 + 91.0) / 2
    new_acc = (62.0 + 72.0) / 2
    h = 2 * base_acc * new_acc / (base_acc + new_acc)
    base_ece, new_ece = (3.0 + 2.0) / 2, (13.0 + 6.0) / 2
    assert (f"| CoOp | vit_b16 | shots_16 | 2 (excl. dtd) | {base_acc:.2f} | {new_acc:.2f} | "
            f"{(base_acc + new_acc) / 2:.2f} | {h:.2f} | {base_ece:.2f} | {new_ece:.2f} | "
            f"{(base_ece + new_ece) / 2:.2f} | 0.5000 | 0.5000 | 0.5000 |") in printed
    assert "dtd · CoOp/vit_b16 · shots_16 · test_new: missing seed3" in printed
    # The unfinished seed4 run is still reported, but it does not make eurosat incomplete.
    assert "seed4` has no results.json" in printed
    # Zero-shot CLIP has one seed, so --seeds 1 2 3 marks it incomplete as well.
    assert "caltech101 · ZeroshotCLIP/vit_b16 · shots_16 · train_base: missing seed2, seed3" \
        in printed

    rows = rows_by_key(csv_path)
    average = rows[("average", "CoOp")]
    assert average["datasets"] == "caltech101 eurosat" and average["complete"] == "False"
    assert float(average["H"]) == pytest.approx(h)
    assert float(average["avg_ece"]) == pytest.approx((base_ece + new_ece) / 2)
    assert rows[("eurosat", "CoOp")]["complete"] == "True"


def test_zero_shot_tree_with_one_seed_is_complete_on_its_own(tmp_path, capsys):
    root = tmp_path / "base2new"
    fabricate_base2new(root)
    assert parse_test_res.main([str(root), "--ci95"]) == 0
    printed = capsys.readouterr().out
    assert ("| ZeroshotCLIP | vit_b16 | shots_16 | 1 | 88.00 | 86.00 | 87.00 | 86.99 | 4.00 | "
            "5.00 | 4.50 |") in printed
    # ci95 = 1.96 · std / √3 for caltech101 CoOp base accuracy.
    assert f"82.00 ± {1.96 * population_std([80, 82, 84]) / math.sqrt(3):.2f}" in printed


def test_generic_mode_groups_by_the_folder_above_the_seeds(tmp_path, capsys):
    root = tmp_path / "evaluation"
    for seed in (1, 2, 3):
        write_run(root / "CoOp" / "vit_b16_16shots" / "dtd" / f"seed{seed}", 40.0 + seed, 5.0)
        write_run(root / "CoOp" / "vit_b16_16shots" / "eurosat" / f"seed{seed}", 50.0 + 2 * seed,
                  6.0)
    write_run(root / "CoOp" / "vit_b16_16shots" / "food101" / "seed1", 80.0, 2.0)
    csv_path = tmp_path / "xd.csv"
    assert parse_test_res.main([str(root), "--csv", str(csv_path)]) == 0
    printed = capsys.readouterr().out

    assert "| CoOp/vit_b16_16shots/dtd | 3 | 42.00 ± 0.82 | 5.00 ± 0.00 |" in printed
    assert "| CoOp/vit_b16_16shots/food101 | incomplete: 1/3 |" in printed
    assert "`CoOp/vit_b16_16shots/food101`: missing seed2, seed3" in printed
    assert "| CoOp/vit_b16_16shots/* average of 2/3 |  | 48.00 | 5.50 |" in printed
    with open(csv_path, newline="") as f:
        rows = {row["group"]: row for row in csv.DictReader(f)}
    assert float(rows["CoOp/vit_b16_16shots/eurosat"]["accuracy_std"]) == pytest.approx(
        np.std([52.0, 54.0, 56.0]))


def test_bad_roots_and_metrics_fail_with_one_message(tmp_path, capsys):
    assert parse_test_res.main([str(tmp_path / "absent")]) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert parse_test_res.main([str(tmp_path)]) == 1
    assert "no seed<n> folders" in capsys.readouterr().err
    write_run(tmp_path / "exp" / "seed1", 50.0, 5.0)
    assert parse_test_res.main([str(tmp_path), "--metrics", "accuracy", "eec"]) == 1
    assert "['eec']" in capsys.readouterr().err


def test_an_older_different_csv_is_kept(tmp_path, capsys):
    write_run(tmp_path / "exp" / "seed1", 50.0, 5.0)
    csv_path = tmp_path / "out" / "summary.csv"
    assert parse_test_res.main([str(tmp_path / "exp"), "--csv", str(csv_path)]) == 0
    first = csv_path.read_text()
    assert parse_test_res.main([str(tmp_path / "exp"), "--csv", str(csv_path)]) == 0
    assert sorted(p.name for p in csv_path.parent.iterdir()) == ["summary.csv"]

    write_run(tmp_path / "exp" / "seed2", 60.0, 7.0)
    assert parse_test_res.main([str(tmp_path / "exp"), "--csv", str(csv_path)]) == 0
    kept = [p for p in csv_path.parent.iterdir() if p.name != "summary.csv"]
    assert len(kept) == 1 and kept[0].read_text() == first
    with open(csv_path, newline="") as f:
        assert float(next(csv.DictReader(f))["accuracy"]) == pytest.approx(55.0)


def test_seeds_outside_the_expected_ones_are_reported_and_left_out(tmp_path, capsys):
    for seed, accuracy in ((1, 50.0), (2, 60.0), (7, 0.0)):
        write_run(tmp_path / "exp" / f"seed{seed}", accuracy, 5.0)
    assert parse_test_res.main([str(tmp_path / "exp"), "--seeds", "1", "2"]) == 0
    printed = capsys.readouterr().out
    assert "| . | 2 | 55.00 ± 5.00 | 5.00 ± 0.00 |" in printed
    assert "`.`: seed7 is not among the expected seeds, left out" in printed


@pytest.fixture(scope="module")
def real_tree(data_root, tmp_path_factory):
    """A base-to-new tree from real tiny runs: CoOp (trained) and ZeroshotCLIP, seed 1."""
    root = tmp_path_factory.mktemp("output") / "base2new"
    for trainer in ("CoOp", "ZeroshotCLIP"):
        tail = os.path.join("generated_shapes", "shots_16", trainer, "tiny", "seed1")
        train_dir, test_dir = root / "train_base" / tail, root / "test_new" / tail
        flags = ["--eval-only"] if trainer == "ZeroshotCLIP" else []
        run_train(tiny_argv(data_root, trainer, train_dir, "OPTIM.MAX_EPOCH", 1, flags=flags))
        if trainer == "CoOp":
            flags = ["--eval-only", "--model-dir", train_dir, "--load-epoch", 1]
        run_train(tiny_argv(data_root, trainer, test_dir, subsample="new", flags=flags))
    return root


def test_driver_command_on_a_real_tree(real_tree):
    summary = real_tree / "summary.csv"
    completed = subprocess.run(
        [sys.executable, "parse_test_res.py", str(real_tree), "--csv", str(summary)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "Missing" not in completed.stdout

    rows = rows_by_key(summary)
    for trainer in ("CoOp", "ZeroshotCLIP"):
        tail = os.path.join("generated_shapes", "shots_16", trainer, "tiny", "seed1")
        with open(real_tree / "train_base" / tail / "results.json") as f:
            base = json.load(f)["metrics"]
        with open(real_tree / "test_new" / tail / "results.json") as f:
            new = json.load(f)["metrics"]
        row = rows[("generated_shapes", trainer)]
        assert row["complete"] == "True"
        assert float(row["base_ece"]) == pytest.approx(base["ece"])
        assert float(row["new_accuracy"]) == pytest.approx(new["accuracy"])
        assert float(row["avg_ece"]) == pytest.approx((base["ece"] + new["ece"]) / 2)
        assert f"| {trainer} | tiny | shots_16 | 1 |" in completed.stdout


def test_base_new_figures_from_a_real_tree(real_tree, tmp_path, capsys):
    plots = tmp_path / "plots"
    assert parse_test_res.main([str(real_tree), "--plots", str(plots)]) == 0
    assert "Reliability figure:" in capsys.readouterr().out
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["generated_shapes_CoOp_tiny_shots_16_seed1.png",
                     "generated_shapes_ZeroshotCLIP_tiny_shots_16_seed1.png"]
    for name in names:
        with Image.open(plots / name) as image:
            assert image.size == (960, 600)
