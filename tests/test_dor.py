"""Dynamic Outlier Regularization: vocabulary, pool, cache, sampling, loss and CoOpDOR runs."""
import os
import os.path as osp
import sys

import nltk
import pytest
import torch

import train
from conftest import read_results, run_train, tiny_argv
from datasets.generated import CLASSNAMES, draw_dataset
from dor import pool as pool_module
from dor import vocabulary as vocabulary_module
from clip_backbone.prompted import encode_labels
from dor.pool import FeatureCache, select_pool, vocabulary_features
from dor.sampler import OutlierSampler
from dor.vocabulary import (NLTKWordNet, Vocabulary, VocabularyError, WordNetDatabase,
                            comparison_key, load_vocabulary)
from toolbox import build_trainer
from wordnet_fixture import NOUN_SYNSETS, write_wordnet

TEMPLATE = "a photo of a {}."


@pytest.fixture(scope="module")
def wordnet_dir(tmp_path_factory):
    return write_wordnet(str(tmp_path_factory.mktemp("nltk_data")))


@pytest.fixture
def vocabulary(wordnet_dir):
    return load_vocabulary("wordnet", wordnet_dir)


def dor_argv(data_root, out, wordnet_dir, cache_dir, *opts, flags=(), **kwargs):
    return tiny_argv(data_root, "CoOpDOR", out, "TRAINER.DOR.WORDNET_DIR", wordnet_dir,
                     "TRAINER.DOR.CACHE_DIR", cache_dir, "TRAINER.DOR.POOL_SIZE", 8,
                     "TRAINER.DOR.NUM_OUTLIERS", 4, *opts, flags=flags, **kwargs)


# ----------------------------------------------------------------------------- vocabulary

def test_database_reader_and_nltk_agree_on_the_same_wordnet(wordnet_dir, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [osp.dirname(osp.dirname(wordnet_dir))])
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    database = WordNetDatabase(wordnet_dir)
    through_nltk = NLTKWordNet(WordNetCorpusReader(wordnet_dir, None))
    assert database.noun_labels() == through_nltk.noun_labels()
    assert database.noun_labels() == [lemmas[0] for lemmas in NOUN_SYNSETS]
    for name in ["dog", "dogs", "geese", "golden retriever", "Car", "bikes", "unicorn"]:
        assert database.noun_synonyms(name) == through_nltk.noun_synonyms(name), name


def test_labels_are_normalised_and_deduplicated(wordnet_dir, tmp_path):
    vocabulary = load_vocabulary("wordnet", wordnet_dir)
    assert vocabulary.labels.count("dog") == 1  # two synsets are named "dog"
    assert "Golden Retriever" in vocabulary.labels
    assert len(vocabulary.labels) == len(NOUN_SYNSETS) - 1

    path = tmp_path / "labels.txt"
    path.write_text("# a domain vocabulary\nred  fox\nRed Fox\n\nsea_lion\n  sea lion \nkelp\n")
    from_file = load_vocabulary(str(path), wordnet_dir)
    assert from_file.labels == ["red fox", "sea lion", "kelp"]
    assert from_file.sha256 != vocabulary.sha256


@pytest.mark.skipif(not osp.isfile("/usr/share/wordnet/data.noun"),
                    reason="Debian's wordnet-base is not installed")
def test_full_wordnet_database():
    database = WordNetDatabase("/usr/share/wordnet")
    labels = database.noun_labels()
    assert len(labels) == 82115 and labels[0] == "entity"
    assert {"domestic dog", "Canis familiaris"} <= database.noun_synonyms("dogs")
    assert len(load_vocabulary("wordnet", "/usr/share/wordnet").labels) == 67186


def test_missing_wordnet_names_both_ways_to_install(monkeypatch):
    vocabulary_module.open_wordnet.cache_clear()
    monkeypatch.setattr(vocabulary_module, "_nltk_wordnet", lambda: None)
    monkeypatch.setattr(vocabulary_module, "_database_dirs", lambda: [])
    with pytest.raises(VocabularyError) as info:
        load_vocabulary("wordnet")
    vocabulary_module.open_wordnet.cache_clear()
    assert "apt-get install wordnet-base" in str(info.value)
    assert "nltk.downloader wordnet" in str(info.value)
    with pytest.raises(VocabularyError, match="is not a file"):
        load_vocabulary("/no/such/labels.txt")


# ----------------------------------------------------------------------------- pool

def pool_for(vocabulary, clip_model, base, strategy, size=5, seed=1):
    features = encode_labels(clip_model, vocabulary.labels, TEMPLATE)
    base_features = encode_labels(clip_model, base, TEMPLATE)
    return select_pool(vocabulary, features, base_features, base, strategy, size, seed), features


def test_pool_excludes_base_names_and_their_synonyms(vocabulary, clip_model):
    base = ["dog", "car", "bikes"]
    pool, _ = pool_for(vocabulary, clip_model, base, "near", size=None)
    keys = {comparison_key(label) for label in pool.labels}
    forbidden = {"dog", "car", "domestic dog", "canis familiaris", "frump", "auto",
                 "automobile", "machine", "motorcar", "bicycle", "bike", "wheel", "cycle"}
    assert not keys & forbidden
    assert {"wolf", "truck", "cat"} <= keys
    assert pool.num_excluded == 4  # the labels "dog", "car", "frump" and "bicycle"


def test_near_keeps_the_highest_scores_and_far_the_lowest(vocabulary, clip_model):
    base = ["dog", "apple"]
    near, features = pool_for(vocabulary, clip_model, base, "near")
    far, _ = pool_for(vocabulary, clip_model, base, "far")
    everything, _ = pool_for(vocabulary, clip_model, base, "near", size=None)
    scores = dict(zip(everything.labels, everything.scores.tolist()))
    others = [s for label, s in scores.items() if label not in near.labels]
    assert min(near.scores.tolist()) >= max(others)
    far_others = [s for label, s in scores.items() if label not in far.labels]
    assert max(far.scores.tolist()) <= min(far_others)
    assert near.scores.tolist() == sorted(near.scores.tolist(), reverse=True)
    # Pool features are the zero-shot features of exactly those labels.
    index = [vocabulary.labels.index(label) for label in near.labels]
    assert torch.equal(near.features, features[index])


def test_pools_and_draws_are_seeded(vocabulary, clip_model):
    base = ["dog", "apple"]
    first, _ = pool_for(vocabulary, clip_model, base, "random", seed=3)
    again, _ = pool_for(vocabulary, clip_model, base, "random", seed=3)
    other, _ = pool_for(vocabulary, clip_model, base, "random", seed=4)
    assert first.labels == again.labels and first.labels != other.labels

    scores = torch.linspace(0.2, 0.9, 50)
    sampler = OutlierSampler(scores, 8, seed=1)
    assert torch.equal(sampler.draw(0), OutlierSampler(scores, 8, seed=1).draw(0))
    assert not torch.equal(sampler.draw(0), sampler.draw(1))
    assert not torch.equal(sampler.draw(0), OutlierSampler(scores, 8, seed=2).draw(0))
    assert not torch.equal(sampler.draw(2, 0), sampler.draw(2, 1))
    draw = sampler.draw(5)
    assert len(set(draw.tolist())) == 8 and draw.max() < 50


def test_similarity_sampling_prefers_high_scores():
    scores = torch.cat([torch.full((50,), 0.2), torch.full((50,), 0.9)])
    sampler = OutlierSampler(scores, 10, seed=0, sampling="similarity", temperature=0.05)
    drawn = torch.cat([sampler.draw(epoch) for epoch in range(20)])
    assert (drawn >= 50).float().mean() > 0.95
    with pytest.raises(ValueError, match="SAMPLING"):
        OutlierSampler(scores, 10, seed=0, sampling="greedy")


# ----------------------------------------------------------------------------- cache

def test_cache_hit_skips_encoding_and_corrupt_entries_are_rebuilt(vocabulary, clip_model,
                                                                  tmp_path, monkeypatch):
    calls = []
    real_encode = pool_module.encode_labels

    def counting_encode(*args, **kwargs):
        calls.append(len(args[1]))
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(pool_module, "encode_labels", counting_encode)
    cache = FeatureCache(str(tmp_path / "cache"))

    def features():
        return vocabulary_features(clip_model, vocabulary, TEMPLATE, "tiny-vit", "w0", cache)

    first = features()
    assert calls == [len(vocabulary.labels)]
    second = features()
    assert calls == [len(vocabulary.labels)]
    assert torch.allclose(first, second, atol=1e-3)

    other_template = vocabulary_features(clip_model, vocabulary, "a drawing of a {}.",
                                         "tiny-vit", "w0", cache)
    assert len(calls) == 2 and not torch.allclose(other_template, first)

    key = FeatureCache.key("tiny-vit", "w0", TEMPLATE, vocabulary)
    with open(cache.path(key), "wb") as f:
        f.write(b"not a checkpoint")
    rebuilt = features()
    assert len(calls) == 3 and torch.allclose(rebuilt, first, atol=1e-3)


def test_cache_entry_with_a_wrong_key_is_not_trusted(vocabulary, clip_model, tmp_path):
    cache = FeatureCache(str(tmp_path))
    key = FeatureCache.key("tiny-vit", "w0", TEMPLATE, vocabulary)
    cache.save(dict(key, template="something else"), torch.zeros(key["num_labels"], 64))
    os.replace(cache.path(dict(key, template="something else")), cache.path(key))
    assert cache.load(key) is None


# ----------------------------------------------------------------------------- regulariser

def build(data_root, out, wordnet_dir, cache_dir, *opts):
    argv = [str(a) for a in dor_argv(data_root, out, wordnet_dir, cache_dir, *opts)]
    trainer = build_trainer(train.setup_cfg(train.parse_args(argv)))
    stdout = sys.stdout
    trainer.before_train()
    sys.stdout = stdout
    trainer.epoch = 0
    trainer.before_epoch()
    return trainer


def test_loss_is_zero_at_the_template_initialisation_and_reaches_only_the_context(
        data_root, wordnet_dir, tmp_path):
    trainer = build(data_root, tmp_path / "run", wordnet_dir, tmp_path / "cache",
                    "TRAINER.COOP.CTX_INIT", "a photo of a")
    assert abs(trainer.outlier_loss().item()) < 1e-6

    ctx = trainer.model.prompt_learner.ctx
    with torch.no_grad():
        ctx.add_(0.05 * torch.randn_like(ctx))
    loss = trainer.outlier_loss()
    assert loss.item() > 1e-4
    loss.backward()
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    with_grad = [n for n, p in trainer.model.named_parameters() if p.grad is not None]
    assert with_grad == ["prompt_learner.ctx"]
    trainer.close_writer()


def test_coopdor_end_to_end_writes_results_and_outlier_files(data_root, wordnet_dir, tmp_path):
    out = tmp_path / "run"
    run_train(dor_argv(data_root, out, wordnet_dir, tmp_path / "cache"))

    results = read_results(out)
    assert results["provenance"]["trainer"] == "CoOpDOR"
    dor = results["provenance"]["dor"]
    assert dor["strategy"] == "near" and dor["pool_labels"] == 8 and dor["seed"] == 1

    pool_labels = (out / "dor" / "pool.tsv").read_text().splitlines()[1:]
    pool = [line.split("\t")[2] for line in pool_labels]
    draws = [(out / "dor" / f"outliers_epoch{e}.txt").read_text().split("\n")[:-1]
             for e in (1, 2, 3)]
    assert all(len(d) == 4 and set(d) <= set(pool) for d in draws)
    assert draws[0] != draws[1] or draws[1] != draws[2]

    log = (out / "log.txt").read_text()
    assert "loss_dor" in log and "loss_task" in log


def test_same_seed_gives_the_same_pool_and_draws(data_root, wordnet_dir, tmp_path):
    for name in ("a", "b"):
        run_train(dor_argv(data_root, tmp_path / name, wordnet_dir, tmp_path / "cache",
                           "OPTIM.MAX_EPOCH", 2))
    for fname in ("pool.tsv", "outliers_epoch1.txt", "outliers_epoch2.txt"):
        assert (tmp_path / "a" / "dor" / fname).read_text() == \
            (tmp_path / "b" / "dor" / fname).read_text()


def test_new_class_names_never_influence_the_pool(data_root, wordnet_dir, tmp_path):
    other_root = tmp_path / "other_data"
    draw_dataset(str(other_root / "generated_shapes"),
                 classnames=CLASSNAMES[:5] + ["wolf", "fox", "truck", "pear", "violin"])
    pools = {}
    for name, root in (("original", data_root), ("renamed", str(other_root))):
        out = tmp_path / name
        trainer = build(root, out, wordnet_dir, tmp_path / "cache", "OPTIM.MAX_EPOCH", 1)
        pools[name] = (trainer.outlier_pool.labels, trainer.outlier_pool.scores)
        trainer.close_writer()
    assert pools["original"][0] == pools["renamed"][0]
    assert torch.equal(pools["original"][1], pools["renamed"][1])

    oracle = build(str(other_root), tmp_path / "oracle", wordnet_dir, tmp_path / "cache",
                   "TRAINER.DOR.STRATEGY", "oracle")
    assert oracle.outlier_pool.labels == ["wolf", "fox", "truck", "pear", "violin"]
    oracle.close_writer()


def test_iteration_resampling_draws_per_batch(data_root, wordnet_dir, tmp_path):
    out = tmp_path / "iter"
    run_train(dor_argv(data_root, out, wordnet_dir, tmp_path / "cache",
                       "TRAINER.DOR.RESAMPLE", "iter", "OPTIM.MAX_EPOCH", 1))
    lines = (out / "dor" / "outliers_epoch1.txt").read_text().splitlines()
    iterations = [int(line.split("\t")[0]) for line in lines]
    assert iterations == [i for i in range(10) for _ in range(4)]
    first, second = ({line.split("\t")[1] for line in lines if line.startswith(f"{i}\t")}
                     for i in (0, 1))
    assert first != second


def test_eval_only_needs_no_vocabulary(data_root, wordnet_dir, tmp_path):
    out = tmp_path / "run"
    run_train(dor_argv(data_root, out, wordnet_dir, tmp_path / "cache", "OPTIM.MAX_EPOCH", 1))
    evaluated = tmp_path / "eval"
    run_train(dor_argv(data_root, evaluated, "/no/such/wordnet", tmp_path / "cache",
                       "OPTIM.MAX_EPOCH", 1, subsample="new",
                       flags=["--eval-only", "--model-dir", out, "--load-epoch", 1]))
    assert read_results(evaluated)["provenance"]["subsample_classes"] == "new"
    assert not (evaluated / "dor").exists()


def test_class_specific_contexts_are_refused(data_root, wordnet_dir, tmp_path):
    with pytest.raises(ValueError, match="CSC"):
        build(data_root, tmp_path / "csc", wordnet_dir, tmp_path / "cache",
              "TRAINER.COOP.CSC", "True")


def test_vocabulary_without_wordnet_excludes_exact_names_only(tmp_path):
    vocabulary = Vocabulary(["dog", "Domestic dog", "wolf"], "test", None)
    from dor.pool import excluded_keys
    assert excluded_keys(vocabulary, ["Dog"]) == {"dog"}
