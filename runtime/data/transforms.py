"""Image transforms selected by name from ``INPUT.TRANSFORMS``, in Dassl's order.

The CoOp family uses ``random_resized_crop``, ``random_flip`` and ``normalize`` for training
and an implicit resize + center crop for testing. The automatic augmentation policies map to
torchvision's implementations, whose magnitudes differ slightly from Dassl's bundled copies;
``randaugment_fixmatch`` and ``randaugment2`` exist only in Dassl (run with DOR_TOOLBOX=dassl).
"""
import logging
import random
from typing import List, Optional, Sequence

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

logger = logging.getLogger(__name__)

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

AVAI_CHOICES = [
    "random_flip", "random_resized_crop", "normalize", "instance_norm", "random_crop",
    "random_translation", "center_crop", "cutout", "imagenet_policy", "cifar10_policy",
    "svhn_policy", "randaugment", "gaussian_noise", "colorjitter", "randomgrayscale",
    "gaussian_blur",
]
DASSL_ONLY_CHOICES = ["randaugment_fixmatch", "randaugment2"]


class Random2DTranslation:
    """With probability ``p``, enlarge the image by 1/8 and crop a random window back."""

    def __init__(self, height: int, width: int, p: float = 0.5,
                 interpolation=InterpolationMode.BILINEAR):
        self.height, self.width, self.p, self.interpolation = height, width, p, interpolation

    def __call__(self, img):
        if random.uniform(0, 1) > self.p:
            return TF.resize(img, [self.height, self.width], self.interpolation)

        new_w, new_h = round(self.width * 1.125), round(self.height * 1.125)
        img = TF.resize(img, [new_h, new_w], self.interpolation)
        x1 = int(round(random.uniform(0, new_w - self.width)))
        y1 = int(round(random.uniform(0, new_h - self.height)))
        return TF.crop(img, y1, x1, self.height, self.width)


class Cutout:
    """Zero out ``n_holes`` random squares of side ``length`` in a tensor image."""

    def __init__(self, n_holes: int = 1, length: int = 16):
        self.n_holes, self.length = n_holes, length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1:]
        mask = torch.ones(h, w, dtype=img.dtype)
        for _ in range(self.n_holes):
            y, x = random.randrange(h), random.randrange(w)
            y1, y2 = max(0, y - self.length // 2), min(h, y + self.length // 2)
            x1, x2 = max(0, x - self.length // 2), min(w, x + self.length // 2)
            mask[y1:y2, x1:x2] = 0
        return img * mask


class GaussianNoise:
    """With probability ``p``, add N(mean, std²) noise to a tensor image."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5):
        self.mean, self.std, self.p = mean, std, p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn_like(img) * self.std + self.mean


class InstanceNormalization:
    """Normalise each channel of a tensor image by its own mean and standard deviation."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        flat = img.flatten(1)
        mean = flat.mean(1).view(-1, 1, 1)
        std = flat.std(1).view(-1, 1, 1)
        return (img - mean) / (std + 1e-8)


def _check_choices(choices: Sequence[str]) -> None:
    for choice in choices:
        if choice in DASSL_ONLY_CHOICES:
            raise ValueError(
                f'Transform "{choice}" exists only in Dassl; run with DOR_TOOLBOX=dassl '
                "or choose from " + ", ".join(AVAI_CHOICES)
            )
        if choice not in AVAI_CHOICES:
            raise ValueError(f'Unknown transform "{choice}"; choose from '
                             + ", ".join(AVAI_CHOICES))


def build_transform(cfg, is_train: bool = True, choices: Optional[Sequence[str]] = None):
    """Compose the train or test pipeline for ``cfg.INPUT`` (None when ``NO_TRANSFORM``)."""
    if cfg.INPUT.NO_TRANSFORM:
        logger.info("Note: no transform is applied")
        return None

    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    _check_choices(choices)
    normalize = T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    steps = _train_steps(cfg, choices, normalize) if is_train else _test_steps(
        cfg, choices, normalize)
    logger.info("Building transform_%s: %s", "train" if is_train else "test",
                ", ".join(type(step).__name__ for step in steps))
    return T.Compose(steps)


def _train_steps(cfg, choices: List[str], normalize) -> list:
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    size = cfg.INPUT.SIZE
    steps = []

    if "random_crop" not in choices and "random_resized_crop" not in choices:
        steps.append(T.Resize(size, interpolation=interp))
    if "random_translation" in choices:
        steps.append(Random2DTranslation(size[0], size[1]))
    if "random_crop" in choices:
        steps.append(T.RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        steps.append(T.RandomResizedCrop(size, scale=cfg.INPUT.RRCROP_SCALE, interpolation=interp))
    if "random_flip" in choices:
        steps.append(T.RandomHorizontalFlip())

    policies = {
        "imagenet_policy": T.AutoAugmentPolicy.IMAGENET,
        "cifar10_policy": T.AutoAugmentPolicy.CIFAR10,
        "svhn_policy": T.AutoAugmentPolicy.SVHN,
    }
    for name, policy in policies.items():
        if name in choices:
            steps.append(T.AutoAugment(policy))
    if "randaugment" in choices:
        steps.append(T.RandAugment(cfg.INPUT.RANDAUGMENT_N, cfg.INPUT.RANDAUGMENT_M))
    if "colorjitter" in choices:
        steps.append(T.ColorJitter(cfg.INPUT.COLORJITTER_B, cfg.INPUT.COLORJITTER_C,
                                   cfg.INPUT.COLORJITTER_S, cfg.INPUT.COLORJITTER_H))
    if "randomgrayscale" in choices:
        steps.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        steps.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))

    steps.append(T.ToTensor())
    if "cutout" in choices:
        steps.append(Cutout(cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN))
    if "normalize" in choices:
        steps.append(normalize)
    if "gaussian_noise" in choices:
        steps.append(GaussianNoise(cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD))
    if "instance_norm" in choices:
        steps.append(InstanceNormalization())
    return steps


def _test_steps(cfg, choices: List[str], normalize) -> list:
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    steps = [
        T.Resize(max(cfg.INPUT.SIZE), interpolation=interp),
        T.CenterCrop(cfg.INPUT.SIZE),
        T.ToTensor(),
    ]
    if "normalize" in choices:
        steps.append(normalize)
    if "instance_norm" in choices:
        steps.append(InstanceNormalization())
    return steps
