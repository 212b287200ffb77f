"""Config merge order and validation, as in CoOp's train.py."""
import pytest

import train
from conftest import GENERATED, trainer_config


def setup(*argv):
    return train.setup_cfg(train.parse_args([str(a) for a in argv]))


def test_defaults_then_dataset_then_method_then_flags_then_opts():
    cfg = setup("--dataset-config-file", GENERATED,
                "--config-file", trainer_config("CoOp", "vit_b16_ctxv1"),
                "--backbone", "RN50", "--seed", "3", "OPTIM.LR", "0.01")

    assert cfg.DATASET.NAME == "GeneratedShapes"            # dataset yaml
    assert cfg.OPTIM.MAX_EPOCH == 200                       # method yaml over Dassl's 10
    assert cfg.TRAINER.COOP.CTX_INIT == "a photo of a"      # method yaml over project default
    assert cfg.MODEL.BACKBONE.NAME == "RN50"                # flag over method yaml
    assert cfg.SEED == 3
    assert cfg.OPTIM.LR == 0.01                             # opts over method yaml (0.002)
    assert cfg.OPTIM.WEIGHT_DECAY == 5e-4                   # Dassl default untouched
    assert cfg.is_frozen()


def test_method_yaml_wins_over_dataset_yaml(tmp_path):
    dataset_yaml = tmp_path / "dataset.yaml"
    dataset_yaml.write_text('DATASET:\n  NAME: "GeneratedShapes"\nOPTIM:\n  MAX_EPOCH: 7\n'
                            "  LR: 0.5\n")
    method_yaml = tmp_path / "method.yaml"
    method_yaml.write_text("OPTIM:\n  MAX_EPOCH: 4\n")
    cfg = setup("--dataset-config-file", dataset_yaml, "--config-file", method_yaml)
    assert cfg.OPTIM.MAX_EPOCH == 4   # set by both: the method yaml is merged last
    assert cfg.OPTIM.LR == 0.5        # set by the dataset yaml only


def test_opts_win_over_flags():
    cfg = setup("--backbone", "RN50", "MODEL.BACKBONE.NAME", "ViT-B/32")
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/32"


def test_seed_zero_is_honoured():
    assert setup("--seed", "0").SEED == 0
    assert setup().SEED == -1


def test_unknown_key_is_rejected():
    with pytest.raises(ValueError, match="Non-existent.*TRAINER.COOP.NOT_A_KEY"):
        setup("TRAINER.COOP.NOT_A_KEY", "1")


def test_type_mismatch_is_rejected():
    with pytest.raises(ValueError):
        setup("OPTIM.MAX_EPOCH", "2.5")


def test_odd_opts_are_rejected():
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        setup("OPTIM.LR")


def test_project_keys_do_not_replace_host_values():
    from toolbox import get_cfg_default
    from trainers.config import extend_cfg
    from yacs.config import CfgNode

    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CfgNode({"CTX_INIT": False, "W": 8.0})
    extend_cfg(cfg)
    assert cfg.TRAINER.COOP.CTX_INIT is False and cfg.TRAINER.COOP.W == 8.0
    assert cfg.TRAINER.COOP.N_CTX == 16 and cfg.DATASET.SUBSAMPLE_CLASSES == "all"
