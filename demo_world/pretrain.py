"""Contrastive pretraining of the tiny CLIP ``demo-clip`` on the demo world, cached on disk.

    python -m demo_world.pretrain [--cache-dir DIR] [--steps N]

prints the checkpoint's path (an open_clip state dict that ``MODEL.BACKBONE.NAME demo-clip``
with ``MODEL.BACKBONE.PATH`` loads) after building it, or at once when the cache holds it.

The cache folder is named by a hash of everything that decides the weights: the source of
``world.py``, the world spec, the model config (``clip_backbone/model_configs/demo-clip.json``)
and the training settings. Changing any of them trains a new model in a new folder. Training
writes a resumable checkpoint every ``checkpoint_every`` steps; each step's batch is a pure
function of (seed, step), so a resumed run ends with the same weights as an uninterrupted one.

Determinism: initialisation and data come from seeded generators, deterministic algorithms
are required and the thread count is fixed (``threads``), so two cold runs on the same machine
and library versions write byte-identical checkpoints. Other CPUs or BLAS builds may round
differently; the weights would then differ slightly, which the hash makes visible.
"""
import argparse
import hashlib
import json
import logging
import math
import os
import os.path as osp
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from clip_backbone.loader import file_sha256
from clip_backbone.prompted import encode_labels
from runtime.files import atomic_write

from . import world

logger = logging.getLogger(__name__)

MODEL_NAME = "demo-clip"
CHECKPOINT_NAME = "demo-clip.pt"
DIAGNOSTICS_NAME = "diagnostics.json"
PROGRESS_NAME = "progress.pt"
FORMAT_VERSION = 1
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's, as in the dataset configs
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
ZEROSHOT_TEMPLATE = "a photo of a {}."
EVAL_IMAGES_PER_KIND = 10


@dataclass(frozen=True)
class PretrainConfig:
    """Training settings; all of them are part of the cache key.

    ``init_logit_scale`` is the starting inverse temperature. CLIP starts at 1/0.07 and ends
    near its clamp, 100; this model starts at 100, because a low temperature from the first
    step keeps the text features in a narrow cone, as real CLIP's are: after 400 steps the
    class prompts' mean pairwise cosine was 0.86 from 100 and 0.11 from 1/0.07.
    ``threads`` is fixed because the rounding of CPU kernels depends on the thread count.
    """

    steps: int = 1200
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 100
    pool_size: int = 20000
    seed: int = 0
    init_logit_scale: float = 100.0
    checkpoint_every: int = 250
    threads: int = 2


DEFAULT_CONFIG = PretrainConfig()


def default_cache_dir() -> str:
    """``$DEMO_WORLD_CACHE``, else ``~/.cache/dor_clip/demo_world``."""
    return os.environ.get("DEMO_WORLD_CACHE") or osp.expanduser("~/.cache/dor_clip/demo_world")


def model_config(name: str = MODEL_NAME) -> dict:
    """The registered open_clip config of the demo model (``clip_backbone.loader`` registers
    the project's model configs when it is imported)."""
    import open_clip

    config = open_clip.get_model_config(name)
    if config is None:
        raise ValueError(f'No open_clip model config named "{name}"')
    return config


def cache_key(spec: world.WorldSpec, model_cfg: dict, config: PretrainConfig) -> str:
    """Hash of what decides the weights: world source, world spec, model config, settings."""
    with open(world.__file__, "rb") as f:
        world_source = hashlib.sha256(f.read()).hexdigest()
    settings = dict(config.__dict__)
    settings.pop("checkpoint_every")  # when progress is saved does not change the result
    payload = json.dumps(dict(version=FORMAT_VERSION, world=world_source, spec=spec.as_dict(),
                              model=model_cfg, settings=settings), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------- data


def _to_tensor(images: Sequence) -> torch.Tensor:
    """uint8 [n, 3, 32, 32] from PIL images."""
    array = np.stack([np.asarray(image, dtype=np.uint8) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images to CLIP's normalised float input, as the downstream pipeline feeds them."""
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def draw_pool(size: int, seed: int, spec: world.WorldSpec,
              kinds: Sequence[Tuple[str, str]] = world.SEEN
              ) -> Tuple[List[world.WorldObject], torch.Tensor]:
    """``size`` objects of the given kinds and their pictures (uint8), from one seed."""
    rng = random.Random(f"pool-{seed}")
    objects = [world.random_object(rng, kinds) for _ in range(size)]
    pixels = _to_tensor([world.draw(rng, obj, spec) for obj in objects])
    return objects, pixels


def batch_at(step: int, config: PretrainConfig, objects: Sequence[world.WorldObject],
             spec: world.WorldSpec) -> Tuple[torch.Tensor, List[str]]:
    """Pool indices and captions of step ``step``: a pure function of (seed, step)."""
    rng = random.Random(f"batch-{config.seed}-{step}")
    indices = rng.sample(range(len(objects)), config.batch_size)
    captions = [world.caption(rng, objects[i], spec) for i in indices]
    return torch.tensor(indices), captions


# ---------------------------------------------------------------------- model


def build_model(model_cfg: dict, config: PretrainConfig):
    """The demo CLIP with weights fixed by ``config.seed`` (not by the global generator)."""
    from open_clip.model import CLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = CLIP(**model_cfg, init_logit_scale=math.log(config.init_logit_scale))
    return model


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over the batch: image i and caption i are the positive pair."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * image_features @ text_features.t()
    targets = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def _optimizer(model, config: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW; gains, biases, embeddings and the logit scale are not decayed, as in CLIP."""
    decay, keep = [], []
    for name, param in model.named_parameters():
        no_decay = (param.ndim < 2 or "embedding" in name or "logit_scale" in name
                    or name.endswith("class_embedding"))
        (keep if no_decay else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": keep, "weight_decay": 0.0}],
                             lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


def _learning_rate(step: int, config: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------- diagnostics


def mean_pairwise_cosine(features: torch.Tensor) -> float:
    """Mean cosine over distinct pairs of rows: 1 − the text dispersion of ``calibration``."""
    from calibration.dispersion import mean_pairwise_cosine_distance

    return 1.0 - mean_pairwise_cosine_distance(features)


@torch.no_grad()
def diagnose(model, spec: world.WorldSpec, seed: int) -> Dict[str, float]:
    """Zero-shot accuracy over all kinds (split into seen and held-out kinds), the mean
    pairwise cosine of the class prompts' features, the image–text gap and the logit scale."""
    model.eval()
    kinds = world.all_kinds()
    text = encode_labels(model, [world.kind_name(*kind) for kind in kinds], ZEROSHOT_TEMPLATE)

    rng = random.Random(f"diagnostics-{seed}")
    labels, images = [], []
    for label, (colour, shape) in enumerate(kinds):
        for _ in range(EVAL_IMAGES_PER_KIND):
            images.append(world.draw(rng, world.object_of_kind(rng, colour, shape), spec))
            labels.append(label)
    image = F.normalize(model.encode_image(normalise(_to_tensor(images))).float(), dim=-1)
    predictions = (image @ text.t()).argmax(dim=-1)
    correct = (predictions == torch.tensor(labels)).float()
    held_out = torch.tensor([world.is_held_out(*kinds[label]) for label in labels])

    positive = (image * text[torch.tensor(labels)]).sum(-1)
    return {
        "zeroshot_accuracy_seen": 100.0 * float(correct[~held_out].mean()),
        "zeroshot_accuracy_held_out": 100.0 * float(correct[held_out].mean()),
        "num_kinds": len(kinds),
        "num_held_out_kinds": len(world.HELD_OUT),
        "text_mean_pairwise_cosine": mean_pairwise_cosine(text),
        "image_mean_pairwise_cosine": mean_pairwise_cosine(image),
        "image_text_cosine_matched": float(positive.mean()),
        "logit_scale": float(model.logit_scale.exp()),
    }


# ---------------------------------------------------------------------- training


@dataclass
class Pretrained:
    """A cached pretraining result: the checkpoint, its hash and the diagnostics."""

    path: str
    key: str
    sha256: str
    diagnostics: Dict[str, float]
    reused: bool


def _read_cached(folder: str, key: str) -> Optional[Pretrained]:
    checkpoint = osp.join(folder, CHECKPOINT_NAME)
    diagnostics = osp.join(folder, DIAGNOSTICS_NAME)
    if not (osp.isfile(checkpoint) and osp.isfile(diagnostics)):
        return None
    try:
        with open(diagnostics) as f:
            record = json.load(f)
        return Pretrained(checkpoint, key, record["sha256"], record["diagnostics"], True)
    except (OSError, ValueError, KeyError) as error:
        logger.warning("Ignoring the unreadable %s (%s); training again", diagnostics, error)
        return None


def pretrain(cache_dir: Optional[str] = None, spec: world.WorldSpec = world.DEFAULT_SPEC,
             config: PretrainConfig = DEFAULT_CONFIG, model_name: str = MODEL_NAME,
             model_cfg: Optional[dict] = None) -> Pretrained:
    """The demo CLIP for (world, model, settings): read from the cache, else trained there.

    An interrupted training resumes from its last progress checkpoint.
    """
    model_cfg = model_cfg if model_cfg is not None else model_config(model_name)
    if config.steps < 1 or config.batch_size < 2 or config.pool_size < config.batch_size:
        raise ValueError("Pretraining needs steps ≥ 1, batch_size ≥ 2 and a pool at least "
                         f"one batch large; got {config}")
    key = cache_key(spec, model_cfg, config)
    folder = osp.join(osp.abspath(osp.expanduser(cache_dir or default_cache_dir())), key)
    cached = _read_cached(folder, key)
    if cached is not None:
        logger.info("Reusing the pretrained demo CLIP in %s", folder)
        return cached

    os.makedirs(folder, exist_ok=True)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(folder, key, spec, config, model_cfg)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(folder: str, key: str, spec: world.WorldSpec, config: PretrainConfig,
           model_cfg: dict) -> Pretrained:
    from clip_backbone.prompted import PromptedTextEncoder
    from clip_backbone.tokenizer import tokenize

    started = time.time()
    model = build_model(model_cfg, config)
    # The project's text path, cut after the longest caption's end token: with causal
    # attention the features are the same as at full length, at a fraction of the cost.
    text_encoder = PromptedTextEncoder(model)
    optimizer = _optimizer(model, config)
    first_step = 0
    progress = osp.join(folder, PROGRESS_NAME)
    if osp.isfile(progress):
        state = torch.load(progress, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first_step = int(state["step"])
        logger.info("Resuming demo-world pretraining at step %d", first_step)

    logger.info("Drawing %d pretraining images", config.pool_size)
    objects, pixels = draw_pool(config.pool_size, config.seed, spec)

    model.train()
    for step in range(first_step, config.steps):
        indices, captions = batch_at(step, config, objects, spec)
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, config)
        image_features = model.encode_image(normalise(pixels[indices]))
        tokens = tokenize(captions)
        text_features = text_encoder(model.token_embedding(tokens), tokens)
        loss = contrastive_loss(image_features, text_features, model.logit_scale)

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

        done = step + 1
        if done % 50 == 0 or done == config.steps:
            logger.info("pretrain step %d/%d  loss %.4f  logit scale %.1f  (%.0f s)", done,
                        config.steps, loss.item(), model.logit_scale.exp().item(),
                        time.time() - started)
        if done % config.checkpoint_every == 0 and done < config.steps:
            with atomic_write(progress) as staging:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "step": done}, staging)

    diagnostics = diagnose(model, spec, config.seed)
    checkpoint = osp.join(folder, CHECKPOINT_NAME)
    with atomic_write(checkpoint) as staging:
        torch.save(model.state_dict(), staging)
    sha256 = file_sha256(checkpoint)
    record = dict(sha256=sha256, diagnostics=diagnostics, spec=spec.as_dict(),
                  settings=asdict(config), model=model_cfg, seconds=time.time() - started)
    with atomic_write(osp.join(folder, DIAGNOSTICS_NAME)) as staging, open(staging, "w") as f:
        json.dump(record, f, indent=2)
    if osp.isfile(progress):
        os.remove(progress)
    logger.info("Pretrained the demo CLIP in %.0f s: %s", time.time() - started, checkpoint)
    return Pretrained(checkpoint, key, sha256, diagnostics, False)


def describe(result: Pretrained) -> str:
    """The diagnostics as a few readable lines."""
    d = result.diagnostics
    return "\n".join([
        f"checkpoint {result.path} (sha256 {result.sha256[:16]}…)",
        f"zero-shot accuracy over {d['num_kinds']} kinds: seen kinds "
        f"{d['zeroshot_accuracy_seen']:.1f}%, held-out kinds "
        f"{d['zeroshot_accuracy_held_out']:.1f}%",
        f"class prompts' mean pairwise cosine {d['text_mean_pairwise_cosine']:.3f}; "
        f"images' {d['image_mean_pairwise_cosine']:.3f}; matched image–text cosine "
        f"{d['image_text_cosine_matched']:.3f}; logit scale {d['logit_scale']:.1f}",
    ])


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: build or reuse the pretrained demo CLIP; its path goes to stdout (for
    scripts), progress and diagnostics to stderr."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default="", help="default: $DEMO_WORLD_CACHE or "
                        "~/.cache/dor_clip/demo_world")
    parser.add_argument("--steps", type=int, default=DEFAULT_CONFIG.steps,
                        help=f"training steps (default {DEFAULT_CONFIG.steps})")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be a positive whole number, got {args.steps}")

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    result = pretrain(args.cache_dir or None, config=replace(DEFAULT_CONFIG, steps=args.steps))
    logger.info("%s", describe(result))
    print(result.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
