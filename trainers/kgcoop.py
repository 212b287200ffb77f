"""KgCoOp: CoOp's context, kept close to the hand-crafted prompt's text features.

Yao, Zhang and Xu, "Visual-Language Prompt Tuning with Knowledge-guided Context Optimization",
CVPR 2023.
"""
import logging
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone.templates import fill, knowledge_template
from toolbox import compute_accuracy, register_trainer

from .base import CLIPTrainer
from .coop import CLASS_TOKEN_POSITIONS, CoOpCLIP, CoOpPromptLearner
from .knowledge import frozen_text_features, knowledge_distance

logger = logging.getLogger(__name__)


class KgCoOpCLIP(CoOpCLIP):
    """CoOp's model plus the frozen hand-crafted-prompt features of its class names.

    ``template`` is the hand-crafted prompt (``{}`` for the name) whose frozen CLIP features
    the tuned class features are pulled towards.
    """

    def __init__(self, kgcoop_cfg, classnames: Sequence[str], clip_model: nn.Module,
                 template: str, prompt_learner: Optional[CoOpPromptLearner] = None):
        super().__init__(kgcoop_cfg, classnames, clip_model, prompt_learner=prompt_learner)
        self.knowledge_template = template
        logger.info('Hand-crafted prompts: "%s" ...', fill(template, classnames[0]))
        self.register_buffer("class_knowledge", self.knowledge_features(classnames),
                             persistent=False)

    def knowledge_features(self, names: Sequence[str]) -> torch.Tensor:
        """Normalised frozen-CLIP features [n, d] of the hand-crafted prompts of ``names``."""
        texts = [fill(self.knowledge_template, name) for name in names]
        return frozen_text_features(self.text_encoder, self.token_embedding, texts, self.dtype)

    def forward(self, image: torch.Tensor, with_knowledge_loss: bool = False):
        """Logits; with ``with_knowledge_loss`` also ``1 - mean cos`` to the class knowledge."""
        image_features = F.normalize(self.image_encoder(image.type(self.dtype)), dim=-1)
        text_features = self.label_text_features()
        logits = self.logit_scale.exp() * image_features @ F.normalize(text_features, dim=-1).t()
        if not with_knowledge_loss:
            return logits
        return logits, knowledge_distance(text_features, self.class_knowledge)


@register_trainer
class KgCoOp(CLIPTrainer):
    """Knowledge-guided Context Optimization: CE + W * (1 - mean_c cos(t_c, t_c^clip))."""

    CFG_NODE = "KGCOOP"

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        node = cfg.TRAINER[self.CFG_NODE]
        if node.get("CLASS_TOKEN_POSITION", "end") not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"TRAINER.{self.CFG_NODE}.CLASS_TOKEN_POSITION must be one of "
                             f"{CLASS_TOKEN_POSITIONS}")

    def build_clip_model(self, classnames, clip_model):
        # The hand-crafted prompts are encoded while building, on the run's device (as upstream
        # does on CUDA) rather than in fp16 on the CPU.
        clip_model.to(self.device)
        template = knowledge_template(self.cfg.DATASET.NAME)
        return KgCoOpCLIP(self.trainer_cfg, classnames, clip_model, template)

    def compute_loss(self, image, label):
        logits, loss_kg = self.model(image, with_knowledge_loss=True)
        loss_kg = loss_kg.mean()  # one value per GPU under DataParallel
        loss_ce = F.cross_entropy(logits, label)
        loss = loss_ce + self.trainer_cfg.W * loss_kg
        return loss, OrderedDict(loss=loss.item(), loss_ce=loss_ce.item(),
                                 loss_kg=loss_kg.item(),
                                 acc=compute_accuracy(logits, label)[0].item())
