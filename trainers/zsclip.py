"""Zero-shot CLIP: class text features from the dataset's hand-written template, no training.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", 2021.
"""
import logging
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone.loader import clip_dtype
from clip_backbone.prompted import encode_labels
from clip_backbone.templates import fill, zeroshot_template
from toolbox import register_trainer

from .base import CLIPTrainer

logger = logging.getLogger(__name__)


class ZeroshotModel(nn.Module):
    """Frozen CLIP with fixed, normalised class text features."""

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], template: str,
                 device: Optional[torch.device] = None):
        super().__init__()
        logger.info('Prompts: "%s" ...', fill(template, classnames[0]))
        features = encode_labels(clip_model, classnames, template, device=device)
        self.register_buffer("text_features", features.to(clip_dtype(clip_model)))
        self.image_encoder = clip_model.visual
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_dtype(clip_model)

    def label_text_features(self) -> torch.Tensor:
        return self.text_features

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image_features = F.normalize(self.image_encoder(image.type(self.dtype)), dim=-1)
        return self.logit_scale.exp() * image_features @ self.text_features.t()


@register_trainer
class ZeroshotCLIP(CLIPTrainer):
    """Evaluates CLIP with the dataset's template; ``train()`` only evaluates."""

    CFG_NODE = "ZSCLIP"

    def build_clip_model(self, classnames, clip_model):
        template = zeroshot_template(self.cfg.DATASET.NAME)
        return ZeroshotModel(clip_model, classnames, template, device=self.device)

    def learnable_module(self):
        return None

    def is_learnable(self, name: str) -> bool:
        return False

    def train(self) -> None:
        logger.info("ZeroshotCLIP has no parameters to train: evaluating zero-shot CLIP")
        self.test()
