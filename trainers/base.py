"""Machinery shared by every CLIP trainer: loading CLIP, precision, the training step,
checkpoint loading across label spaces, and the calibration-aware test loop."""
import logging
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from calibration.dispersion import dispersion_ratio, mean_pairwise_cosine_distance
from calibration.metrics import BinStats, calibration_metrics, format_metric, reliability_bins
from calibration.records import (config_hash, datum_list_hash, project_version,
                                 reliability_filename, save_predictions, sha256_file,
                                 write_results)
from clip_backbone.loader import LoadedCLIP, input_resolution, load_clip_to_cpu
from clip_backbone.prompted import encode_labels
from clip_backbone.templates import zeroshot_template
from toolbox import (BACKEND, TrainerX, build_lr_scheduler, build_optimizer, load_checkpoint,
                     load_pretrained_weights)

logger = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32", "amp")


class NonFiniteLossError(FloatingPointError):
    """A training loss that became NaN or infinite: the run stops instead of training on."""


class CheckpointMismatchError(ValueError):
    """A checkpoint whose parameters do not fit the model being evaluated."""


def split_file_hash(path: Optional[str]) -> Optional[str]:
    """SHA-256 of a JSON split file. ImageNet's pickled split holds absolute image paths, so
    its hash would differ between machines: None there (the list hashes identify the data)."""
    return sha256_file(path) if path and path.endswith(".json") else None


def missing_model_message(directory: str, name: str, model_path: str) -> str:
    """Why ``model_path`` cannot be loaded, with the checkpoints that do exist there."""
    if not osp.isdir(directory):
        return f'The model directory "{directory}" does not exist'
    folder = osp.join(directory, name)
    found = sorted(f for f in os.listdir(folder) if f.startswith("model")) \
        if osp.isdir(folder) else []
    if found:
        return (f'No model at "{model_path}"; {folder} holds {", ".join(found)} '
                "(choose one with --load-epoch)")
    others = sorted(d for d in os.listdir(directory) if osp.isdir(osp.join(directory, d))
                    and any(f.startswith("model") for f in os.listdir(osp.join(directory, d))))
    trained_by = f" (it holds checkpoints of {', '.join(others)}: another trainer's)" \
        if others else ""
    return f'No model at "{model_path}": "{directory}" has no checkpoint of {name}{trained_by}'


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``nn.DataParallel`` (or the module itself)."""
    return model.module if isinstance(model, nn.DataParallel) else model


class CLIPTrainer(TrainerX):
    """Base of all trainers here. Subclasses set ``CFG_NODE`` and implement ``build_clip_model``.

    Trainers that learn something also implement ``compute_loss`` and name the module they
    register (``MODEL_NAME``) through ``learnable_module``.
    """

    CFG_NODE = "COOP"  # cfg.TRAINER.<CFG_NODE> holds PREC (and the learner's settings)
    MODEL_NAME = "prompt_learner"
    # State-dict entries that encode the class names of the run that saved them.
    NON_LEARNED_KEYS: Tuple[str, ...] = ("token_prefix", "token_suffix")

    # ------------------------------------------------------------------ configuration

    @property
    def trainer_cfg(self):
        return self.cfg.TRAINER[self.CFG_NODE]

    def check_cfg(self, cfg) -> None:
        prec = cfg.TRAINER[self.CFG_NODE].PREC
        if prec not in PRECISIONS:
            raise ValueError(f"TRAINER.{self.CFG_NODE}.PREC must be one of {PRECISIONS}, "
                             f'got "{prec}"')

    @property
    def precision(self) -> str:
        """The precision actually used: fp16 and amp need CUDA, so a CPU run uses fp32."""
        prec = self.trainer_cfg.PREC
        return prec if self.device.type == "cuda" else "fp32"

    # ------------------------------------------------------------------ model building

    def load_clip(self) -> LoadedCLIP:
        """Load the frozen CLIP of ``MODEL.BACKBONE`` in this run's precision."""
        logger.info("Loading CLIP (backbone: %s)", self.cfg.MODEL.BACKBONE.NAME)
        loaded = load_clip_to_cpu(self.cfg)

        resolution = input_resolution(loaded.model)
        if tuple(self.cfg.INPUT.SIZE) != (resolution, resolution):
            raise ValueError(f"INPUT.SIZE {tuple(self.cfg.INPUT.SIZE)} must equal the input "
                             f"resolution of {loaded.backbone} ({resolution}, {resolution})")

        if self.trainer_cfg.PREC != self.precision:
            logger.info("PREC %s needs CUDA; running in fp32 on %s", self.trainer_cfg.PREC,
                        self.device.type)
        if self.precision in ("fp32", "amp"):
            loaded.model.float()
        self.clip_info = loaded
        return loaded

    def build_clip_model(self, classnames, clip_model: nn.Module) -> nn.Module:
        """The full model (frozen CLIP + learnable parts) for these class names."""
        raise NotImplementedError

    def learnable_module(self) -> Optional[nn.Module]:
        """The module registered, saved and given to the optimizer (None: nothing to learn)."""
        return unwrap(self.model).prompt_learner

    def is_learnable(self, name: str) -> bool:
        """Whether parameter ``name`` of the full model is trained."""
        return name.startswith("prompt_learner.")

    def build_model(self) -> None:
        self.model_epochs = 0  # epochs of training behind the current weights
        classnames = self.dm.dataset.classnames
        clip_model = self.load_clip().model

        logger.info("Building %s", type(self).__name__)
        self.model = self.build_clip_model(classnames, clip_model)
        for name, param in self.model.named_parameters():
            param.requires_grad_(self.is_learnable(name))

        module = self.learnable_module()
        if self.cfg.MODEL.INIT_WEIGHTS and module is not None:
            load_pretrained_weights(module, self.cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)

        learnable = [n for n, p in self.model.named_parameters() if p.requires_grad]
        logger.info("Learnable parameters (%s): %s",
                    f"{sum(p.numel() for p in self.model.parameters() if p.requires_grad):,}",
                    ", ".join(learnable))
        if module is not None:
            self.optim = build_optimizer(module, self.cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
            self.register_model(self.MODEL_NAME, module, self.optim, self.sched)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None

        if torch.cuda.device_count() > 1 and self.device.type == "cuda":
            logger.info("Multiple GPUs detected (n_gpus=%d), using all of them",
                        torch.cuda.device_count())
            self.model = nn.DataParallel(self.model)

    # ------------------------------------------------------------------ training

    def compute_loss(self, image: torch.Tensor, label: torch.Tensor
                     ) -> Tuple[torch.Tensor, "OrderedDict[str, float]"]:
        """The training loss of one batch and the scalars to log (``loss`` first)."""
        raise NotImplementedError

    def forward_backward(self, batch) -> Dict[str, float]:
        image, label = self.parse_batch_train(batch)

        if self.precision == "amp":
            with torch.autocast("cuda"):
                loss, summary = self.compute_loss(image, label)
            self.check_finite(loss, summary)
            self.optim.zero_grad()
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            loss, summary = self.compute_loss(image, label)
            self.check_finite(loss, summary)
            self.model_backward_and_update(loss)

        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def check_finite(self, loss: torch.Tensor, summary: Dict[str, float]) -> None:
        """Stop at the first NaN or infinite loss, naming the step, the terms and likely causes."""
        if bool(torch.isfinite(loss).all()):
            return
        terms = ", ".join(f"{k} {v:.4g}" for k, v in summary.items())
        step = self.epoch * self.num_batches + self.batch_idx + 1
        hint = ("PREC fp16 overflows easily: try TRAINER.{node}.PREC amp or fp32"
                if self.precision == "fp16" else
                "the learning rate may be too high (OPTIM.LR {lr:g}), or an input holds NaN")
        raise NonFiniteLossError(
            f"The training loss is not finite at epoch {self.epoch + 1}, batch "
            f"{self.batch_idx + 1}/{self.num_batches} (step {step}): {terms}. Hint: "
            + hint.format(node=self.CFG_NODE, lr=self.cfg.OPTIM.LR)
            + ". Checkpoints of earlier epochs are kept; nothing was trained on this loss.")

    def before_train(self) -> None:
        super().before_train()
        self.model_epochs = self.start_epoch

    def after_epoch(self) -> None:
        self.model_epochs = self.epoch + 1
        super().after_epoch()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_extras(self) -> dict:
        """Which trainer and backbone wrote a checkpoint, to explain a mismatch on loading."""
        extras = super().checkpoint_extras() if hasattr(super(), "checkpoint_extras") else {}
        extras.update(trainer=self.cfg.TRAINER.NAME, backbone=self.cfg.MODEL.BACKBONE.NAME)
        return extras

    def check_fits(self, name: str, model_path: str, checkpoint: dict, state_dict: dict) -> None:
        """Refuse a checkpoint whose parameter names or shapes differ from the model's,
        naming each difference and the trainer and backbone that wrote the checkpoint."""
        own = {k: v for k, v in self._models[name].state_dict().items()
               if k.split(".")[-1] not in self.NON_LEARNED_KEYS}
        problems = [f"{k}: {list(v.shape)} in the checkpoint, {list(own[k].shape)} here"
                    for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
        problems += [f"{k}: missing from the checkpoint" for k in own if k not in state_dict]
        problems += [f"{k}: not a parameter of {name}" for k in state_dict if k not in own]
        if not problems:
            return

        extras = checkpoint.get("extras") or {}
        origin = (f" (written by {extras['trainer']} with backbone {extras['backbone']})"
                  if "trainer" in extras else "")
        here = f"{self.cfg.TRAINER.NAME} with backbone {self.cfg.MODEL.BACKBONE.NAME}"
        raise CheckpointMismatchError(
            f'"{model_path}"{origin} does not fit {name} of {here}: ' + "; ".join(problems))

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load learned weights, keeping this run's class-name buffers (base vs new classes)."""
        if not directory:
            logger.info("load_model() is skipped: no model directory given")
            return

        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise FileNotFoundError(missing_model_message(directory, name, model_path))

            checkpoint = load_checkpoint(model_path)
            state_dict = {k: v for k, v in checkpoint["state_dict"].items()
                          if k.split(".")[-1] not in self.NON_LEARNED_KEYS}
            self.check_fits(name, model_path, checkpoint, state_dict)
            logger.info('Loading weights to %s from "%s" (epoch = %s)', name, model_path,
                        checkpoint["epoch"])
            self.model_epochs = checkpoint["epoch"]
            self._models[name].load_state_dict(state_dict, strict=False)
            self.loaded_checkpoint = osp.abspath(model_path)

    # ------------------------------------------------------------------ evaluation

    def evaluation_split(self, split: Optional[str]):
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            return "val", self.val_loader
        return "test", self.test_loader

    @torch.no_grad()
    def predict(self, data_loader) -> Tuple[torch.Tensor, torch.Tensor]:
        """Logits (float32, CPU) and labels of every sample of ``data_loader``."""
        self.set_model_mode("eval")
        if not self.get_model_names():
            self.model.eval()
        logits, labels = [], []
        for batch in tqdm(data_loader, desc="evaluating", leave=False, disable=None):
            image, label = self.parse_batch_test(batch)
            logits.append(self.model_inference(image).float().cpu())
            labels.append(label.cpu())
        return torch.cat(logits), torch.cat(labels)

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate accuracy and calibration on ``split``; log, write tensorboard and results.

        Besides results*.json, writes the reliability diagram (``TEST.CALIBRATION.PLOT``) and
        the per-sample predictions (``TEST.SAVE_PREDICTIONS``) beside it.
        """
        split, data_loader = self.evaluation_split(split)
        logger.info("Evaluate on the *%s* set", split)
        logits, labels = self.predict(data_loader)

        self.evaluator.reset()
        self.evaluator.process(logits, labels)
        results = OrderedDict(self.evaluator.evaluate())

        probs = F.softmax(logits, dim=1).numpy()
        labels = labels.numpy()
        num_bins = self.cfg.TEST.CALIBRATION.NUM_BINS
        calibration = calibration_metrics(probs, labels, num_bins=num_bins)
        if "accuracy" in results and abs(results["accuracy"] - calibration["accuracy"]) > 1e-6:
            logger.warning("Accuracy from the logits (%.4f%%) and from the probabilities "
                           "(%.4f%%) differ: tied probabilities pick another class",
                           results["accuracy"], calibration["accuracy"])
        calibration.update(self.text_dispersion())
        for key, value in calibration.items():
            if key not in results:
                logger.info("* %s: %s", key, format_metric(key, value))
                results[key] = value

        for key, value in results.items():
            self.write_scalar(f"{split}/{key}", value, self.epoch)
        bins = reliability_bins(probs, labels, num_bins)
        self.write_results(split, results, num_samples=len(labels), reliability=bins)
        if self.cfg.TEST.SAVE_PREDICTIONS:
            save_predictions(self.cfg.OUTPUT_DIR, split, probs, labels,
                             self.dm.dataset.classnames)
        if self.cfg.TEST.CALIBRATION.PLOT:
            self.save_reliability_diagram(split, bins)
        return list(results.values())[0]

    def text_dispersion(self) -> Dict[str, float]:
        """Dispersion of the class text features, zero-shot CLIP's, and their ratio.

        The tuned features come from the model's ``label_text_features()`` (None or absent:
        nothing is reported); the zero-shot ones from the frozen CLIP with the dataset's
        zero-shot template. See calibration/dispersion.py for the definition.
        """
        model = unwrap(self.model)
        features_of = getattr(model, "label_text_features", None)
        features = features_of() if callable(features_of) else None
        if features is None:
            logger.info("Text dispersion skipped: %s provides no class text features",
                        type(model).__name__)
            return {}
        tuned = mean_pairwise_cosine_distance(features)
        if tuned is None:
            logger.info("Text dispersion skipped: it needs at least two classes")
            return {}

        classnames = tuple(self.dm.dataset.classnames)
        template = zeroshot_template(self.cfg.DATASET.NAME)
        cache = self.__dict__.setdefault("_zeroshot_dispersion", {})
        if (classnames, template) not in cache:
            zeroshot = encode_labels(self.clip_info.model, classnames, template,
                                     device=self.device)
            cache[(classnames, template)] = mean_pairwise_cosine_distance(zeroshot)
        zeroshot = cache[(classnames, template)]

        dispersion = OrderedDict(text_dispersion=tuned, text_dispersion_zeroshot=zeroshot)
        ratio = dispersion_ratio(tuned, zeroshot)
        if ratio is not None:
            dispersion["text_dispersion_ratio"] = ratio
        return dispersion

    def save_reliability_diagram(self, split: str, bins) -> str:
        """Draw the reliability diagram of this evaluation beside its results file."""
        from calibration.reliability import save_reliability_diagram

        classes = {"base": "base classes", "new": "new classes"}.get(
            self.cfg.DATASET.SUBSAMPLE_CLASSES, "all classes")
        title = f"{self.cfg.DATASET.NAME} · {self.cfg.TRAINER.NAME} · {classes} ({split})"
        path = osp.join(self.cfg.OUTPUT_DIR, reliability_filename(split))
        save_reliability_diagram(bins, path, title)
        logger.info("Reliability diagram written to %s", path)
        return path

    def provenance(self) -> dict:
        """What identifies this run's numbers (see the README's section on results.json)."""
        dataset = self.dm.dataset
        return {
            "trainer": self.cfg.TRAINER.NAME,
            "dataset": self.cfg.DATASET.NAME,
            "backbone": self.cfg.MODEL.BACKBONE.NAME,
            "weights_id": self.clip_info.weights_id,
            "seed": self.cfg.SEED,
            "num_shots": self.cfg.DATASET.NUM_SHOTS,
            "subsample_classes": self.cfg.DATASET.SUBSAMPLE_CLASSES,
            "config_sha256": config_hash(self.cfg),
            "split_file_sha256": split_file_hash(getattr(dataset, "split_path", None)),
            "train_list_sha256": datum_list_hash(dataset.train_x, self.cfg.DATASET.ROOT),
            "test_list_sha256": datum_list_hash(dataset.test, self.cfg.DATASET.ROOT),
            "project_version": project_version(),
            "toolbox": BACKEND,
            "skipped_images": len(getattr(dataset, "skipped_images", ())),
            "evaluated_checkpoint": getattr(self, "loaded_checkpoint", None),
        }

    def write_results(self, split: str, metrics: Dict[str, float], num_samples: int,
                      reliability: Optional[BinStats] = None) -> None:
        """Write results*.json: metrics, the reliability bins behind ECE, and provenance."""
        record = {
            "split": split,
            "num_classes": self.num_classes,
            "num_samples": num_samples,
            "classnames": list(self.dm.dataset.classnames),
            "epoch": self.model_epochs,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "provenance": self.provenance(),
        }
        if reliability is not None:
            record["reliability"] = reliability.to_json()
        write_results(self.cfg.OUTPUT_DIR, split, record)
