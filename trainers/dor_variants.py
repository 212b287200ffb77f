"""DOR variants of the prompt learners: the learner unchanged, plus the outlier regulariser.

Each variant reads its learner's own config node and ``TRAINER.DOR``; nothing else differs,
so ``--trainer XDOR`` is the only change to a command line that ran ``X``.
"""
import torch

from dor.regularizer import DORMixin
from toolbox import register_trainer

from .base import unwrap
from .cocoop import CoCoOp
from .coop import CoOp
from .kgcoop import KgCoOp
from .maple import MaPLe
from .promptsrc import PromptSRC
from .tcp import TCP


@register_trainer
class CoOpDOR(DORMixin, CoOp):
    """CoOp + Dynamic Outlier Regularization."""

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        if cfg.TRAINER.COOP.CSC:
            raise ValueError("CoOpDOR needs a context shared by all labels: class-specific "
                             "contexts (TRAINER.COOP.CSC True) have none for outlier labels")


@register_trainer
class CoCoOpDOR(DORMixin, CoCoOp):
    """CoCoOp + DOR, with the outliers' prompts conditioned on the training images.

    CoCoOp's context depends on the image, so an outlier has one tuned feature per image. The
    regulariser averages 1 − cos(f(o | x), f_zeroshot(o)) over the outliers and over the first
    ``DOR_IMAGES`` images of the batch (CoCoOp trains with batch size 1), which bounds the
    extra cost at ``DOR_IMAGES × NUM_OUTLIERS`` prompts per step. Gradients reach both the
    context and the meta-network.
    """

    DOR_IMAGES = 4

    def compute_loss(self, image, label):
        self.dor_images = image[:self.DOR_IMAGES]
        return super().compute_loss(image, label)

    def outlier_text_features(self, prompts) -> torch.Tensor:
        model = unwrap(self.model)
        with torch.no_grad():
            image_features = model.encode_image(self.dor_images)
        bias = model.context_bias(image_features)
        return model.label_text_features(prompts, bias=bias)


@register_trainer
class KgCoOpDOR(DORMixin, KgCoOp):
    """KgCoOp + DOR: its knowledge term on the base classes and DOR's on the outliers."""


@register_trainer
class MaPLeDOR(DORMixin, MaPLe):
    """MaPLe + DOR: outliers pass through the same deep text prompts as the class names."""


@register_trainer
class PromptSRCDOR(DORMixin, PromptSRC):
    """PromptSRC + DOR: outliers pass through the same deep text prompts as the class names."""


@register_trainer
class TCPDOR(DORMixin, TCP):
    """TCP + DOR: each outlier gets class-aware tokens from its own hand-crafted features."""
