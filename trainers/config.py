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
    cfg.DATASET.SKIP_BAD_IMAGES = False  # drop listed images that are missing or unreadable

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

    cfg.TRAINER.COCOOP = CN()  # CoOp repository's extend_cfg
    cfg.TRAINER.COCOOP.N_CTX = 16
    cfg.TRAINER.COCOOP.CTX_INIT = ""
    cfg.TRAINER.COCOOP.PREC = "fp16"

    cfg.TRAINER.KGCOOP = CN()  # CLIP_Calibration's TRAINER.KGCOOP (KgCoOp reads TRAINER.COOP)
    cfg.TRAINER.KGCOOP.N_CTX = 16
    # Upstream CTX_INIT is a bool: any true value starts from "a photo of a" (the default
    # True). Here it is the phrase itself, as for CoOp; "" starts from N(0, 0.02^2).
    cfg.TRAINER.KGCOOP.CTX_INIT = "a photo of a"
    cfg.TRAINER.KGCOOP.W = 8.0  # weight of 1 - cos to the hand-crafted features (8.0 in scripts)
    cfg.TRAINER.KGCOOP.PREC = "fp16"
    cfg.TRAINER.KGCOOP.CSC = False
    cfg.TRAINER.KGCOOP.CLASS_TOKEN_POSITION = "end"

    cfg.TRAINER.TCP = CN()  # TCP reads TRAINER.COOP; values from its base-to-new script/code
    cfg.TRAINER.TCP.N_CTX = 4  # base2new_train.sh
    cfg.TRAINER.TCP.CTX_INIT = ""  # its config sets CTX_INIT False: random N(0, 0.02^2) context
    cfg.TRAINER.TCP.W = 8.0  # the loss weight TCP's model hard-codes (its TRAINER.COOP.W is unused)
    cfg.TRAINER.TCP.PREC = "fp16"
    cfg.TRAINER.TCP.KNOWLEDGE_LAYER = 8  # 0-based text layer given the class-aware tokens (fixed)
    cfg.TRAINER.TCP.ADAM_EPS = 1e-3  # TCP's README sets Dassl's Adam eps to 1e-3 (fp16 NaNs)

    cfg.TRAINER.MAPLE = CN()  # MaPLe repository's extend_cfg (train.py), same defaults
    cfg.TRAINER.MAPLE.N_CTX = 2  # text context tokens (also the number of vision prompt tokens)
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"  # its first N_CTX tokens start the context
    cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16, fp32 or amp; CPU runs always use fp32
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # J: prompts enter layers 0..J-1 of both towers (J >= 1)

    cfg.TRAINER.PROMPTSRC = CN()  # PromptSRC repository's extend_cfg (train.py), same defaults
    cfg.TRAINER.PROMPTSRC.N_CTX_VISION = 4  # prompt tokens appended to the image tokens
    cfg.TRAINER.PROMPTSRC.N_CTX_TEXT = 4  # text context tokens
    cfg.TRAINER.PROMPTSRC.CTX_INIT = "a photo of a"  # its first N_CTX_TEXT tokens start the context
    cfg.TRAINER.PROMPTSRC.PREC = "fp16"  # fp16, fp32 or amp; CPU runs always use fp32
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9  # vision layers 0..J-1 prompted (0: none)
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9  # text layers 0..J-1 prompted (J >= 1)
    cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25  # int upstream: L1 to the frozen text features
    cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10  # int upstream: L1 to frozen image features
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 15  # Gaussian prompt aggregation: mean epoch (1-based)
    cfg.TRAINER.PROMPTSRC.GPA_STD = 1  # ... and its standard deviation in epochs

    # Dynamic Outlier Regularization. The paper fixes the vocabulary, the near strategy and the
    # per-epoch resampling; the numbers it does not give are chosen here (README, "Using DOR").
    cfg.TRAINER.DOR = CN()
    cfg.TRAINER.DOR.LAMBDA = 8.0  # chosen: KgCoOp's weight for the same 1 − cos form
    cfg.TRAINER.DOR.VOCAB = "wordnet"  # "wordnet" or a text file with one label per line
    cfg.TRAINER.DOR.WORDNET_DIR = ""  # WordNet database folder (default: NLTK data, then Debian)
    cfg.TRAINER.DOR.POOL_SIZE = 5000  # chosen: the paper's top-K without a stated K
    cfg.TRAINER.DOR.STRATEGY = "near"  # near (paper), far, random or oracle (ablations)
    cfg.TRAINER.DOR.NUM_OUTLIERS = 64  # chosen: outliers drawn per epoch (or iteration)
    cfg.TRAINER.DOR.RESAMPLE = "epoch"  # epoch (paper) or iter
    cfg.TRAINER.DOR.SAMPLING = "uniform"  # uniform or similarity
    cfg.TRAINER.DOR.TEMPERATURE = 0.05  # similarity sampling: p ∝ exp(score / TEMPERATURE)
    cfg.TRAINER.DOR.CACHE_DIR = ""  # vocabulary feature cache (default ~/.cache/dor_clip)
    cfg.TRAINER.DOR.ENCODE_BATCH_SIZE = 512

    cfg.TEST = CN()
    cfg.TEST.SAVE_PREDICTIONS = False  # per-sample probabilities as predictions*.npz
    cfg.TEST.CALIBRATION = CN()
    cfg.TEST.CALIBRATION.NUM_BINS = 10  # equal-width ECE bins, as in the DOR authors' code
    cfg.TEST.CALIBRATION.PLOT = True  # reliability diagram (reliability*.png) per evaluation
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
