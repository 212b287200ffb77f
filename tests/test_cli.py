"""train.py reports bad input in one line and exits non-zero, without a traceback."""
import os
import subprocess
import sys

import pytest

from conftest import GENERATED, ROOT, trainer_config


def run_cli(*argv, env=None):
    environment = dict(os.environ, **(env or {}))
    environment.pop("DOR_DEBUG", None)
    return subprocess.run([sys.executable, "train.py", *[str(a) for a in argv]], cwd=ROOT,
                          capture_output=True, text=True, env=environment, timeout=300)


def base_args(root, out, trainer="CoOp"):
    return ["--root", root, "--trainer", trainer, "--dataset-config-file", GENERATED,
            "--config-file", trainer_config("CoOp"), "--output-dir", out]


def assert_one_clear_error(result, *fragments):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-2000:]


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "out")


def test_unknown_trainer(data_root, out):
    result = run_cli(*base_args(data_root, out, trainer="CoOpp"))
    assert_one_clear_error(result, '"CoOpp" is not one of', 'did you mean "CoOp"')


def test_unknown_dataset(data_root, out):
    result = run_cli(*base_args(data_root, out), "DATASET.NAME", "Caltech102")
    assert_one_clear_error(result, '"Caltech102" is not one of', "Caltech101")


def test_unknown_config_key(data_root, out):
    result = run_cli(*base_args(data_root, out), "TRAINER.COOP.NCTX", "4")
    assert_one_clear_error(result, "Config error on the command line", "TRAINER.COOP.NCTX")


def test_missing_dataset_root(tmp_path, out):
    result = run_cli(*base_args(str(tmp_path / "no_such_dir"), out), "DATASET.NAME", "Caltech101")
    assert_one_clear_error(result, "DATASET.ROOT", "is not a directory")


def test_missing_split_file(tmp_path, out):
    (tmp_path / "oxford_pets").mkdir()
    result = run_cli(*base_args(str(tmp_path), out), "DATASET.NAME", "OxfordPets")
    assert_one_clear_error(result, "split_zhou_OxfordPets.json")


def test_missing_wordnet_for_a_dor_run(data_root, out, tmp_path):
    result = run_cli("--root", data_root, "--trainer", "CoOpDOR", "--dataset-config-file",
                     GENERATED, "--config-file", trainer_config("CoOpDOR"), "--output-dir", out,
                     "TRAINER.DOR.WORDNET_DIR", tmp_path / "no_wordnet")
    assert_one_clear_error(result, "apt-get install wordnet-base", "nltk.downloader wordnet")


@pytest.mark.parametrize("value, fragment", [("bogus", "DOR_TOOLBOX must be one of"),
                                             ("dassl", "Dassl cannot be imported")])
def test_bad_toolbox_choice(data_root, out, value, fragment):
    if value == "dassl":
        try:
            import dassl  # noqa: F401
            pytest.skip("Dassl is installed here")
        except ImportError:
            pass
    result = run_cli(*base_args(data_root, out), env={"DOR_TOOLBOX": value})
    assert_one_clear_error(result, fragment)
