"""CoCoOp: CoOp's context shifted per image by a small meta-network, CLIP kept frozen.

Zhou et al., "Conditional Prompt Learning for Vision-Language Models", CVPR 2022.
"""
import logging
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone.loader import clip_dtype
from clip_backbone.prompted import LabelPrompts
from toolbox import register_trainer

from .base import CLIPTrainer
from .coop import CoOpCLIP, CoOpPromptLearner

logger = logging.getLogger(__name__)


class CoCoOpPromptLearner(CoOpPromptLearner):
    """CoOp's shared context plus the meta-network mapping an image feature to a context shift.

    The meta-network is Linear(vis_dim, vis_dim/16) -> ReLU -> Linear(vis_dim/16, ctx_dim), kept
    in CLIP's dtype like the context (fp16 under PREC fp16, as CoCoOp does).
    """

    def __init__(self, cocoop_cfg, classnames: Sequence[str], clip_model: nn.Module):
        super().__init__(cocoop_cfg, classnames, clip_model)
        if self.ctx.dim() != 2:
            raise ValueError("CoCoOp learns one context shared by all classes (no CSC)")
        vis_dim = clip_model.visual.output_dim
        ctx_dim = self.ctx.shape[-1]

        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ])).to(clip_dtype(clip_model))

    def shifted_contexts(self, bias: torch.Tensor) -> torch.Tensor:
        """One context per image [B, n_ctx, D]: every context token plus that image's bias."""
        return self.ctx.unsqueeze(0) + bias.unsqueeze(1)


class CoCoOpCLIP(CoOpCLIP):
    """Frozen CLIP whose prompts, for each image, use the context shifted by that image."""

    # Text-encoder passes hold at most this many prompts (but always one image's n_cls), so
    # evaluating a batch of 100 images on 1000 classes does not encode 100k prompts at once.
    MAX_PROMPTS_PER_PASS = 1024

    def __init__(self, cocoop_cfg, classnames: Sequence[str], clip_model: nn.Module):
        learner = CoCoOpPromptLearner(cocoop_cfg, classnames, clip_model)
        super().__init__(cocoop_cfg, classnames, clip_model, prompt_learner=learner)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """Normalised image features [B, d] (the meta-network's input)."""
        return F.normalize(self.image_encoder(image.type(self.dtype)), dim=-1)

    def context_bias(self, image_features: torch.Tensor) -> torch.Tensor:
        """The meta-network's shift [B, ctx_dim] for normalised image features [B, d]."""
        return self.prompt_learner.meta_net(image_features)

    def label_text_features(self, labels: Optional[LabelPrompts] = None,
                            bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Tuned text features (unnormalised) of ``labels`` (default: the class names).

        Without ``bias`` the plain context is used and the result is [n, d]; with ``bias``
        [B, ctx_dim] every image gets its own shifted context and the result is [B, n, d].
        """
        if bias is None:
            return super().label_text_features(labels)

        learner = self.prompt_learner
        labels = learner.class_prompts if labels is None else labels
        contexts = learner.shifted_contexts(bias)
        n_labels = len(labels)
        per_pass = max(1, self.MAX_PROMPTS_PER_PASS // n_labels)

        features = []
        for start in range(0, len(contexts), per_pass):
            group = contexts[start:start + per_pass]
            prompts = torch.cat([learner.assemble(labels, ctx) for ctx in group])
            tokenized = labels.tokenized.repeat(len(group), 1)
            encoded = self.text_encoder(prompts, tokenized)
            features.append(encoded.view(len(group), n_labels, -1))
        return torch.cat(features)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image_features = self.encode_image(image)
        bias = self.context_bias(image_features)
        text_features = F.normalize(self.label_text_features(bias=bias), dim=-1)
        return self.logit_scale.exp() * torch.einsum("bd,bnd->bn", image_features,
                                                     text_features)


@register_trainer
class CoCoOp(CLIPTrainer):
    """Conditional Context Optimization: cross-entropy; the context and meta-network learn."""

    CFG_NODE = "COCOOP"

    def build_clip_model(self, classnames, clip_model):
        return CoCoOpCLIP(self.cfg.TRAINER.COCOOP, classnames, clip_model)

    def compute_loss(self, image, label):
        loss = F.cross_entropy(self.model(image), label)
        return loss, OrderedDict(loss=loss.item())
