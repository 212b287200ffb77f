"""Every dataset reader on a miniature copy of its real on-disk layout.

Each builder below writes a few tiny images per class in the folder layout of CoOp's
DATASETS.md, plus either a split file in the published format or the raw annotation files the
reader generates the split from. The tests read each copy through its config file and check
class names, counts, few-shot sampling and the base/new split.
"""
import json
import math
import os.path as osp
import random
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

import train
from conftest import ROOT
from datasets.reader import CoOpDataset, DatasetError, load_fewshot
from test_data import reference_fewshot
from toolbox import DATASET_REGISTRY, build_dataset


@dataclass
class Layout:
    """What a miniature copy holds: class names by label and (train, val, test) sizes."""

    classnames: List[str]
    sizes: Tuple[int, Optional[int], int]


def write_images(folder, names) -> None:
    """Tiny solid-colour JPEGs (the readers only need files that open as images)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.new("RGB", (8, 8), (index * 40 % 256, 80, 160)).save(folder / name)


def numbered(count: int, prefix: str = "") -> List[str]:
    return [f"{prefix}{index:03d}.jpg" for index in range(count)]


def write_lines(path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# A per-class split of 10 images: round(5) train, round(2) val, 3 test.
TEN_SPLIT = (5, 2, 3)
# An 80/20 train/val split of 5 images: round(1) val, 4 train.
FIVE_TRAINVAL = (4, 1)
IMAGENET_CLASSES = [("n01440764", "tench"), ("n01443537", "goldfish"),
                    ("n01484850", "great white shark"), ("n01491361", "tiger shark"),
                    ("n01494475", "hammerhead shark")]


def write_imagenet_classnames(folder) -> None:
    write_lines(folder / "classnames.txt", [f"{wnid} {name}" for wnid, name in IMAGENET_CLASSES])


def build_caltech101(root) -> Layout:
    image_dir = root / "caltech-101" / "101_ObjectCategories"
    for folder in ["BACKGROUND_Google", "Faces_easy", "Faces", "Leopards", "Motorbikes",
                   "accordion", "airplanes"]:
        write_images(image_dir / folder, numbered(10))
    names = ["face", "leopard", "motorbike", "accordion", "airplane"]
    return Layout(names, tuple(n * 5 for n in TEN_SPLIT))


def build_oxford_pets(root) -> Layout:
    breeds = ["Abyssinian", "american_bulldog", "Bengal"]
    images = [f"{breed}_{k}" for breed in breeds for k in range(1, 8)]
    write_images(root / "oxford_pets" / "images", [name + ".jpg" for name in images])
    annotations = root / "oxford_pets" / "annotations"
    write_lines(annotations / "trainval.txt", [
        f"{breed}_{k} {label} 1 {label}" for label, breed in enumerate(breeds, 1)
        for k in range(1, 6)])
    write_lines(annotations / "test.txt", [
        f"{breed}_{k} {label} 1 {label}" for label, breed in enumerate(breeds, 1)
        for k in (6, 7)])
    return Layout(["abyssinian", "american_bulldog", "bengal"],
                  (FIVE_TRAINVAL[0] * 3, FIVE_TRAINVAL[1] * 3, 2 * 3))


def _car_annotations(names_and_classes):
    annotations = np.zeros((1, len(names_and_classes)),
                           dtype=[("bbox_x1", "O"), ("class", "O"), ("fname", "O")])
    for index, (fname, label) in enumerate(names_and_classes):
        annotations[0, index] = (np.array([[1]]), np.array([[label]], dtype=np.uint8), fname)
    return {"annotations": annotations}


def build_stanford_cars(root) -> Layout:
    folder = root / "stanford_cars"
    models = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Tesla Model S Sedan 2012"]
    train = [(f"{index:05d}.jpg", index % 3 + 1) for index in range(15)]
    test = [(f"{index:05d}.jpg", index % 3 + 1) for index in range(6)]
    write_images(folder / "cars_train", [name for name, _ in train])
    write_images(folder / "cars_test", [name for name, _ in test])
    (folder / "devkit").mkdir()
    class_names = np.empty((1, len(models)), dtype=object)
    class_names[0, :] = models
    savemat(folder / "devkit" / "cars_meta.mat", {"class_names": class_names})
    savemat(folder / "devkit" / "cars_train_annos.mat", _car_annotations(train))
    savemat(folder / "cars_test_annos_withlabels.mat", _car_annotations(test))
    return Layout(["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Tesla Model S Sedan"],
                  (FIVE_TRAINVAL[0] * 3, FIVE_TRAINVAL[1] * 3, 2 * 3))


def build_oxford_flowers(root) -> Layout:
    folder = root / "oxford_flowers"
    labels = [2, 1, 3] * 10  # image_00001 is class 2: classes are split in first-seen order
    write_images(folder / "jpg", [f"image_{k:05d}.jpg" for k in range(1, len(labels) + 1)])
    savemat(folder / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    (folder / "cat_to_name.json").write_text(json.dumps(
        {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells"}))
    return Layout(["pink primrose", "hard-leaved pocket orchid", "canterbury bells"],
                  tuple(n * 3 for n in TEN_SPLIT))


def write_published_split(path, classes, sizes) -> None:
    """A split JSON as CoOp publishes it: [relative path, label, class name] per image."""
    split, index = {}, 0
    for key, count in zip(("train", "val", "test"), sizes):
        split[key] = []
        for label, (folder, name) in enumerate(classes):
            split[key] += [[f"{folder}/{k:03d}.jpg", label, name]
                           for k in range(index, index + count)]
        index += count
    path.write_text(json.dumps(split, indent=4))


def build_food101(root) -> Layout:
    folder = root / "food-101"
    classes = [("apple_pie", "apple_pie"), ("baby_back_ribs", "baby_back_ribs"),
               ("beignets", "beignets")]
    for name, _ in classes:
        write_images(folder / "images" / name, numbered(10))
    write_published_split(folder / "split_zhou_Food101.json", classes, TEN_SPLIT)
    return Layout([name for _, name in classes], tuple(n * 3 for n in TEN_SPLIT))


def build_fgvc_aircraft(root) -> Layout:
    folder = root / "fgvc_aircraft"
    variants = ["707-320", "A300B4", "Cessna 172"]
    write_lines(folder / "variants.txt", variants)
    image_id = 1000000
    for split, per_class in (("train", 4), ("val", 2), ("test", 3)):
        lines = []
        for variant in variants:
            for _ in range(per_class):
                lines.append(f"{image_id} {variant}")
                image_id += 1
        write_lines(folder / f"images_variant_{split}.txt", lines)
        write_images(folder / "images", [line.split(" ")[0] + ".jpg" for line in lines])
    return Layout(variants, (4 * 3, 2 * 3, 3 * 3))


def build_sun397(root) -> Layout:
    folder = root / "sun397"
    categories = ["a/abbey", "a/apartment_building/outdoor", "b/bakery/shop"]
    write_lines(folder / "ClassName.txt", ["/" + c for c in categories])
    for category in categories:
        write_images(folder / "SUN397" / category, numbered(7, "sun_"))
    write_lines(folder / "Training_01.txt",
                [f"/{c}/sun_{k:03d}.jpg" for c in categories for k in range(5)])
    write_lines(folder / "Testing_01.txt",
                [f"/{c}/sun_{k:03d}.jpg" for c in categories for k in (5, 6)])
    return Layout(["abbey", "outdoor apartment_building", "shop bakery"],
                  (FIVE_TRAINVAL[0] * 3, FIVE_TRAINVAL[1] * 3, 2 * 3))


def build_dtd(root) -> Layout:
    folder = root / "dtd"
    classes = [(name, name) for name in ("banded", "blotchy", "braided", "bubbly")]
    for name, _ in classes:
        write_images(folder / "images" / name, numbered(10))
    write_published_split(folder / "split_zhou_DescribableTextures.json", classes, TEN_SPLIT)
    return Layout([name for _, name in classes], tuple(n * 4 for n in TEN_SPLIT))


EUROSAT_NAMES = {
    "AnnualCrop": "Annual Crop Land", "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land", "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings", "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land", "Residential": "Residential Buildings",
    "River": "River", "SeaLake": "Sea or Lake",
}


def build_eurosat(root) -> Layout:
    for folder in EUROSAT_NAMES:
        write_images(root / "eurosat" / "2750" / folder, numbered(10, folder + "_"))
    return Layout([EUROSAT_NAMES[f] for f in sorted(EUROSAT_NAMES)],
                  tuple(n * 10 for n in TEN_SPLIT))


def build_ucf101(root) -> Layout:
    folder = root / "ucf101"
    # HandstandPushups' videos are spelled HandStandPushups in the official lists.
    actions = [("ApplyEyeMakeup", "ApplyEyeMakeup"), ("YoYo", "YoYo"),
               ("HandstandPushups", "HandStandPushups")]
    lists = folder / "ucfTrainTestlist"
    write_lines(lists / "classInd.txt", [f"{k} {a}" for k, (a, _) in enumerate(actions, 1)])
    write_lines(lists / "trainlist01.txt", [
        f"{a}/v_{v}_g{g:02d}_c01.avi {k}" for k, (a, v) in enumerate(actions, 1)
        for g in range(8, 13)])
    write_lines(lists / "testlist01.txt", [
        f"{a}/v_{v}_g{g:02d}_c01.avi" for a, v in actions for g in (1, 2)])
    words = ["Apply_Eye_Makeup", "Yo_Yo", "Handstand_Pushups"]
    for (_, video), word in zip(actions, words):
        write_images(folder / "UCF-101-midframes" / word,
                     [f"v_{video}_g{g:02d}_c01.jpg" for g in (1, 2, 8, 9, 10, 11, 12)])
    return Layout(words, (FIVE_TRAINVAL[0] * 3, FIVE_TRAINVAL[1] * 3, 2 * 3))


def build_imagenet(root) -> Layout:
    folder = root / "imagenet"
    write_imagenet_classnames(folder)
    for wnid, _ in IMAGENET_CLASSES[:4]:
        write_images(folder / "images" / "train" / wnid, numbered(4, wnid + "_"))
        write_images(folder / "images" / "val" / wnid, numbered(2, "val_"))
    return Layout([name for _, name in IMAGENET_CLASSES[:4]], (4 * 4, 2 * 4, 2 * 4))


def build_imagenetv2(root) -> Layout:
    folder = root / "imagenetv2"
    write_imagenet_classnames(folder)
    for label in range(len(IMAGENET_CLASSES)):
        write_images(folder / "imagenetv2-matched-frequency-format-val" / str(label),
                     numbered(2, "v2_"))
    return Layout([name for _, name in IMAGENET_CLASSES], (10, None, 10))


def build_imagenet_sketch(root) -> Layout:
    folder = root / "imagenet-sketch"
    write_imagenet_classnames(folder)
    for wnid, _ in IMAGENET_CLASSES:
        write_images(folder / "images" / wnid, numbered(3, "sketch_"))
    return Layout([name for _, name in IMAGENET_CLASSES], (15, None, 15))


def _imagenet_subset(folder, image_folder: str) -> Layout:
    """ImageNet-A/R: a subset of the classes, a README beside the class folders."""
    write_imagenet_classnames(folder)
    subset = [IMAGENET_CLASSES[k] for k in (1, 3, 4)]
    for wnid, _ in subset:
        write_images(folder / image_folder / wnid, numbered(2))
    (folder / image_folder / "README.txt").write_text("not a class\n")
    return Layout([name for _, name in subset], (6, None, 6))


def build_imagenet_a(root) -> Layout:
    return _imagenet_subset(root / "imagenet-adversarial", "imagenet-a")


def build_imagenet_r(root) -> Layout:
    return _imagenet_subset(root / "imagenet-rendition", "imagenet-r")


BUILDERS = {
    "imagenet": build_imagenet, "caltech101": build_caltech101,
    "oxford_pets": build_oxford_pets, "stanford_cars": build_stanford_cars,
    "oxford_flowers": build_oxford_flowers, "food101": build_food101,
    "fgvc_aircraft": build_fgvc_aircraft, "sun397": build_sun397, "dtd": build_dtd,
    "eurosat": build_eurosat, "ucf101": build_ucf101, "imagenetv2": build_imagenetv2,
    "imagenet_sketch": build_imagenet_sketch, "imagenet_a": build_imagenet_a,
    "imagenet_r": build_imagenet_r,
}
TEST_ONLY = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
TRAINABLE = [name for name in BUILDERS if name not in TEST_ONLY]


def config_path(config: str) -> str:
    return osp.join(ROOT, "configs", "datasets", f"{config}.yaml")


def read_dataset(root, config: str, shots: int = -1, subsample: str = "all", seed: int = 1):
    """The dataset as train.py builds it: its config file, seeded, then ``build_dataset``."""
    args = train.parse_args(["--root", str(root), "--dataset-config-file", config_path(config),
                             "--seed", str(seed), "DATASET.NUM_SHOTS", str(shots),
                             "DATASET.SUBSAMPLE_CLASSES", subsample])
    cfg = train.setup_cfg(args)
    random.seed(cfg.SEED)
    return build_dataset(cfg)


def triples(items) -> list:
    return [(item.impath, item.label, item.classname) for item in items]


def labels_per_class(items) -> dict:
    counts = {}
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    return counts


def test_every_registered_reader_has_a_config_and_a_miniature():
    import datasets  # noqa: F401  (registers the readers)

    readers = {name for name in DATASET_REGISTRY.registered_names()
               if issubclass(DATASET_REGISTRY.get(name), CoOpDataset)}
    configured = set()
    for config in BUILDERS:
        with open(config_path(config)) as f:
            assert f.read().startswith("DATASET:\n  NAME: ")
        configured.add(train.setup_cfg(train.parse_args(
            ["--dataset-config-file", config_path(config)])).DATASET.NAME)
    assert readers - {"GeneratedShapes", "DemoWorld"} == configured  # those two draw themselves


@pytest.mark.parametrize("config", list(BUILDERS))
def test_reader_lists_classes_and_splits(config, tmp_path):
    layout = BUILDERS[config](tmp_path)
    dataset = read_dataset(tmp_path, config)
    train_size, val_size, test_size = layout.sizes

    assert dataset.classnames == layout.classnames
    assert dataset.num_classes == len(layout.classnames)
    assert (len(dataset.train_x), len(dataset.test)) == (train_size, test_size)
    if val_size is None:
        assert dataset.val is None and triples(dataset.train_x) == triples(dataset.test)
    else:
        assert len(dataset.val) == val_size
    for items in (dataset.train_x, dataset.val or [], dataset.test):
        assert all(dataset.lab2cname[item.label] == item.classname for item in items)
        assert all(osp.isfile(item.impath) for item in items)

    again = read_dataset(tmp_path, config)  # from the split file the first read saved, if any
    assert triples(again.train_x) == triples(dataset.train_x)
    assert triples(again.test) == triples(dataset.test)


@pytest.mark.parametrize("config", TRAINABLE)
def test_fewshot_sampling_and_base_new_split(config, tmp_path):
    layout = BUILDERS[config](tmp_path)
    full = read_dataset(tmp_path, config)  # writes the split file, so no draw happens below
    n_classes = len(layout.classnames)

    fewshot = read_dataset(tmp_path, config, shots=2, seed=3)
    assert labels_per_class(fewshot.train_x) == {label: 2 for label in range(n_classes)}
    assert [x.impath for x in fewshot.train_x] == reference_fewshot(full.train_x, 2, 3)
    assert triples(fewshot.test) == triples(full.test)

    base = read_dataset(tmp_path, config, shots=2, seed=3, subsample="base")
    new = read_dataset(tmp_path, config, shots=2, seed=3, subsample="new")
    n_base = math.ceil(n_classes / 2)
    assert base.classnames == layout.classnames[:n_base]
    assert new.classnames == layout.classnames[n_base:]
    assert sorted({x.label for x in new.test}) == list(range(n_classes - n_base))
    assert len(base.test) + len(new.test) == len(full.test)
    assert [x.impath for x in base.train_x] == [x.impath for x in fewshot.train_x
                                                if x.label < n_base]


@pytest.mark.parametrize("config", TEST_ONLY)
def test_test_only_sets_ignore_shots_and_class_subsampling(config, tmp_path):
    layout = BUILDERS[config](tmp_path)
    dataset = read_dataset(tmp_path, config, shots=1, subsample="new")

    assert dataset.classnames == layout.classnames
    assert len(dataset.test) == layout.sizes[2] and dataset.val is None
    assert triples(dataset.train_x) == triples(dataset.test)
    assert not list(tmp_path.rglob("split_fewshot"))


def test_imagenet_tests_on_val_and_caches_only_the_train_shots(tmp_path):
    build_imagenet(tmp_path)
    dataset = read_dataset(tmp_path, "imagenet", shots=2, seed=1, subsample="base")

    assert dataset.val is dataset.test
    assert all("/images/val/" in x.impath for x in dataset.test)
    assert dataset.classnames == ["tench", "goldfish"]
    cache = load_fewshot(str(tmp_path / "imagenet" / "split_fewshot" / "shot_2-seed_1.pkl"),
                         str(tmp_path / "imagenet"))
    assert set(cache) == {"train"} and len(cache["train"]) == 2 * 4

    lists = tmp_path / "imagenet" / "preprocessed.pkl"
    assert b"dassl.data.datasets.base_dataset" in lists.read_bytes()
    assert set(load_fewshot(str(lists), str(tmp_path / "imagenet"))) == {"train", "test"}


def test_generated_split_file_has_the_published_format(tmp_path):
    build_stanford_cars(tmp_path)
    read_dataset(tmp_path, "stanford_cars")

    with open(tmp_path / "stanford_cars" / "split_zhou_StanfordCars.json") as f:
        split = json.load(f)
    assert set(split) == {"train", "val", "test"}
    assert split["test"][0] == ["cars_test/00000.jpg", 0, "2000 AM General Hummer SUV"]


def test_missing_release_file_points_to_the_download_command(tmp_path):
    (tmp_path / "sun397").mkdir()
    with pytest.raises(DatasetError) as error:
        read_dataset(tmp_path, "sun397")
    message = str(error.value)
    assert "split_zhou_SUN397.json" in message and "ClassName.txt" in message
    assert "`python -m datasets.prepare download --dataset SUN397 --root <DATA>`" in message


def test_missing_image_points_to_the_check_command(tmp_path):
    build_dtd(tmp_path)
    (tmp_path / "dtd" / "images" / "bubbly" / "007.jpg").unlink()
    with pytest.raises(DatasetError) as error:
        read_dataset(tmp_path, "dtd")
    message = str(error.value)
    assert "bubbly/007.jpg" in message
    assert f"python -m datasets.prepare check --dataset DescribableTextures --root {tmp_path}" \
        in message


def test_imagenet_folder_without_a_class_name_is_reported(tmp_path):
    build_imagenet_sketch(tmp_path)
    write_images(tmp_path / "imagenet-sketch" / "images" / "n99999999", numbered(1))
    with pytest.raises(DatasetError, match='"n99999999" .* has no line in classnames.txt'):
        read_dataset(tmp_path, "imagenet_sketch")
