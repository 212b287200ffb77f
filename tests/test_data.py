"""Few-shot sampling, its cache, and CoOp's base/new class split on the generated dataset."""
import os.path as osp
import pickle
import random
import shutil

import pytest

import train
from conftest import GENERATED
from datasets.reader import DatasetError, dump_fewshot, load_fewshot, subsample_classes
from toolbox import build_dataset


def dataset(data_root, *opts, seed=1):
    args = train.parse_args(["--root", data_root, "--dataset-config-file", GENERATED,
                             "--seed", str(seed), *[str(o) for o in opts]])
    cfg = train.setup_cfg(args)
    random.seed(cfg.SEED)
    return build_dataset(cfg), cfg


def reference_fewshot(items, shots, seed):
    """Dassl's sampling written out: per label in first-seen order, random.sample."""
    random.seed(seed)
    by_label = {}
    for item in items:
        by_label.setdefault(item.label, []).append(item)
    return [x.impath for label in by_label for x in random.sample(by_label[label], shots)]


def test_fewshot_is_seeded_and_per_class(data_root):
    full, _ = dataset(data_root)
    ds, cfg = dataset(data_root, "DATASET.NUM_SHOTS", 4, seed=7)

    labels = [item.label for item in ds.train_x]
    assert all(labels.count(label) == 4 for label in range(10))
    assert [x.impath for x in ds.train_x] == reference_fewshot(full.train_x, 4, 7)
    val_labels = [item.label for item in ds.val]
    assert all(val_labels.count(label) == 4 for label in range(10))

    again, _ = dataset(data_root, "DATASET.NUM_SHOTS", 4, seed=7)
    other, _ = dataset(data_root, "DATASET.NUM_SHOTS", 4, seed=8)
    assert [x.impath for x in again.train_x] == [x.impath for x in ds.train_x]
    assert [x.impath for x in other.train_x] != [x.impath for x in ds.train_x]


def test_fewshot_cache_uses_dassl_class_path_and_round_trips(data_root, tmp_path):
    ds, _ = dataset(data_root, "DATASET.NUM_SHOTS", 2, seed=3)
    cache = osp.join(data_root, "generated_shapes", "split_fewshot", "shot_2-seed_3.pkl")
    with open(cache, "rb") as f:
        raw = f.read()
    assert b"dassl.data.datasets.base_dataset" in raw and b"runtime.data" not in raw

    loaded = load_fewshot(cache, osp.join(data_root, "generated_shapes"))
    assert [(x.impath, x.label, x.classname) for x in loaded["train"]] == [
        (x.impath, x.label, x.classname) for x in ds.train_x]


def test_corrupt_cache_is_rebuilt_identically(data_root):
    first, _ = dataset(data_root, "DATASET.NUM_SHOTS", 3, seed=5)
    cache = osp.join(data_root, "generated_shapes", "split_fewshot", "shot_3-seed_5.pkl")
    with open(cache, "wb") as f:
        f.write(b"\x80\x05 truncated")
    rebuilt, _ = dataset(data_root, "DATASET.NUM_SHOTS", 3, seed=5)
    assert [x.impath for x in rebuilt.train_x] == [x.impath for x in first.train_x]


def test_cache_refuses_foreign_objects(tmp_path):
    path = str(tmp_path / "evil.pkl")
    with open(path, "wb") as f:
        pickle.dump({"train": [print]}, f)
    assert load_fewshot(path, str(tmp_path)) is None


def test_cache_is_rerooted_when_the_data_folder_moved(data_root, tmp_path):
    ds, _ = dataset(data_root)
    old_dir = tmp_path / "old_root" / "generated_shapes"
    shutil.copytree(osp.join(data_root, "generated_shapes", "images"), old_dir / "images")
    here = osp.join(data_root, "generated_shapes")
    moved = [type(x)(impath=x.impath.replace(here, str(old_dir)), label=x.label,
                     classname=x.classname) for x in ds.train_x[:3]]
    path = str(tmp_path / "c.pkl")
    dump_fewshot({"train": moved}, path)
    shutil.rmtree(tmp_path / "old_root")

    loaded = load_fewshot(path, here)
    assert [x.impath for x in loaded["train"]] == [x.impath for x in ds.train_x[:3]]


def test_base_new_split_and_relabelling(data_root):
    base, _ = dataset(data_root, "DATASET.SUBSAMPLE_CLASSES", "base")
    new, _ = dataset(data_root, "DATASET.SUBSAMPLE_CLASSES", "new")

    assert base.classnames == ["dog", "car", "apple", "chair", "guitar"]
    assert new.classnames == ["bicycle", "tree", "house", "fish", "lamp"]
    assert new.num_classes == 5 and sorted({x.label for x in new.test}) == [0, 1, 2, 3, 4]
    assert all(new.lab2cname[x.label] == x.classname for x in new.test)
    assert len(base.test) == len(new.test) == 50


def test_odd_class_count_gives_base_the_extra_class(data_root):
    full, _ = dataset(data_root)
    seven = [x for x in full.train_x if x.label < 7]
    base, = subsample_classes(seven, subsample="base")
    new, = subsample_classes(seven, subsample="new")
    assert len({x.label for x in base}) == 4 and len({x.label for x in new}) == 3
    with pytest.raises(DatasetError, match="SUBSAMPLE_CLASSES"):
        subsample_classes(seven, subsample="half")
