"""PromptSRC: independent deep prompts in both CLIP towers, regulated by the frozen CLIP.

Khattak et al., "Self-regulating Prompts: Foundational Model Adaptation without Forgetting",
ICCV 2023.

Text and vision prompts are learned independently (no coupling). Three self-regulating terms
keep the prompted model near zero-shot CLIP: an L1 distance between prompted and frozen text
features (frozen: averaged over 60 ImageNet templates), an L1 distance between prompted and
frozen image features, and a KL divergence from the frozen logits. Gaussian Prompt
Aggregation (GPA) replaces the final prompts by a Gaussian-weighted average over epochs.
"""
import logging
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from clip_backbone.prompted import encode_texts
from clip_backbone.templates import fill
from toolbox import compute_accuracy, register_trainer

from .base import CLIPTrainer, unwrap
from .maple import DeepPromptedCLIP, PhrasePromptLearner, check_depth, normal_prompts

logger = logging.getLogger(__name__)

# PromptSRC averages its frozen text features over the first 60 of the 80 ImageNet templates
# of CLIP's prompt-engineering notebook (its list moves "a photo of a {}." to the front, which
# does not change the average).
PROMPTSRC_TEMPLATES: List[str] = [template("{}") for template in OPENAI_IMAGENET_TEMPLATES[:60]]

GPA_STATES_FILE = "gpa_states.pth.tar"


class VLPromptLearner(PhrasePromptLearner):
    """PromptSRC's learnable parts: independent text and vision prompts.

    ``ctx`` (CLIP's dtype) is the text input context; ``deep_text_ctx[i]`` replaces it at the
    input of text layer i+1; ``vision_ctx`` is appended to the image tokens and
    ``deep_vision_ctx[i]`` replaces it at the input of vision layer i+1. Prompts other than
    ``ctx`` are fp32, drawn from N(0, 0.02²), and cast to the activations' dtype where they
    enter the transformers (upstream casts them to fp16 even in fp32 runs).
    Upstream keeps all but ``ctx`` inside its forked CLIP layers; here they all live in the
    learner, so the registered module holds every learnable parameter and nothing else.
    """

    def __init__(self, src_cfg, classnames: Sequence[str], clip_model: nn.Module):
        depth_text, depth_vision = src_cfg.PROMPT_DEPTH_TEXT, src_cfg.PROMPT_DEPTH_VISION
        check_depth(depth_text, len(clip_model.transformer.resblocks),
                    "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "text", minimum=1)
        check_depth(depth_vision, len(clip_model.visual.transformer.resblocks),
                    "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "vision", minimum=0)
        if depth_vision > 0 and src_cfg.N_CTX_VISION < 1:
            raise ValueError("TRAINER.PROMPTSRC.N_CTX_VISION must be at least 1 when "
                             "PROMPT_DEPTH_VISION > 0")
        super().__init__(classnames, clip_model, src_cfg.N_CTX_TEXT, src_cfg.CTX_INIT)

        self.deep_text_ctx = normal_prompts(depth_text - 1, self.n_ctx, self.text_width)
        if depth_vision > 0:
            self.vision_ctx = normal_prompts(1, src_cfg.N_CTX_VISION, self.vision_width)[0]
        else:
            self.vision_ctx = None
        self.deep_vision_ctx = normal_prompts(max(depth_vision - 1, 0), src_cfg.N_CTX_VISION,
                                              self.vision_width)
        logger.info("PromptSRC: %d text tokens in text layers 0..%d; %d vision tokens in "
                    "vision layers %s", self.n_ctx, depth_text - 1, src_cfg.N_CTX_VISION,
                    f"0..{depth_vision - 1}" if depth_vision else "(none)")

    def text_deep_prompts(self) -> List[torch.Tensor]:
        return list(self.deep_text_ctx)

    def vision_prompts(self) -> Tuple[Optional[torch.Tensor], List[torch.Tensor]]:
        return self.vision_ctx, list(self.deep_vision_ctx)


class PromptSRCCLIP(DeepPromptedCLIP):
    """CLIP prompted by PromptSRC's learner; the frozen targets come from the same CLIP."""

    def __init__(self, src_cfg, classnames: Sequence[str], clip_model: nn.Module):
        super().__init__(clip_model)
        self.prompt_learner = VLPromptLearner(src_cfg, classnames, clip_model)
        # Set by PromptSRC.frozen_text_targets() when training starts (not saved).
        self.register_buffer("frozen_text_features", None, persistent=False)


@torch.no_grad()
def template_text_features(clip_model: nn.Module, classnames: Sequence[str],
                           templates: Sequence[str] = PROMPTSRC_TEMPLATES,
                           device: Optional[torch.device] = None) -> torch.Tensor:
    """Frozen CLIP text features per class [n_cls, d] (fp32, normalised): the mean of the
    unnormalised features of every template, then normalised, as PromptSRC computes them."""
    texts = [fill(template, name) for name in classnames for template in templates]
    features = encode_texts(clip_model, texts, device=device)
    features = features.view(len(classnames), len(templates), -1).mean(dim=1)
    return F.normalize(features, dim=-1)


def self_regulating_losses(logits: torch.Tensor, frozen_logits: torch.Tensor,
                           text_features: torch.Tensor, frozen_text_features: torch.Tensor,
                           image_features: torch.Tensor, frozen_image_features: torch.Tensor,
                           text_weight: float, image_weight: float
                           ) -> "OrderedDict[str, torch.Tensor]":
    """PromptSRC's three regularisers, weighted, computed in fp32 (features normalised).

    ``loss_text_l1`` = text_weight · mean |t − t_frozen|; ``loss_image_l1`` = image_weight ·
    mean |f − f_frozen|; ``loss_kl`` = KL(p_frozen ‖ p) summed and divided by the number of
    logits, as upstream.
    """
    loss_text = F.l1_loss(text_features.float(), frozen_text_features.float())
    loss_image = F.l1_loss(image_features.float(), frozen_image_features.float())
    loss_kl = F.kl_div(F.log_softmax(logits.float(), dim=1),
                       F.log_softmax(frozen_logits.float(), dim=1),
                       reduction="sum", log_target=True) / logits.numel()
    return OrderedDict(loss_text_l1=text_weight * loss_text,
                       loss_image_l1=image_weight * loss_image,
                       loss_kl=loss_kl)


def gpa_weights(max_epoch: int, mean: float, std: float) -> List[float]:
    """Normalised Gaussian weights of epochs 1..max_epoch (pdf of N(mean, std²) at each epoch).

    Computed as a softmax of the log-density, which equals the normalised pdf and cannot
    underflow to 0/0 when every epoch lies far from the mean.
    """
    if std <= 0:
        raise ValueError(f"TRAINER.PROMPTSRC.GPA_STD must be positive, got {std}")
    log_density = torch.tensor([-0.5 * ((epoch - mean) / std) ** 2
                                for epoch in range(1, max_epoch + 1)], dtype=torch.float64)
    return torch.softmax(log_density, dim=0).tolist()


class GaussianPromptAggregation:
    """The learnable state after each epoch, combined with the Gaussian weights at the end.

    States are kept per epoch (fp32, CPU; a few MB for ViT-B/16) rather than as a running sum,
    so an aggregate can be rebuilt exactly after resuming even when MAX_EPOCH or the GPA
    settings changed.
    """

    def __init__(self, weights: Sequence[float]):
        self.weights = list(weights)
        self.states: "OrderedDict[int, Dict[str, torch.Tensor]]" = OrderedDict()

    def add(self, epoch: int, state: Dict[str, torch.Tensor]) -> None:
        """Record the state after ``epoch`` (1-based)."""
        self.states[epoch] = {k: v.detach().float().cpu().clone() for k, v in state.items()}

    def average(self) -> Dict[str, torch.Tensor]:
        """Σ_e w_e θ_e / Σ_e w_e over the recorded epochs (the weights sum to 1 when every
        epoch is recorded)."""
        if not self.states:
            raise RuntimeError("Gaussian prompt aggregation has no recorded epoch")
        weights = {epoch: self.weights[epoch - 1] for epoch in self.states}
        total = sum(weights.values())
        average = {}
        for epoch, state in self.states.items():
            for key, value in state.items():
                term = value.double() * (weights[epoch] / total)
                average[key] = term if key not in average else average[key] + term
        return average

    def state_dict(self) -> dict:
        """Plain lists, ints and tensors: readable with ``torch.load(weights_only=True)``."""
        return {"epochs": list(self.states), "states": list(self.states.values())}

    def load_state_dict(self, state: dict, up_to_epoch: int) -> List[int]:
        """Restore the states of epochs ≤ ``up_to_epoch``; returns the epochs restored."""
        self.states = OrderedDict((epoch, values) for epoch, values
                                  in zip(state["epochs"], state["states"])
                                  if epoch <= up_to_epoch)
        return list(self.states)


@register_trainer
class PromptSRC(CLIPTrainer):
    """PromptSRC: cross-entropy plus the self-regulating terms, then GPA over the epochs.

    The frozen image features come from the same CLIP image tower run without prompts, in the
    run's precision (upstream keeps a second, always-fp16 copy of it). Only the prompt learner
    is registered, so checkpoints hold no frozen CLIP weight.

    Gaussian Prompt Aggregation: after each epoch the learnable state is recorded; after the
    last epoch the Gaussian-weighted average of the recorded states is loaded before the final
    checkpoint is written. Each checkpoint is accompanied by ``gpa_states.pth.tar`` (the
    per-epoch states so far) in the same folder. On resume the states of the epochs up to the
    resumed one are read back from it, so the final aggregate is the same as without the
    interruption; if it is missing, the aggregate covers only the epochs trained after the
    resume, their weights renormalised to sum to 1, and a warning says so. (Upstream restores
    nothing on resume.)
    """

    CFG_NODE = "PROMPTSRC"
    MODEL_NAME = "VLPromptLearner"

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        src = cfg.TRAINER.PROMPTSRC
        if src.PROMPT_DEPTH_TEXT < 1:
            raise ValueError("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT must be at least 1")
        if src.PROMPT_DEPTH_VISION < 0:
            raise ValueError("TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION must be at least 0")
        if src.N_CTX_TEXT < 1:
            raise ValueError("TRAINER.PROMPTSRC.N_CTX_TEXT must be at least 1")
        if src.TEXT_LOSS_WEIGHT < 0 or src.IMAGE_LOSS_WEIGHT < 0:
            raise ValueError("TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT and IMAGE_LOSS_WEIGHT must be "
                             "non-negative")
        gpa_weights(cfg.OPTIM.MAX_EPOCH, src.GPA_MEAN, src.GPA_STD)  # validates GPA_STD

    def build_clip_model(self, classnames, clip_model):
        return PromptSRCCLIP(self.cfg.TRAINER.PROMPTSRC, classnames, clip_model)

    def build_model(self) -> None:
        super().build_model()
        src = self.cfg.TRAINER.PROMPTSRC
        self.gpa = GaussianPromptAggregation(
            gpa_weights(self.cfg.OPTIM.MAX_EPOCH, src.GPA_MEAN, src.GPA_STD))

    # ------------------------------------------------------------------ losses

    def frozen_text_targets(self) -> torch.Tensor:
        """Template-averaged frozen text features of the classes, computed on first use.

        They come from this run's CLIP, so with PREC fp16 they are encoded with the fp16
        weights, where upstream encodes them with an fp32 copy of CLIP; evaluation-only runs
        never compute them.
        """
        model = unwrap(self.model)
        if model.frozen_text_features is None:
            clip_model = self.clip_info.model.to(self.device)
            with torch.autocast(self.device.type, enabled=False):
                features = template_text_features(clip_model, model.prompt_learner.classnames,
                                                  device=self.device)
            model.frozen_text_features = features.to(self.device)
        return model.frozen_text_features

    def compute_loss(self, image, label):
        """Cross-entropy + the three self-regulating terms; the logged terms sum to ``loss``.

        Computed through the unwrapped model, so under ``nn.DataParallel`` this step runs on
        one device.
        """
        model = unwrap(self.model)
        src = self.cfg.TRAINER.PROMPTSRC
        frozen_text = self.frozen_text_targets()

        text_features = F.normalize(model.label_text_features(), dim=-1)
        image_features = F.normalize(model.image_features(image), dim=-1)
        with torch.no_grad():
            frozen_image = F.normalize(model.frozen_image_features(image), dim=-1)

        scale = model.logit_scale.exp()
        logits = scale * image_features @ text_features.t()
        frozen_logits = scale.float() * frozen_image.float() @ frozen_text.t()
        loss_ce = F.cross_entropy(logits, label)
        terms = self_regulating_losses(logits, frozen_logits, text_features, frozen_text,
                                       image_features, frozen_image, src.TEXT_LOSS_WEIGHT,
                                       src.IMAGE_LOSS_WEIGHT)
        loss = loss_ce + sum(terms.values())

        summary = OrderedDict(loss=loss.item(), loss_ce=loss_ce.item())
        summary.update((name, value.item()) for name, value in terms.items())
        summary["acc"] = compute_accuracy(logits, label)[0].item()
        return loss, summary

    # ------------------------------------------------------------------ GPA

    def learnable_state(self) -> Dict[str, torch.Tensor]:
        return {name: param for name, param in self.learnable_module().named_parameters()
                if param.requires_grad}

    @torch.no_grad()
    def load_learnable_state(self, state: Dict[str, torch.Tensor]) -> None:
        for name, param in self.learnable_state().items():
            param.copy_(state[name].to(param.dtype))

    def before_train(self) -> None:
        super().before_train()
        self.restore_gpa_states(self.cfg.RESUME or self.cfg.OUTPUT_DIR)

    def restore_gpa_states(self, directory: str) -> None:
        if self.start_epoch == 0 or self.start_epoch >= self.max_epoch:
            return
        path = osp.join(directory, self.MODEL_NAME, GPA_STATES_FILE)
        restored = []
        if osp.isfile(path):
            state = torch.load(path, map_location="cpu", weights_only=True)
            restored = self.gpa.load_state_dict(state, up_to_epoch=self.start_epoch)
        if restored == list(range(1, self.start_epoch + 1)):
            logger.info("Gaussian prompt aggregation: restored the states of epochs 1..%d from "
                        '"%s"', self.start_epoch, path)
        else:
            logger.warning("Gaussian prompt aggregation: no state for epochs 1..%d in \"%s\" "
                           "(found %s); the final aggregate leaves the missing epochs out and "
                           "renormalises the weights of the others", self.start_epoch, path,
                           restored or "none")

    def after_epoch(self) -> None:
        epoch = self.epoch + 1
        self.gpa.add(epoch, self.learnable_state())
        if epoch == self.max_epoch:
            epochs = list(self.gpa.states)
            logger.info("Gaussian prompt aggregation: loading the weighted average of epochs "
                        "%s (weights %s) for the final model", epochs,
                        ", ".join(f"{self.gpa.weights[e - 1]:.3g}" for e in epochs))
            self.load_learnable_state(self.gpa.average())
        super().after_epoch()

    def save_model(self, epoch: int, directory: str, is_best: bool = False,
                   val_result: Optional[float] = None, model_name: str = "") -> None:
        super().save_model(epoch, directory, is_best=is_best, val_result=val_result,
                           model_name=model_name)
        if getattr(self, "gpa", None) is None or not self.gpa.states:
            return
        path = osp.join(directory, self.MODEL_NAME, GPA_STATES_FILE)
        torch.save(self.gpa.state_dict(), path + ".tmp")
        os.replace(path + ".tmp", path)

