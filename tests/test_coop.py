"""CoOp's prompt learner: parameters, initialisation, class-token positions."""
import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from clip_backbone.prompted import encode_texts
from trainers.coop import CoOpCLIP

CLASSNAMES = ["dog", "golden_retriever", "traffic light"]


def coop_cfg(**overrides):
    cfg = CfgNode({"N_CTX": 4, "CSC": False, "CTX_INIT": "", "PREC": "fp32",
                   "CLASS_TOKEN_POSITION": "end"})
    cfg.update(overrides)
    return cfg


def test_learnable_parameters_are_exactly_the_context(clip_model):
    model = CoOpCLIP(coop_cfg(), CLASSNAMES, clip_model)
    learner_params = dict(model.prompt_learner.named_parameters())
    assert list(learner_params) == ["ctx"]
    assert learner_params["ctx"].shape == (4, 64)

    csc = CoOpCLIP(coop_cfg(CSC=True, N_CTX=3), CLASSNAMES, clip_model)
    assert csc.prompt_learner.ctx.shape == (3, 3, 64)


def test_ctx_init_reproduces_the_hand_written_prompt(clip_model):
    model = CoOpCLIP(coop_cfg(CTX_INIT="a_photo_of_a"), CLASSNAMES, clip_model)
    assert model.prompt_learner.n_ctx == 4
    with torch.no_grad():
        tuned = F.normalize(model.label_text_features(), dim=-1)
    expected = F.normalize(encode_texts(clip_model, ["a photo of a dog.",
                                                     "a photo of a golden retriever.",
                                                     "a photo of a traffic light."]), dim=-1)
    assert torch.allclose(tuned, expected, atol=1e-5)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_class_token_positions_keep_prompt_length_and_eot(clip_model, position):
    model = CoOpCLIP(coop_cfg(CLASS_TOKEN_POSITION=position), CLASSNAMES, clip_model)
    learner = model.prompt_learner
    prompts = learner()
    assert prompts.shape == (3, 77, 64)
    # The context sits where the position says; the name tokens move around it.
    eot = learner.tokenized_prompts.argmax(-1)
    assert torch.equal(prompts[torch.arange(3), eot],
                       learner.token_suffix[torch.arange(3), eot - 1 - learner.n_ctx])
    first_ctx_index = {"end": 1, "middle": 1, "front": 1 + learner.name_lens[0]}[position]
    assert torch.equal(prompts[0, first_ctx_index], learner.ctx[0])


def test_outlier_labels_use_the_same_prompt_path(clip_model):
    model = CoOpCLIP(coop_cfg(CTX_INIT="a photo of a"), CLASSNAMES, clip_model)
    labels = model.label_prompts(["dog"])
    with torch.no_grad():
        assert torch.allclose(model.label_text_features(labels),
                              model.label_text_features()[:1], atol=1e-6)
