"""Bad input to train.py: one clear message, a non-zero exit, and the output directory's
earlier files untouched.

Most cases run the command line in this process (``run_cli_in_process``, the same ``cli()``
that ``python train.py`` calls); those that depend on process start-up (environment read at
import, the interpreter's exit status) run ``python train.py`` itself.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from conftest import GENERATED, ROOT, run_cli_in_process, run_train, tiny_argv, trainer_config

# Files a previous run left in the output directory; no failing run may change them.
EARLIER_FILES = {"log.txt": "an earlier run's log\n", "config.yaml": "OUTPUT_DIR: earlier\n",
                 "notes.txt": "kept by the user\n"}


def run_cli(*argv, env=None):
    environment = dict(os.environ, **(env or {}))
    environment.pop("DOR_DEBUG", None)
    return subprocess.run([sys.executable, "train.py", *[str(a) for a in argv]], cwd=ROOT,
                          capture_output=True, text=True, env=environment, timeout=300)


def in_process(*argv):
    return run_cli_in_process(argv)


def base_args(root, out, trainer="CoOp", config=None):
    return ["--root", root, "--trainer", trainer, "--dataset-config-file", GENERATED,
            "--config-file", trainer_config(config or trainer), "--output-dir", out]


def dor_args(root, out, vocab, *opts):
    return [*base_args(root, out, "CoOpDOR"), "--seed", 1, "TRAINER.DOR.VOCAB", vocab,
            "TRAINER.DOR.WORDNET_DIR", osp.join(str(out), "no_wordnet"),
            "TRAINER.DOR.CACHE_DIR", osp.join(str(out), "..", "cache"), *opts]


def digest(folder) -> dict:
    """SHA-256 of every file under ``folder``, by relative path."""
    found = {}
    for parent, _, files in os.walk(folder):
        for name in files:
            path = osp.join(parent, name)
            with open(path, "rb") as f:
                found[osp.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


def assert_one_clear_error(result, *fragments, out=None):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-2000:]
    if out is not None:
        assert_earlier_files_unchanged(out)


def assert_earlier_files_unchanged(out):
    for name, text in EARLIER_FILES.items():
        with open(osp.join(out, name)) as f:
            assert f.read() == text, name


@pytest.fixture
def out(tmp_path):
    """An output directory holding an earlier run's files."""
    folder = tmp_path / "out"
    folder.mkdir()
    for name, text in EARLIER_FILES.items():
        (folder / name).write_text(text)
    return str(folder)


@pytest.fixture
def data_copy(data_root, tmp_path):
    """A private copy of the generated dataset that a test may damage."""
    root = tmp_path / "data"
    shutil.copytree(osp.join(data_root, "generated_shapes"), root / "generated_shapes",
                    ignore=shutil.ignore_patterns("split_fewshot"))
    return root


def vocab_file(tmp_path, *labels):
    path = tmp_path / "vocab.txt"
    path.write_text("".join(f"{label}\n" for label in labels))
    return path


# ----------------------------------------------------------------------------- names and values

def test_unknown_trainer(data_root, out):
    result = run_cli(*base_args(data_root, out, trainer="CoOpp", config="CoOp"))
    assert_one_clear_error(result, '"CoOpp" is not one of', 'did you mean "CoOp"', out=out)


def test_unknown_dataset(data_root, out):
    result = in_process(*base_args(data_root, out), "DATASET.NAME", "Caltech102")
    assert_one_clear_error(result, '"Caltech102" is not one of', "Caltech101", out=out)


def test_unknown_backbone(data_root, out):
    result = in_process(*base_args(data_root, out), "--backbone", "ViT-Q/7")
    assert_one_clear_error(result, 'Unknown CLIP backbone "ViT-Q/7"', "ViT-B/16", out=out)


def test_unknown_config_key(data_root, out):
    result = in_process(*base_args(data_root, out), "TRAINER.COOP.NCTX", "4")
    assert_one_clear_error(result, "Config error on the command line", "TRAINER.COOP.NCTX",
                           out=out)


def test_config_value_of_the_wrong_type(data_root, out):
    result = in_process(*base_args(data_root, out), "OPTIM.LR", "fast")
    assert_one_clear_error(result, "Config error on the command line", "Type mismatch",
                           "OPTIM.LR", out=out)


def test_clip_weights_unavailable_offline(data_root, out, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = run_cli(*base_args(data_root, out), "--backbone", "ViT-B/16",
                     env={"HOME": str(home), "HF_HUB_OFFLINE": "1",
                          "HF_HOME": str(home / "hf")})
    assert_one_clear_error(result, "ViT-B-16.pt", "MODEL.BACKBONE.PATH", out=out)


# ----------------------------------------------------------------------------- data

def test_missing_dataset_root(tmp_path, out):
    result = in_process(*base_args(str(tmp_path / "no_such_dir"), out),
                        "DATASET.NAME", "Caltech101")
    assert_one_clear_error(result, "DATASET.ROOT", "is not a directory", out=out)


def test_missing_split_file(tmp_path, out):
    (tmp_path / "oxford_pets").mkdir()
    result = in_process(*base_args(str(tmp_path), out), "DATASET.NAME", "OxfordPets")
    assert_one_clear_error(result, "split_zhou_OxfordPets.json", "is missing", out=out)


def test_malformed_split_file(data_copy, out):
    split = data_copy / "generated_shapes" / "split_zhou_GeneratedShapes.json"
    split.write_text('{"train": [["dog/000.png", 0, "dog"],')
    result = in_process(*base_args(str(data_copy), out))
    assert_one_clear_error(result, f'Split file "{split}" is not valid JSON', out=out)


def test_missing_image_is_named_unless_skipped(data_copy, out, tmp_path):
    missing = data_copy / "generated_shapes" / "images" / "dog" / "003.png"
    missing.unlink()
    result = in_process(*base_args(str(data_copy), out), "--seed", 1)
    assert_one_clear_error(result, f'Image "{missing}" is listed', "does not exist",
                           "DATASET.SKIP_BAD_IMAGES", out=out)

    skipped = tmp_path / "skipped"
    result = in_process(*base_args(str(data_copy), skipped), "--seed", 1,
                        "DATASET.SKIP_BAD_IMAGES", "True", "OPTIM.MAX_EPOCH", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Skipped 1 listed images that are missing or unreadable" in result.stdout
    with open(skipped / "results.json") as f:
        assert json.load(f)["provenance"]["skipped_images"] == 1


def test_unreadable_image_is_named_unless_skipped(data_copy, out, tmp_path):
    damaged = data_copy / "generated_shapes" / "images" / "dog" / "030.png"  # a test image
    damaged.write_bytes(b"not a png at all")
    result = in_process(*base_args(str(data_copy), out), "--seed", 1, "OPTIM.MAX_EPOCH", 1)
    assert_one_clear_error(result, f'Image "{damaged}" cannot be read',
                           "DATASET.SKIP_BAD_IMAGES", out=out)

    skipped = tmp_path / "skipped"
    result = in_process(*base_args(str(data_copy), skipped), "--seed", 1, "OPTIM.MAX_EPOCH", 1,
                        "DATASET.SKIP_BAD_IMAGES", "True")
    assert result.returncode == 0, result.stderr[-2000:]
    with open(skipped / "results.json") as f:
        results = json.load(f)
    assert results["provenance"]["skipped_images"] == 1
    assert results["num_samples"] == 99  # 10 classes x 10 test images, one skipped


def test_more_shots_than_images_warns_and_keeps_every_image(data_root, out):
    result = in_process(*base_args(data_root, out), "--seed", 1, "--no-train",
                        "DATASET.NUM_SHOTS", 32, "DATASET.SUBSAMPLE_CLASSES", "base")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "NUM_SHOTS 32 exceeds the training images of 10 class(es): dog (20)" in result.stdout
    assert "Each keeps all its images, as in Dassl" in result.stdout
    assert_earlier_files_unchanged(out)


# ----------------------------------------------------------------------------- DOR

def test_missing_wordnet_for_a_dor_run(data_root, out, tmp_path):
    result = in_process(*base_args(data_root, out, "CoOpDOR"),
                        "TRAINER.DOR.WORDNET_DIR", tmp_path / "no_wordnet")
    assert_one_clear_error(result, "apt-get install wordnet-base", "nltk.downloader wordnet",
                           out=out)


def test_empty_vocabulary_file(data_root, out, tmp_path):
    vocab = vocab_file(tmp_path)
    result = in_process(*dor_args(data_root, out, vocab))
    assert_one_clear_error(result, f'Label file "{vocab}" holds no label', out=out)


def test_vocabulary_of_base_class_names_only(data_root, out, tmp_path):
    vocab = vocab_file(tmp_path, "dog", "Car", "apple ", "chair", "guitar")
    result = in_process(*dor_args(data_root, out, vocab))
    assert_one_clear_error(result, "Every label of the vocabulary", "(5)",
                           "no outlier is left", out=out)


def test_pool_size_larger_than_the_vocabulary(data_root, out, tmp_path):
    vocab = vocab_file(tmp_path, "dog", "wolf", "fox", "truck", "pear", "violin", "owl")
    result = in_process(*dor_args(data_root, out, vocab, "TRAINER.DOR.POOL_SIZE", 50,
                                  "TRAINER.DOR.NUM_OUTLIERS", 4))
    assert_one_clear_error(result, "TRAINER.DOR.POOL_SIZE (50) exceeds the 6 labels",
                           "set POOL_SIZE to at most 6", out=out)


def test_more_outliers_than_the_pool(data_root, out, tmp_path):
    vocab = vocab_file(tmp_path, "wolf", "fox", "truck", "pear", "violin", "owl")
    result = in_process(*dor_args(data_root, out, vocab, "TRAINER.DOR.POOL_SIZE", 6,
                                  "TRAINER.DOR.NUM_OUTLIERS", 8))
    assert_one_clear_error(result, "TRAINER.DOR.NUM_OUTLIERS (8) exceeds POOL_SIZE (6)",
                           out=out)


# ----------------------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def coop_model_dir(data_root, tmp_path_factory):
    """A CoOp run (one epoch, 4 context tokens) whose checkpoint other runs try to load."""
    folder = tmp_path_factory.mktemp("coop_model")
    run_train(tiny_argv(data_root, "CoOp", folder, "OPTIM.MAX_EPOCH", 1,
                        "TRAINER.COOP.N_CTX", 4))
    return str(folder)


def test_eval_only_without_a_checkpoint(data_root, out, tmp_path):
    empty = tmp_path / "empty_model_dir"
    empty.mkdir()
    result = in_process(*base_args(data_root, out), "--eval-only", "--model-dir", empty)
    assert_one_clear_error(result, f'No model at "{empty}/prompt_learner/model-best.pth.tar"',
                           "has no checkpoint of prompt_learner", out=out)


def test_eval_only_with_a_missing_epoch_lists_the_saved_ones(data_root, out, coop_model_dir):
    result = in_process(*base_args(data_root, out), "--eval-only", "--model-dir", coop_model_dir,
                        "--load-epoch", 7, "TRAINER.COOP.N_CTX", 4)
    assert_one_clear_error(result, "model.pth.tar-7", "holds model.pth.tar-1",
                           "--load-epoch", out=out)


def test_eval_only_with_a_checkpoint_of_another_shape(data_root, out, coop_model_dir):
    result = in_process(*base_args(data_root, out), "--eval-only", "--model-dir", coop_model_dir,
                        "--load-epoch", 1, "TRAINER.COOP.N_CTX", 2)
    assert_one_clear_error(result, "(written by CoOp with backbone tiny-vit)",
                           "does not fit prompt_learner of CoOp with backbone tiny-vit",
                           "ctx: [4, 64] in the checkpoint, [2, 64] here", out=out)


def test_eval_only_with_another_trainers_checkpoint(data_root, out, coop_model_dir):
    result = in_process(*base_args(data_root, out, trainer="MaPLe"), "--eval-only", "--model-dir",
                        coop_model_dir, "--load-epoch", 1)
    assert_one_clear_error(result, "has no checkpoint of MultiModalPromptLearner",
                           "it holds checkpoints of prompt_learner", out=out)


# ----------------------------------------------------------------------------- finished runs

def test_a_finished_run_is_skipped_unless_forced(data_root, tmp_path):
    out = tmp_path / "run"
    argv = tiny_argv(data_root, "CoOp", out, "OPTIM.MAX_EPOCH", 1)
    first = run_cli(*argv)
    assert first.returncode == 0, first.stderr[-2000:]
    before = digest(out)

    again = run_cli(*argv)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f'Skipped: "{out}" already holds this finished run' in again.stderr
    assert "--force" in again.stderr
    assert digest(out) == before

    forced = in_process(*tiny_argv(data_root, "CoOp", out, "OPTIM.MAX_EPOCH", 1,
                                   flags=["--force"]))
    assert forced.returncode == 0, forced.stderr[-2000:]
    replaced = [p for p in os.listdir(out) if p.startswith("replaced-")]
    assert len(replaced) == 1
    assert digest(out / replaced[0]) == before  # the earlier run, moved aside whole
    with open(out / "results.json") as f, open(out / replaced[0] / "results.json") as g:
        assert json.load(f)["metrics"] == json.load(g)["metrics"]  # same seed, same numbers


def test_another_config_in_a_finished_run_folder_is_not_skipped(data_root, tmp_path):
    out = tmp_path / "run"
    run_train(tiny_argv(data_root, "CoOp", out, "OPTIM.MAX_EPOCH", 1))
    longer = in_process(*tiny_argv(data_root, "CoOp", out, "OPTIM.MAX_EPOCH", 2))
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert "Skipped" not in longer.stderr
    with open(out / "results.json") as f:
        assert json.load(f)["epoch"] == 2


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
    assert_one_clear_error(result, fragment, out=out)
