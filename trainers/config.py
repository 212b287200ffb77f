"""The project's configuration keys, added to Dassl's default tree by ``extend_cfg``.

Defaults follow the CoOp family's own ``extend_cfg`` functions; keys that are new here say
why they exist. ``extend_cfg`` only adds what is missing, so a Dassl-based repository can call
it after its own ``extend_cfg`` without its values being replaced.
"""
from yacs.config import CfgNode as CN


def _project_keys() -> CN:
    cfg = CN()

    cfg.DATASET = CN()
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new (CoOp's base-to-new protocol)

    cfg.MODEL = CN()
    cfg.MODEL.BACKBONE = CN()
    cfg.MODEL.BACKBONE.PATH = ""  # local OpenAI .pt or open_clip checkpoint (overrides download)
    cfg.MODEL.BACKBONE.TAG = ""  # open_clip pretrained tag; CoOp names default to "openai"

    cfg.TRAINER = CN()
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.TRAINER.COOP.CSC = False
    cfg.TRAINER.COOP.CTX_INIT = ""
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16, fp32 or amp; CPU runs always use fp32
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # end, middle or front

    cfg.TRAINER.ZSCLIP = CN()
    cfg.TRAINER.ZSCLIP.PREC = "fp16"  # zero-shot CLIP keeps OpenAI's fp16 weights on CUDA

    cfg.TEST = CN()
    cfg.TEST.CALIBRATION = CN()
    cfg.TEST.CALIBRATION.NUM_BINS = 10  # equal-width ECE bins, as in the DOR authors' code
    return cfg


def _merge_missing(target: CN, source: CN) -> None:
    for key, value in source.items():
        if key not in target:
            target[key] = value.clone() if isinstance(value, CN) else value
        elif isinstance(value, CN) and isinstance(target[key], CN):
            _merge_missing(target[key], value)


def extend_cfg(cfg: CN) -> CN:
    """Add every project key that ``cfg`` lacks, with its default; returns ``cfg``."""
    _merge_missing(cfg, _project_keys())
    return cfg
