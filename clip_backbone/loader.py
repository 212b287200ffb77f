"""Builds the frozen CLIP model from open_clip, by CoOp backbone name, local file or tag.

Every model is built the way OpenAI ships CLIP: linear/conv/attention weights in fp16 and
LayerNorms that compute in fp32. Trainers call ``.float()`` for fp32/amp (or on CPU), exactly
as CoOp does with the OpenAI package.
"""
import hashlib
import logging
import os
import os.path as osp
import socket
import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Tuple
from urllib.parse import urlparse

import torch
import torch.nn as nn
import open_clip
from open_clip.model import CLIP, build_model_from_openai_state_dict, convert_weights_to_lp

logger = logging.getLogger(__name__)

# CoOp's backbone names and the open_clip architectures holding the same OpenAI weights.
COOP_NAMES: Dict[str, str] = {
    "RN50": "RN50",
    "RN101": "RN101",
    "RN50x4": "RN50x4",
    "RN50x16": "RN50x16",
    "RN50x64": "RN50x64",
    "ViT-B/32": "ViT-B-32",
    "ViT-B/16": "ViT-B-16",
    "ViT-L/14": "ViT-L-14",
    "ViT-L/14@336px": "ViT-L-14-336",
}
OPENAI_CACHE = osp.expanduser("~/.cache/clip")
RANDOM_TAG = "random"


# Tiny random-init CLIPs for tests and demos, registered as open_clip architectures (their
# configs are in model_configs/) so that checkpoints of them load like any open_clip model.
TINY_MODELS = ("tiny-vit", "tiny-rn")
TINY_SEED = 0
open_clip.add_model_config(osp.join(osp.dirname(osp.abspath(__file__)), "model_configs"))


class WeightsUnavailableError(RuntimeError):
    """The CLIP weights a config asks for are not on this machine and cannot be fetched."""


def resolve_architecture(name: str) -> str:
    """open_clip architecture for a CoOp name ("ViT-B/16") or an open_clip name ("ViT-B-16")."""
    if name in COOP_NAMES:
        return COOP_NAMES[name]
    arch = name.replace("/", "-")
    if arch not in open_clip.list_models():
        known = sorted(COOP_NAMES)
        raise ValueError(f'Unknown CLIP backbone "{name}". Use one of {known} or an open_clip '
                         "model name (open_clip.list_models())")
    return arch


def default_tag(name: str, tag: str) -> str:
    """CoOp names mean OpenAI's weights; other open_clip names need an explicit tag."""
    if tag:
        return tag
    if name in COOP_NAMES:
        return "openai"
    raise ValueError(f'Backbone "{name}" needs MODEL.BACKBONE.TAG (an open_clip pretrained tag, '
                     f"one of {open_clip.list_pretrained_tags_by_model(resolve_architecture(name))}"
                     ")"
                     " or MODEL.BACKBONE.PATH")


_FILE_HASHES: Dict[Tuple[str, int, float], str] = {}


def file_sha256(path: str) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) within the process."""
    stat = os.stat(path)
    key = (osp.abspath(path), stat.st_size, stat.st_mtime)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def build_tiny(name: str) -> CLIP:
    """The registered tiny model ``name``, with weights fixed by its seed (not the global RNG),
    built in well under a second."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = CLIP(**open_clip.get_model_config(name), cast_dtype=torch.float16)
    convert_weights_to_lp(model, dtype=torch.float16)
    with torch.no_grad():
        model.logit_scale.fill_(torch.log(torch.tensor(100.0)).item())
    return model.eval()


def build_random(name: str, seed: int = 0) -> CLIP:
    """A real architecture with random weights (``MODEL.BACKBONE.TAG random``): costs are real,
    numbers are not. For benchmarks and offline checks only."""
    arch = resolve_architecture(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None, precision="fp16", device="cpu",
                                       force_quick_gelu=True)
    return model.eval()


def _openai_state(path: str) -> dict:
    """The state dict of an OpenAI CLIP file: a TorchScript archive, or a plain state dict."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.load's deprecation notice
            state = torch.jit.load(path, map_location="cpu").eval().state_dict()
    except RuntimeError:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    if "positional_embedding" not in state or "visual.conv1.weight" not in state:
        raise ValueError(f'"{path}" is not an OpenAI CLIP file; for an open_clip checkpoint '
                         "give MODEL.BACKBONE.NAME its architecture and MODEL.BACKBONE.TAG "
                         "the tag it was trained as (or an open_clip name)")
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    return state


def _is_torchscript(path: str) -> bool:
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name
                   for name in archive.namelist())


def _load_file(path: str, name: str, tag: str) -> CLIP:
    """A local checkpoint. OpenAI's files (TorchScript archives; state dicts when the backbone
    is a CoOp name or the tag is ``openai``) are rebuilt as OpenAI ships CLIP, with QuickGELU.
    Anything else is an open_clip checkpoint of the named architecture, whose activation comes
    from the tag's pretrained config (or the architecture's own, e.g. ``-quickgelu`` names):
    the state dict alone cannot tell GELU from QuickGELU."""
    if _is_torchscript(path) or tag == "openai" or (name in COOP_NAMES and not tag):
        return build_model_from_openai_state_dict(_openai_state(path), quick_gelu=True,
                                                  cast_dtype=torch.float16)

    arch = resolve_architecture(name)
    tag_cfg = (open_clip.get_pretrained_cfg(arch, tag) or {}) if tag else {}
    return open_clip.create_model(arch, pretrained=path, precision="fp16", device="cpu",
                                  force_quick_gelu=bool(tag_cfg.get("quick_gelu")))


def _missing_weights_message(name: str, arch: str, tag: str, error: Exception) -> str:
    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    lines = [f"CLIP weights for backbone {name} (open_clip {arch}, tag {tag}) are not on this "
             "machine and could not be downloaded."]
    if cfg.get("url") and tag == "openai":
        openai_file = osp.join(OPENAI_CACHE, osp.basename(cfg["url"]))
        lines.append(f"  - OpenAI's file, as CoOp uses it: {openai_file}")
    if cfg.get("hf_hub"):
        repo = cfg["hf_hub"].strip("/").split("/")
        lines.append(f"  - or the Hugging Face cache of {'/'.join(repo[:2])} "
                     f"(huggingface-cli download {'/'.join(repo[:2])})")
    lines.append("Copy one of them here, or set MODEL.BACKBONE.PATH to a local OpenAI .pt or "
                 "open_clip checkpoint.")
    lines.append(f"Download error: {str(error).splitlines()[0] if str(error) else type(error)}")
    return "\n".join(lines)


def _cached_hub_file(cfg: dict) -> Optional[str]:
    """Path of the tag's weights in the Hugging Face cache, without touching the network."""
    if not cfg.get("hf_hub"):
        return None
    from huggingface_hub import try_to_load_from_cache

    repo_id, filename = osp.split(cfg["hf_hub"].rstrip("/") + "/")
    repo_id = repo_id.rstrip("/")
    names = [filename] if filename else ["open_clip_model.safetensors",
                                          "open_clip_pytorch_model.bin"]
    for fname in names:
        cached = try_to_load_from_cache(repo_id=repo_id, filename=fname)
        if isinstance(cached, str) and osp.isfile(cached):
            return cached
    return None


def _download(cfg: dict) -> str:
    """Fetch the tag's weights; fails at once when no name server answers (offline machine)."""
    host = "huggingface.co" if cfg.get("hf_hub") else urlparse(cfg.get("url", "")).hostname
    try:
        socket.getaddrinfo(host, 443)
    except OSError as error:
        raise ConnectionError(f"cannot resolve {host}: this machine looks offline") from error
    return open_clip.download_pretrained(cfg)


def _load_named(name: str, tag: str) -> Tuple[CLIP, str]:
    arch = resolve_architecture(name)
    tag = default_tag(name, tag)
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise ValueError(f'open_clip has no pretrained tag "{tag}" for {arch}; known tags: '
                         f"{open_clip.list_pretrained_tags_by_model(arch)}")

    if tag == "openai" and cfg.get("url"):
        local = osp.join(OPENAI_CACHE, osp.basename(cfg["url"]))
        if osp.isfile(local):
            return _load_file(local, name, tag), local

    try:
        path = _cached_hub_file(cfg) or _download(cfg)
    except Exception as error:  # network, hub or permission errors all mean "not available"
        raise WeightsUnavailableError(_missing_weights_message(name, arch, tag, error)) from error
    model = open_clip.create_model(arch, pretrained=path, precision="fp16", device="cpu",
                                   force_quick_gelu=bool(cfg.get("quick_gelu")))
    return model, path


@dataclass
class LoadedCLIP:
    """A CLIP model plus what identifies its weights (for provenance and feature caches)."""

    model: CLIP
    backbone: str
    weights_id: str


def load_clip(name: str, path: str = "", tag: str = "") -> LoadedCLIP:
    """Load CLIP on the CPU, OpenAI-style mixed precision, from a tiny spec, a file or a tag.

    The tag ``random`` builds the named architecture with random weights (no download).
    """
    if path:
        if not osp.isfile(path):
            raise WeightsUnavailableError(f'MODEL.BACKBONE.PATH "{path}" is not a file')
        logger.info("Loading CLIP weights from %s", path)
        model = _load_file(path, name, tag)
        weights_id = f"sha256:{file_sha256(path)}"
    elif name in TINY_MODELS:
        model = build_tiny(name)
        weights_id = f"random-init:{name}:seed{TINY_SEED}"
    elif tag == RANDOM_TAG:
        model = build_random(name)
        weights_id = f"random-init:{resolve_architecture(name)}:seed0"
    else:
        model, file = _load_named(name, tag)
        weights_id = f"sha256:{file_sha256(file)}"

    if not isinstance(model, CLIP) or getattr(model, "text_pool_type", "argmax") != "argmax":
        raise ValueError(f'Backbone "{name}" does not have CLIP\'s causal text transformer with '
                         "EOT pooling, which prompt learners need")
    return LoadedCLIP(model=model.eval(), backbone=name, weights_id=weights_id)


def load_clip_to_cpu(cfg) -> LoadedCLIP:
    """``load_clip`` driven by ``cfg.MODEL.BACKBONE`` (NAME, PATH, TAG)."""
    backbone = cfg.MODEL.BACKBONE
    return load_clip(backbone.NAME, backbone.get("PATH", ""), backbone.get("TAG", ""))


def clip_dtype(model: nn.Module) -> torch.dtype:
    """The compute dtype of a CLIP model: that of its first convolution, as in OpenAI's code."""
    return model.visual.conv1.weight.dtype


def input_resolution(model: nn.Module) -> int:
    size = model.visual.image_size
    return size[0] if isinstance(size, (tuple, list)) else int(size)


def is_vit(model: nn.Module) -> bool:
    return hasattr(model.visual, "class_embedding")
