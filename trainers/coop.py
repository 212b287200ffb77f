"""CoOp: a learned context shared by all class names (or one per class), CLIP kept frozen.

Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022.
"""
import logging
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone.loader import clip_dtype
from clip_backbone.prompted import (ClassPromptLearner, LabelPrompts, PromptedCLIP,
                                    build_label_prompts)
from clip_backbone.tokenizer import encode, tokenize
from toolbox import compute_accuracy, register_trainer

from .base import CLIPTrainer

logger = logging.getLogger(__name__)

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def init_context(token_embedding: nn.Embedding, ctx_init: str, n_ctx: int, ctx_dim: int,
                 dtype: torch.dtype, n_cls: Optional[int] = None):
    """Initial context vectors and the text they stand for.

    With ``ctx_init`` the vectors are the token embeddings of that phrase (underscores read as
    spaces; one vector per BPE token); otherwise N(0, 0.02²) and the stand-in text "X X ... X".
    ``n_cls`` asks for one context per class (CoOp's class-specific context).
    """
    if ctx_init:
        phrase = ctx_init.replace("_", " ")
        n_ctx = len(encode(phrase))
        with torch.no_grad():
            embedding = token_embedding(tokenize(phrase).to(token_embedding.weight.device))
        vectors = embedding[0, 1:1 + n_ctx].to(dtype).cpu()
        if n_cls is not None:
            vectors = vectors.unsqueeze(0).repeat(n_cls, 1, 1)
        return vectors, phrase

    shape = (n_ctx, ctx_dim) if n_cls is None else (n_cls, n_ctx, ctx_dim)
    vectors = torch.empty(*shape, dtype=dtype)
    nn.init.normal_(vectors, std=0.02)
    return vectors, " ".join(["X"] * n_ctx)


class CoOpPromptLearner(ClassPromptLearner):
    """Holds the context vectors and assembles ``[SOT][context][name . EOT ...]`` prompts.

    A config node without ``CSC``/``CLASS_TOKEN_POSITION`` (CoCoOp's) means a shared context
    and the name at the end; ``name_template`` is the fixed text after the context.
    """

    def __init__(self, coop_cfg, classnames: Sequence[str], clip_model: nn.Module,
                 name_template: str = "{}."):
        super().__init__()
        dtype = clip_dtype(clip_model)
        ctx_dim = clip_model.ln_final.weight.shape[0]
        position = coop_cfg.get("CLASS_TOKEN_POSITION", "end")
        if position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"CLASS_TOKEN_POSITION must be one of {CLASS_TOKEN_POSITIONS}")

        n_cls = len(classnames) if coop_cfg.get("CSC", False) else None
        ctx_vectors, self.context_text = init_context(
            clip_model.token_embedding, coop_cfg.CTX_INIT, coop_cfg.N_CTX, ctx_dim, dtype, n_cls)
        self.ctx = nn.Parameter(ctx_vectors)
        self.n_ctx = ctx_vectors.shape[-2]
        self.class_token_position = position
        logger.info('Initial context: "%s" (%d tokens, %s)', self.context_text, self.n_ctx,
                    "class-specific" if n_cls else "shared by all classes")

        self.name_template = name_template
        labels = build_label_prompts(clip_model.token_embedding, classnames, self.context_text,
                                     self.n_ctx, dtype, name_template)
        self.register_class_prompts(labels)

    def assemble(self, labels: LabelPrompts, ctx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Prompt embeddings [n_labels, 77, D] with ``ctx`` (default: the learned context)."""
        ctx = self.ctx if ctx is None else ctx
        n = len(labels)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(n, -1, -1)
        elif ctx.shape[0] != n:
            raise ValueError("Class-specific contexts exist only for the training class names")

        if self.class_token_position == "end":
            return torch.cat([labels.prefix, ctx, labels.suffix], dim=1)

        half = self.n_ctx // 2
        prompts = []
        for i, name_len in enumerate(labels.name_lens):
            name = labels.suffix[i:i + 1, :name_len]
            rest = labels.suffix[i:i + 1, name_len:]
            if self.class_token_position == "middle":
                parts = [labels.prefix[i:i + 1], ctx[i:i + 1, :half], name, ctx[i:i + 1, half:],
                         rest]
            else:
                parts = [labels.prefix[i:i + 1], name, ctx[i:i + 1], rest]
            prompts.append(torch.cat(parts, dim=1))
        return torch.cat(prompts, dim=0)

    def forward(self) -> torch.Tensor:
        return self.assemble(self.class_prompts)


class CoOpCLIP(PromptedCLIP):
    """Frozen CLIP whose class text features come from CoOp prompts.

    Learners that extend CoOp's context pass their own ``prompt_learner`` (a subclass of
    ``CoOpPromptLearner``).
    """

    def __init__(self, coop_cfg, classnames: Sequence[str], clip_model: nn.Module,
                 prompt_learner: Optional[CoOpPromptLearner] = None):
        super().__init__(clip_model)
        if prompt_learner is None:
            prompt_learner = CoOpPromptLearner(coop_cfg, classnames, clip_model)
        self.prompt_learner = prompt_learner
        self.image_encoder = clip_model.visual

    def label_text_features(self, labels: Optional[LabelPrompts] = None) -> torch.Tensor:
        """Tuned text features (unnormalised) of ``labels`` (default: the class names)."""
        labels = self.prompt_learner.class_prompts if labels is None else labels
        prompts = self.prompt_learner.assemble(labels)
        return self.text_encoder(prompts, labels.tokenized)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image_features = F.normalize(self.image_encoder(image.type(self.dtype)), dim=-1)
        text_features = F.normalize(self.label_text_features(), dim=-1)
        return self.logit_scale.exp() * image_features @ text_features.t()


@register_trainer
class CoOp(CLIPTrainer):
    """Context Optimization: cross-entropy on the logits, only the context is trained."""

    CFG_NODE = "COOP"

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        if cfg.TRAINER.COOP.CLASS_TOKEN_POSITION not in CLASS_TOKEN_POSITIONS:
            raise ValueError("TRAINER.COOP.CLASS_TOKEN_POSITION must be one of "
                             f"{CLASS_TOKEN_POSITIONS}")

    def build_clip_model(self, classnames, clip_model):
        return CoOpCLIP(self.cfg.TRAINER.COOP, classnames, clip_model)

    def compute_loss(self, image, label):
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        return loss, OrderedDict(loss=loss.item(),
                                 acc=compute_accuracy(output, label)[0].item())
