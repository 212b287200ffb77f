"""`python -m datasets.prepare`: downloads fail cleanly offline; `check` names what is wrong."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from datasets.prepare import main
from test_datasets import build_eurosat, build_imagenet_a, build_oxford_pets, read_dataset

UNREACHABLE_PROXY = "http://127.0.0.1:9"  # nothing listens there: every request fails at once


def offline_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "all_proxy")}
    env.update({name: UNREACHABLE_PROXY for name in
                ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")})
    return env


def test_download_without_network_fails_with_one_clear_message(tmp_path):
    kept = tmp_path / "oxford_flowers" / "cat_to_name.json"
    kept.parent.mkdir()
    kept.write_text('{"1": "pink primrose"}')

    result = subprocess.run(
        [sys.executable, "-m", "datasets.prepare", "download", "--dataset", "OxfordFlowers",
         "--root", str(tmp_path)], cwd=ROOT, env=offline_env(), capture_output=True, text=True,
        timeout=300)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: could not download "), errors
    assert "split_zhou_OxfordFlowers.json" in errors[0] and "cannot reach Google Drive" in errors[0]
    assert "https://drive.google.com/file/d/1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT/view" in errors[0]
    assert "cat_to_name.json" not in errors[0] and kept.read_text() == '{"1": "pink primrose"}'
    assert sorted(os.listdir(kept.parent)) == ["cat_to_name.json"]  # no partial file left

    assert "102flowers.tgz" in result.stdout
    assert "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz" in result.stdout
    assert f"extract it in {kept.parent}, giving {kept.parent}/jpg/" in result.stdout


def test_download_of_a_variant_copies_imagenet_classnames(tmp_path, capsys):
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet" / "classnames.txt").write_text("n01440764 tench\n")

    assert main(["download", "--dataset", "ImageNetR", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "imagenet-rendition" / "classnames.txt").read_text() == "n01440764 tench\n"
    assert "imagenet-r.tar" in capsys.readouterr().out


def check(root, dataset: str, capsys):
    code = main(["check", "--dataset", dataset, "--root", str(root)])
    return code, capsys.readouterr().out


@pytest.fixture
def eurosat(tmp_path):
    """A miniature EuroSAT with all 10 classes and its split file."""
    build_eurosat(tmp_path)
    read_dataset(tmp_path, "eurosat")  # writes split_zhou_EuroSAT.json
    return tmp_path


def test_check_passes_a_complete_folder(eurosat, capsys):
    code, out = check(eurosat, "EuroSAT", capsys)
    assert code == 0, out
    assert "train: 50 images, 10 classes" in out and "test: 30 images, 10 classes" in out
    assert out.strip().endswith("EuroSAT: OK")


def test_check_reports_missing_images(eurosat, capsys):
    (eurosat / "eurosat" / "2750" / "Forest" / "Forest_003.jpg").unlink()
    code, out = check(eurosat, "EuroSAT", capsys)
    assert code == 1
    assert "1 of the 100 listed images are missing, e.g. 2750/Forest/Forest_003.jpg" in out


def test_check_reports_a_missing_split_file(eurosat, capsys):
    split = eurosat / "eurosat" / "split_zhou_EuroSAT.json"
    split.unlink()
    code, out = check(eurosat, "EuroSAT", capsys)
    assert code == 1
    assert (f'"{split}" is missing; `python -m datasets.prepare download --dataset EuroSAT '
            f"--root {eurosat}` fetches it") in out


def test_check_reports_an_unreadable_split_file(eurosat, capsys):
    (eurosat / "eurosat" / "split_zhou_EuroSAT.json").write_text("{not json")
    code, out = check(eurosat, "EuroSAT", capsys)
    assert code == 1 and "is not valid JSON" in out


def test_check_reports_a_class_count_mismatch(tmp_path, capsys):
    build_oxford_pets(tmp_path)  # 3 breeds instead of 37
    read_dataset(tmp_path, "oxford_pets")
    code, out = check(tmp_path, "OxfordPets", capsys)
    assert code == 1
    for split in ("train", "val", "test"):
        assert f"{split} has 3 classes, expected 37 (labels [3, 4, 5, 6, 7] are absent)" in out


def test_check_reports_name_clashes_and_images_in_two_splits(eurosat, capsys):
    path = eurosat / "eurosat" / "split_zhou_EuroSAT.json"
    split = json.loads(path.read_text())
    split["test"][0] = split["train"][0]
    split["val"][0][2] = "Woods"
    path.write_text(json.dumps(split))

    code, out = check(eurosat, "EuroSAT", capsys)
    assert code == 1
    first = split["train"][0][0]
    assert f"1 images are in more than one split, e.g. 2750/{first} (train/test)" in out
    assert f"label {split['val'][0][1]} has several class names: " in out and "'Woods'" in out
    assert 'class name "Woods" has several labels' not in out


def test_check_of_a_test_only_set_counts_its_classes(tmp_path, capsys):
    build_imagenet_a(tmp_path)  # 3 of ImageNet-A's 200 classes
    code, out = check(tmp_path, "ImageNetA", capsys)
    assert code == 1 and "test: 6 images, 3 classes" in out
    assert "test has 3 classes, expected 200" in out and "train" not in out


def test_check_of_a_missing_folder_and_an_unknown_dataset(tmp_path, capsys):
    code, out = check(tmp_path, "DescribableTextures", capsys)
    assert code == 1 and f'"{tmp_path}/dtd", which does not exist' in out

    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--dataset", "Textures", "--root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert 'unknown dataset "Textures"' in capsys.readouterr().err
