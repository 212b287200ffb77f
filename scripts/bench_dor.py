"""Benchmark of DOR's costs on ViT-B/16 with random weights, on the CPU.

(a) Vocabulary scoring: text-encoding throughput with and without EOT truncation (on a sample
    of WordNet labels), then the full vocabulary scored twice through the on-disk feature cache
    (the first run encodes and fills the cache unless it is already filled; the second must not
    re-encode).
(b) Training step: CoOpDOR vs CoOp wall time per step at 50 base classes, batch 32 and 64
    outliers, steps interleaved so machine load affects both alike.

    python scripts/bench_dor.py [--sample 512] [--steps 5] [--cache-dir DIR] [--json OUT]

Weights are random (``MODEL.BACKBONE.TAG random``): the costs are those of the real
architecture, the features mean nothing.
"""
import argparse
import json
import logging
import os.path as osp
import statistics
import sys
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from clip_backbone.loader import load_clip  # noqa: E402
from clip_backbone.prompted import encode_labels, encode_texts  # noqa: E402
from clip_backbone.templates import fill  # noqa: E402
from dor.pool import FeatureCache, select_pool, vocabulary_features  # noqa: E402
from dor.vocabulary import load_vocabulary, open_wordnet  # noqa: E402
from toolbox import get_cfg_default  # noqa: E402
from trainers.config import extend_cfg  # noqa: E402
from trainers.coop import CoOp  # noqa: E402
from trainers.dor_variants import CoOpDOR  # noqa: E402

TEMPLATE = "a photo of a {}."


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def bench_scoring(loaded, vocab: str, vocabulary, sample: int, batch_size: int,
                  cache_dir: str) -> dict:
    """Throughput with and without truncation, batch by batch in turn, then cached scoring."""
    model = loaded.model
    stride = max(1, len(vocabulary.labels) // sample)
    texts = [fill(TEMPLATE, label) for label in vocabulary.labels[::stride][:sample]]
    texts.sort(key=len)
    encode_texts(model, texts[:batch_size], batch_size=batch_size)  # warm-up
    truncated = full = 0.0
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        truncated += timed(lambda: encode_texts(model, batch, batch_size, truncate=True))[1]
        full += timed(lambda: encode_texts(model, batch, batch_size, truncate=False))[1]

    cache = FeatureCache(cache_dir)
    key = FeatureCache.key(loaded.backbone, loaded.weights_id, TEMPLATE, vocabulary)
    already_cached = osp.isfile(cache.path(key))
    base = vocabulary.labels[1000:1050]

    def score_vocabulary():
        """What a DOR run does before training: vocabulary (WordNet parsed anew), features,
        base-class features, scores and the near pool."""
        open_wordnet.cache_clear()
        labels = load_vocabulary(vocab)
        features = vocabulary_features(model, labels, TEMPLATE, loaded.backbone,
                                       loaded.weights_id, cache, batch_size=512)
        base_features = encode_labels(model, base, TEMPLATE)
        return select_pool(labels, features, base_features, base, "near", 5000, 1)

    _, first = timed(score_vocabulary)
    _, second = timed(score_vocabulary)
    return {
        "sample_labels": len(texts),
        "batch_size": batch_size,
        "labels_per_s_truncated": len(texts) / truncated,
        "labels_per_s_full": len(texts) / full,
        "truncation_speedup": full / truncated,
        "vocabulary_labels": len(vocabulary.labels),
        "first_run_s": None if already_cached else first,
        "cached_run_s": second,
    }


class _Data(SimpleNamespace):
    """The few attributes of a DataManager a trainer reads when no data is loaded."""


def make_trainer(cls, cfg, classnames):
    """A trainer built on given class names, without a dataset on disk (benchmark only)."""
    def build_data_loader(self):
        self.dm = _Data(dataset=_Data(classnames=classnames, train_x=[]))
        self.num_classes, self.lab2cname = len(classnames), dict(enumerate(classnames))
        self.train_loader_x = self.val_loader = self.test_loader = None

    bench_cls = type(f"Bench{cls.__name__}", (cls,), {"build_data_loader": build_data_loader})
    return bench_cls(cfg)


def bench_steps(vocab: str, vocabulary, steps: int, cache_dir: str, output_dir: str) -> dict:
    cfg = extend_cfg(get_cfg_default())
    cfg.USE_CUDA = False
    cfg.OUTPUT_DIR = output_dir
    cfg.SEED = 1
    cfg.MODEL.BACKBONE.NAME = "ViT-B/16"
    cfg.MODEL.BACKBONE.TAG = "random"
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.002
    cfg.TRAINER.COOP.CTX_INIT = "a photo of a"
    cfg.TRAINER.COOP.PREC = "fp32"
    cfg.TRAINER.DOR.NUM_OUTLIERS = 64
    cfg.TRAINER.DOR.CACHE_DIR = cache_dir
    cfg.TRAINER.DOR.VOCAB = vocab
    cfg.TEST.NO_TEST = True

    classnames = vocabulary.labels[1000:1050]
    coop = make_trainer(CoOp, cfg, classnames)
    coopdor = make_trainer(CoOpDOR, cfg, classnames)
    coopdor.before_train()
    coopdor.epoch = 0
    coopdor.before_epoch()

    batch = {"img": torch.randn(32, 3, 224, 224), "label": torch.randint(0, 50, (32,))}
    times = {"CoOp": [], "CoOpDOR": []}
    for step in range(steps + 1):
        for name, trainer in (("CoOp", coop), ("CoOpDOR", coopdor)):
            trainer.batch_idx, trainer.num_batches = 0, 10
            trainer.set_model_mode("train")
            _, seconds = timed(lambda: trainer.forward_backward(batch))
            if step > 0:  # the first step is warm-up
                times[name].append(seconds)
    coopdor.close_writer()

    coop_s, dor_s = statistics.median(times["CoOp"]), statistics.median(times["CoOpDOR"])
    return {"classes": 50, "batch": 32, "outliers": 64, "steps": steps,
            "coop_step_s": coop_s, "coopdor_step_s": dor_s, "step_time_ratio": dor_s / coop_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=1024,
                        help="labels for the throughput test")
    parser.add_argument("--batch-size", type=int, default=128, help="texts per encoder batch")
    parser.add_argument("--vocab", default="wordnet", help="TRAINER.DOR.VOCAB to benchmark")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per trainer")
    parser.add_argument("--cache-dir", default="", help="feature cache (default: DOR's default)")
    parser.add_argument("--output-dir", default="output/bench_dor", help="where DOR writes files")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.manual_seed(0)

    loaded = load_clip("ViT-B/16", tag="random")
    loaded.model.float()
    vocabulary = load_vocabulary(args.vocab)

    figures = {"scoring": bench_scoring(loaded, args.vocab, vocabulary, args.sample,
                                        args.batch_size, args.cache_dir),
               "training_step": bench_steps(args.vocab, vocabulary, args.steps, args.cache_dir,
                                            args.output_dir),
               "torch_threads": torch.get_num_threads()}
    scoring, step = figures["scoring"], figures["training_step"]
    print(f"(a) text encoding, {scoring['sample_labels']} labels: "
          f"{scoring['labels_per_s_truncated']:.1f} labels/s truncated, "
          f"{scoring['labels_per_s_full']:.1f} labels/s full length -> "
          f"{scoring['truncation_speedup']:.2f}x (target >= 8x)")
    first = ("cache already filled by an earlier run" if scoring["first_run_s"] is None
             else f"{scoring['first_run_s']:.1f} s")
    print(f"    vocabulary of {scoring['vocabulary_labels']} labels: first run {first}, "
          f"cached run {scoring['cached_run_s']:.2f} s (target <= 5 s)")
    print(f"(b) training step, 50 classes, batch 32, 64 outliers: CoOp "
          f"{step['coop_step_s']:.2f} s, CoOpDOR {step['coopdor_step_s']:.2f} s -> ratio "
          f"{step['step_time_ratio']:.3f} (target <= 1.25)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
