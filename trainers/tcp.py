"""TCP: class-aware prompt tokens, made from each class's hand-crafted text feature, replace the
context tokens at one deep layer of CLIP's text encoder; KgCoOp's consistency term is kept.

Yao, Zhang and Xu, "TCP: Textual-based Class-aware Prompt Tuning for Visual-Language Model",
CVPR 2024.
"""
import logging
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
from open_clip.transformer import QuickGELU

from clip_backbone.loader import clip_dtype
from clip_backbone.prompted import LabelPrompts
from clip_backbone.templates import knowledge_template
from toolbox import register_trainer

from .coop import CoOpPromptLearner
from .kgcoop import KgCoOp, KgCoOpCLIP

logger = logging.getLogger(__name__)

# The fixed text after TCP's learned context ({} is the class name). TCP writes its prompts as
# "X X X X <text>" (UCF101 and the ImageNet family: "a photo of a <text>"), and the four
# context vectors take the place of the first four words. Other datasets: "{}.".
TCP_NAME_TEMPLATES = {
    "OxfordPets": "{}, a type of pet.",
    "OxfordFlowers": "{}, a type of flower.",
    "FGVCAircraft": "{}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "StanfordCars": "{}, a type of car",
    "Food101": "{}, a type of food.",
    "UCF101": "person doing {}.",
}

# TCP's hand-crafted prompts are KgCoOp's except for these two datasets.
TCP_KNOWLEDGE_TEMPLATES = {
    "FGVCAircraft": "a photo of an aircraft {}.",
    "Food101": "a photo of a {}, a type of food.",
}


def tcp_templates(dataset_name: str):
    """TCP's (hand-crafted knowledge template, text after the context) for a dataset."""
    knowledge = TCP_KNOWLEDGE_TEMPLATES.get(dataset_name, knowledge_template(dataset_name))
    return knowledge, TCP_NAME_TEMPLATES.get(dataset_name, "{}.")


class KnowledgeLabelPrompts(LabelPrompts):
    """Label prompts plus each label's normalised frozen hand-crafted text feature."""

    def __init__(self, labels: LabelPrompts, knowledge: torch.Tensor):
        super().__init__(labels.names, labels.prefix, labels.suffix, labels.tokenized,
                         labels.name_lens)
        self.knowledge = knowledge

    def to(self, device) -> "KnowledgeLabelPrompts":
        return KnowledgeLabelPrompts(super().to(device), self.knowledge.to(device))


class TCPPromptLearner(CoOpPromptLearner):
    """CoOp's shared context plus TCP's textual knowledge embedding.

    The embedding maps a class's hand-crafted text feature [d] through Linear(d, d/4) ->
    QuickGELU -> Linear(d/4, n_ctx * ctx_dim) to n_ctx class-aware tokens, in CLIP's dtype.
    TCP's code fixes the token count at four (its context length); here it is the context
    length, so that the tokens cover exactly the context positions they replace.
    """

    def __init__(self, tcp_cfg, classnames: Sequence[str], clip_model: nn.Module,
                 name_template: str = "{}."):
        super().__init__(tcp_cfg, classnames, clip_model, name_template)
        if self.ctx.dim() != 2 or self.class_token_position != "end":
            raise ValueError("TCP learns one shared context followed by the class name")
        embed_dim = clip_model.text_projection.shape[1]
        ctx_dim = self.ctx.shape[-1]

        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(embed_dim, embed_dim // 4)),
            ("gelu", QuickGELU()),
            ("linear2", nn.Linear(embed_dim // 4, self.n_ctx * ctx_dim)),
        ])).to(clip_dtype(clip_model))

    def class_tokens(self, knowledge: torch.Tensor) -> torch.Tensor:
        """Class-aware tokens [n, n_ctx, ctx_dim] from normalised knowledge features [n, d]."""
        tokens = self.meta_net(knowledge)
        return tokens.view(len(knowledge), self.n_ctx, -1)


class TCPCLIP(KgCoOpCLIP):
    """KgCoOp's model whose text encoder takes class-aware tokens at layer ``KNOWLEDGE_LAYER``.

    At the input of that (0-based) transformer layer, positions 1..n_ctx (the context) are
    overwritten by the class-aware tokens of each prompt's own label; the layers before it see
    the learned context. The knowledge features are both the tokens' source and the target of
    the consistency term.
    """

    def __init__(self, tcp_cfg, classnames: Sequence[str], clip_model: nn.Module,
                 knowledge_template: str, name_template: str = "{}."):
        learner = TCPPromptLearner(tcp_cfg, classnames, clip_model, name_template)
        super().__init__(tcp_cfg, classnames, clip_model, knowledge_template,
                         prompt_learner=learner)
        self.knowledge_layer = tcp_cfg.KNOWLEDGE_LAYER
        num_layers = self.text_encoder.num_layers
        if not 1 <= self.knowledge_layer < num_layers:
            raise ValueError(f"TRAINER.TCP.KNOWLEDGE_LAYER must be in [1, {num_layers - 1}] "
                             f"for a text encoder of {num_layers} layers, got "
                             f"{self.knowledge_layer}")

    @property
    def class_prompts(self) -> KnowledgeLabelPrompts:
        return KnowledgeLabelPrompts(self.prompt_learner.class_prompts, self.class_knowledge)

    def label_prompts(self, names: Sequence[str]) -> KnowledgeLabelPrompts:
        """Fixed prompt pieces and frozen knowledge features for arbitrary label names."""
        return KnowledgeLabelPrompts(super().label_prompts(names), self.knowledge_features(names))

    def label_text_features(self, labels: Optional[KnowledgeLabelPrompts] = None
                            ) -> torch.Tensor:
        """Tuned text features (unnormalised) of ``labels`` (default: the class names)."""
        labels = self.class_prompts if labels is None else labels
        learner = self.prompt_learner
        prompts = learner.assemble(labels)
        deep_prompts = [None] * (self.knowledge_layer - 1)
        deep_prompts.append(learner.class_tokens(labels.knowledge))
        return self.text_encoder(prompts, labels.tokenized, deep_prompts=deep_prompts)


@register_trainer
class TCP(KgCoOp):
    """Textual-based Class-aware Prompt tuning: CE + W * (1 - mean_c cos(t_c, t_c^clip))."""

    CFG_NODE = "TCP"

    def build_clip_model(self, classnames, clip_model):
        clip_model.to(self.device)  # the hand-crafted prompts are encoded while building
        knowledge, name_template = tcp_templates(self.cfg.DATASET.NAME)
        return TCPCLIP(self.trainer_cfg, classnames, clip_model, knowledge, name_template)

    def build_model(self) -> None:
        super().build_model()
        # TCP's instructions change the eps of Dassl's "adam" (only) to 1e-3 against fp16 NaNs.
        if self.cfg.OPTIM.NAME == "adam":
            for group in self.optim.param_groups:
                group["eps"] = self.trainer_cfg.ADAM_EPS
