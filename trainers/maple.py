"""MaPLe: prompts in both CLIP towers, the vision prompts coupled to the text prompts.

Khattak et al., "MaPLe: Multi-modal Prompt Learning", CVPR 2023.

The text side learns a context at the input plus one prompt per deeper layer; each vision
prompt is a linear projection (a coupling function) of the text prompt of the same layer, so
the two towers are tuned together. The module also holds what PromptSRC shares with MaPLe: the
context initialisation, the text-side prompt pieces, and the CLIP wrapper of both towers.
"""
import copy
import logging
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone.loader import clip_dtype
from clip_backbone.prompted import (ClassPromptLearner, LabelPrompts, PromptedCLIP,
                                    PromptedVisionEncoder, build_label_prompts)
from clip_backbone.tokenizer import encode
from toolbox import compute_accuracy, register_trainer

from .base import CLIPTrainer
from .coop import init_context

logger = logging.getLogger(__name__)


def phrase_context(token_embedding: nn.Embedding, ctx_init: str, n_ctx: int, ctx_dim: int,
                   dtype: torch.dtype) -> Tuple[torch.Tensor, str]:
    """Initial text context [n_ctx, ctx_dim] of MaPLe/PromptSRC and the prompt text around it.

    The context is the embeddings of the first ``n_ctx`` tokens of ``ctx_init`` while the prompt
    text keeps the whole phrase, so the phrase's remaining tokens stay fixed after the context
    ("a photo of a", n_ctx 2: learned "a photo", fixed "of a <name>."). Upstream tests
    ``n_ctx <= 4``, the length of its default phrase; here the test is the phrase's own length,
    which agrees for that phrase. A shorter phrase or none gives N(0, 0.02²) and "X X ... X".
    """
    if n_ctx < 1:
        raise ValueError(f"The text context needs at least one token, got {n_ctx}")
    if ctx_init:
        phrase = ctx_init.replace("_", " ")
        if len(encode(phrase)) >= n_ctx:
            vectors, phrase = init_context(token_embedding, phrase, n_ctx, ctx_dim, dtype)
            return vectors[:n_ctx].clone(), phrase
        logger.info('CTX_INIT "%s" has fewer than %d tokens: random context instead', phrase,
                    n_ctx)
    return init_context(token_embedding, "", n_ctx, ctx_dim, dtype)


def check_depth(depth: int, num_layers: int, key: str, tower: str, minimum: int) -> None:
    """One clear error when a prompt depth does not fit the transformer it prompts."""
    if depth < minimum:
        raise ValueError(f"{key} must be at least {minimum}, got {depth}")
    if depth > num_layers:
        raise ValueError(f"{key} = {depth} asks for prompts in {depth} layers, but this CLIP's "
                         f"{tower} transformer has {num_layers}")


def normal_prompts(count: int, n_ctx: int, width: int) -> nn.ParameterList:
    """``count`` learnable prompts [n_ctx, width] (fp32), each drawn from N(0, 0.02²)."""
    prompts = nn.ParameterList()
    for _ in range(count):
        vectors = torch.empty(n_ctx, width)
        nn.init.normal_(vectors, std=0.02)
        prompts.append(nn.Parameter(vectors))
    return prompts


class PhrasePromptLearner(ClassPromptLearner):
    """Text input side shared by MaPLe and PromptSRC: ``[SOT][context][rest of phrase, name.]``.

    Subclasses add the deep text prompts and the vision prompts.
    """

    def __init__(self, classnames: Sequence[str], clip_model: nn.Module, n_ctx: int,
                 ctx_init: str):
        super().__init__()
        dtype = clip_dtype(clip_model)
        self.text_width = clip_model.ln_final.weight.shape[0]
        self.vision_width = clip_model.visual.class_embedding.shape[-1]

        vectors, self.context_text = phrase_context(clip_model.token_embedding, ctx_init, n_ctx,
                                                    self.text_width, dtype)
        self.ctx = nn.Parameter(vectors)
        self.n_ctx = n_ctx
        logger.info('Initial text context: "%s" (the first %d tokens are learned)',
                    self.context_text, n_ctx)

        labels = build_label_prompts(clip_model.token_embedding, classnames, self.context_text,
                                     n_ctx, dtype)
        self.register_class_prompts(labels)

    def assemble(self, labels: LabelPrompts) -> torch.Tensor:
        """Prompt embeddings [n_labels, L, D]: the learned context after each SOT."""
        ctx = self.ctx.unsqueeze(0).expand(len(labels), -1, -1)
        return torch.cat([labels.prefix, ctx.to(labels.prefix.dtype), labels.suffix], dim=1)

    def text_deep_prompts(self) -> List[torch.Tensor]:
        """Prompts replacing the context at the input of text layers 1, 2, ..."""
        raise NotImplementedError

    def vision_prompts(self) -> Tuple[Optional[torch.Tensor], List[torch.Tensor]]:
        """Tokens appended to the image tokens, and those replacing them in layers 1, 2, ..."""
        raise NotImplementedError


class MultiModalPromptLearner(PhrasePromptLearner):
    """MaPLe's learnable parts, under upstream's parameter names.

    ``ctx`` (text input context) and ``proj`` (its coupling to the vision width) are in CLIP's
    dtype (upstream halves ``proj`` whatever PREC says, which fits fp16 runs only); the deeper
    text prompts ``compound_prompts_text`` and their couplings ``compound_prompt_projections``
    are fp32 and cast where they enter the transformers. All couplings of the deeper layers
    start as copies of one randomly initialised layer, as upstream clones a single linear
    layer.
    """

    def __init__(self, maple_cfg, classnames: Sequence[str], clip_model: nn.Module):
        depth = maple_cfg.PROMPT_DEPTH
        check_depth(depth, len(clip_model.transformer.resblocks), "TRAINER.MAPLE.PROMPT_DEPTH",
                    "text", minimum=1)
        check_depth(depth, len(clip_model.visual.transformer.resblocks),
                    "TRAINER.MAPLE.PROMPT_DEPTH", "vision", minimum=1)
        super().__init__(classnames, clip_model, maple_cfg.N_CTX, maple_cfg.CTX_INIT)
        self.prompt_depth = depth

        self.proj = nn.Linear(self.text_width, self.vision_width).to(self.ctx.dtype)
        self.compound_prompts_text = normal_prompts(depth - 1, self.n_ctx, self.text_width)
        coupling = nn.Linear(self.text_width, self.vision_width)
        self.compound_prompt_projections = nn.ModuleList(
            copy.deepcopy(coupling) for _ in range(depth - 1))
        logger.info("MaPLe: %d context tokens, prompts in layers 0..%d of both towers",
                    self.n_ctx, depth - 1)

    def text_deep_prompts(self) -> List[torch.Tensor]:
        return list(self.compound_prompts_text)

    def vision_prompts(self) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        deep = [coupling(prompt) for coupling, prompt
                in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return self.proj(self.ctx), deep


class DeepPromptedCLIP(PromptedCLIP):
    """Frozen CLIP whose text and image towers take the prompts of ``self.prompt_learner``.

    Subclasses set ``prompt_learner`` (a ``PhrasePromptLearner``) after calling this.
    """

    prompt_learner: PhrasePromptLearner

    def __init__(self, clip_model: nn.Module):
        super().__init__(clip_model)
        self.image_encoder = PromptedVisionEncoder(clip_model)

    def label_text_features(self, labels: Optional[LabelPrompts] = None) -> torch.Tensor:
        """Tuned text features (unnormalised) of ``labels`` (default: the class names)."""
        learner = self.prompt_learner
        labels = learner.class_prompts if labels is None else labels
        return self.text_encoder(learner.assemble(labels), labels.tokenized,
                                 deep_prompts=learner.text_deep_prompts())

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """Prompted image features (unnormalised)."""
        prompts, deep_prompts = self.prompt_learner.vision_prompts()
        return self.image_encoder(image.type(self.dtype), prompts, deep_prompts)

    def frozen_image_features(self, image: torch.Tensor) -> torch.Tensor:
        """Zero-shot CLIP image features: the same frozen tower without prompts."""
        return self.image_encoder(image.type(self.dtype))

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """CLIP's scaled cosine similarities [B, n_labels]."""
        image_features = F.normalize(image_features, dim=-1)
        text_features = F.normalize(text_features, dim=-1)
        return self.logit_scale.exp() * image_features @ text_features.t()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits(self.image_features(image), self.label_text_features())


class MaPLeCLIP(DeepPromptedCLIP):
    """CLIP prompted by MaPLe's multi-modal prompt learner."""

    def __init__(self, maple_cfg, classnames: Sequence[str], clip_model: nn.Module):
        super().__init__(clip_model)
        self.prompt_learner = MultiModalPromptLearner(maple_cfg, classnames, clip_model)


@register_trainer
class MaPLe(CLIPTrainer):
    """Multi-modal prompt learning: cross-entropy on the logits, only the prompts are trained.

    Registers only the prompt learner (upstream registers the whole CLIP), so checkpoints hold
    no frozen CLIP weight; the parameter names inside it are upstream's.
    """

    CFG_NODE = "MAPLE"
    MODEL_NAME = "MultiModalPromptLearner"

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        if cfg.TRAINER.MAPLE.PROMPT_DEPTH < 1:
            raise ValueError("TRAINER.MAPLE.PROMPT_DEPTH must be at least 1 (1: prompts at the "
                             "input of both towers only)")
        if cfg.TRAINER.MAPLE.N_CTX < 1:
            raise ValueError("TRAINER.MAPLE.N_CTX must be at least 1")

    def build_clip_model(self, classnames, clip_model):
        return MaPLeCLIP(self.cfg.TRAINER.MAPLE, classnames, clip_model)

    def compute_loss(self, image, label):
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        return loss, OrderedDict(loss=loss.item(),
                                 acc=compute_accuracy(output, label)[0].item())
