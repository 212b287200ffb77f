"""TCP: the class-aware tokens, where they enter the text encoder, and the consistency term."""
import re

import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from clip_backbone.loader import load_clip
from clip_backbone.tokenizer import tokenize
from learner_runs import check_reload_and_new_classes, train_tiny
from trainers.knowledge import knowledge_distance
from trainers.tcp import TCPCLIP, tcp_templates

CLASSNAMES = ["dog", "golden_retriever", "traffic light"]
PHOTO = "a photo of a {}."


def tcp_cfg(**overrides):
    cfg = CfgNode({"N_CTX": 4, "CTX_INIT": "", "W": 8.0, "PREC": "fp32", "KNOWLEDGE_LAYER": 1,
                   "ADAM_EPS": 1e-3})
    cfg.update(overrides)
    return cfg

pytestmark = pytest.mark.usefixtures("seeded")


def test_learnable_parameters_are_the_context_and_the_knowledge_embedding(clip_model):
    model = TCPCLIP(tcp_cfg(), CLASSNAMES, clip_model, PHOTO)
    shapes = {n: tuple(p.shape) for n, p in model.prompt_learner.named_parameters()}
    # tiny: text feature 64 -> 64 / 4 = 16 -> n_ctx * ctx_dim = 4 * 64
    assert shapes == {"ctx": (4, 64),
                      "meta_net.linear1.weight": (16, 64), "meta_net.linear1.bias": (16,),
                      "meta_net.linear2.weight": (256, 16), "meta_net.linear2.bias": (256,)}
    assert model.prompt_learner.context_text == "X X X X"  # CTX_INIT "": random context


def test_learner_follows_clip_precision_and_trains_in_it(clip_model):
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fp16_clip = load_clip("tiny-vit").model  # OpenAI's mixed precision, as under PREC fp16
    model = TCPCLIP(tcp_cfg(), CLASSNAMES, fp16_clip, PHOTO)
    assert {p.dtype for p in model.prompt_learner.parameters()} == {torch.float16}
    assert model.class_knowledge.dtype == torch.float16
    logits, loss_kg = model(images, with_knowledge_loss=True)
    assert logits.dtype == torch.float16
    (F.cross_entropy(logits, torch.tensor([0, 2])) + 8.0 * loss_kg).backward()
    for name, param in model.prompt_learner.named_parameters():
        assert param.grad.dtype == torch.float16 and torch.isfinite(param.grad).all(), name

    # fp32 weights under autocast (CPU bf16 standing in for CUDA amp) mix dtypes safely.
    model = TCPCLIP(tcp_cfg(), CLASSNAMES, clip_model, PHOTO)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss_kg = model(images, with_knowledge_loss=True)
        loss = F.cross_entropy(logits, torch.tensor([0, 2])) + 8.0 * loss_kg
    loss.backward()
    assert all(p.grad is not None for p in model.prompt_learner.parameters())


def test_prompts_and_knowledge_follow_tcps_templates(clip_model):
    assert tcp_templates("FGVCAircraft") == ("a photo of an aircraft {}.",
                                             "{}, a type of aircraft.")
    assert tcp_templates("Food101") == ("a photo of a {}, a type of food.", "{}, a type of food.")
    assert tcp_templates("OxfordPets") == ("a photo of a {}, a type of pet.",
                                           "{}, a type of pet.")
    assert tcp_templates("UCF101") == ("a photo of a person doing {}.", "person doing {}.")
    assert tcp_templates("GeneratedShapes") == (PHOTO, "{}.")

    model = TCPCLIP(tcp_cfg(), CLASSNAMES, clip_model, *tcp_templates("OxfordPets"))
    expected = tokenize(["X X X X dog, a type of pet.", "X X X X golden retriever, a type of pet.",
                         "X X X X traffic light, a type of pet."])
    assert torch.equal(model.prompt_learner.tokenized_prompts, expected)


def test_class_aware_tokens_replace_the_context_at_the_knowledge_layer(clip_model):
    model = TCPCLIP(tcp_cfg(), CLASSNAMES, clip_model, PHOTO)
    learner = model.prompt_learner
    with torch.no_grad():
        features = model.label_text_features()

        # By hand: layer 0 sees [SOT][ctx][name.EOT], then positions 1..4 are overwritten by
        # each class's own tokens before layer 1 (the tiny text encoder has two layers).
        tokens = learner.class_tokens(model.class_knowledge)
        assert tokens.shape == (3, 4, 64)
        assert not torch.allclose(tokens[0], tokens[1])  # the tokens differ per class
        x = learner() + clip_model.positional_embedding
        blocks = clip_model.transformer.resblocks
        x = blocks[0](x, attn_mask=clip_model.attn_mask)
        x = torch.cat([x[:, :1], tokens, x[:, 5:]], dim=1)
        x = clip_model.ln_final(blocks[1](x, attn_mask=clip_model.attn_mask))
        eot = learner.tokenized_prompts.argmax(-1)
        expected = x[torch.arange(3), eot] @ clip_model.text_projection
        assert torch.allclose(features, expected, atol=1e-5)

        # Without the injection the features would differ.
        plain = model.text_encoder(learner(), learner.tokenized_prompts)
        assert not torch.allclose(features, plain, atol=1e-3)


def test_knowledge_layer_must_exist(clip_model):
    with pytest.raises(ValueError, match=r"KNOWLEDGE_LAYER must be in \[1, 1\].*got 2"):
        TCPCLIP(tcp_cfg(KNOWLEDGE_LAYER=2), CLASSNAMES, clip_model, PHOTO)


def test_label_prompts_carry_their_own_knowledge_and_gradients(clip_model):
    model = TCPCLIP(tcp_cfg(), CLASSNAMES, clip_model, PHOTO)
    labels = model.label_prompts(CLASSNAMES)
    assert torch.equal(labels.knowledge, model.class_knowledge)
    with torch.no_grad():
        assert torch.equal(model.label_text_features(labels), model.label_text_features())
        # Any names, in any order: each label's tokens come from its own knowledge feature.
        swapped = model.label_text_features(model.label_prompts(["traffic_light", "dog"]))
        assert torch.allclose(swapped, model.label_text_features()[[2, 0]], atol=1e-5)

    model.label_text_features(labels).pow(2).sum().backward()
    for name, param in model.prompt_learner.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_consistency_term_compares_with_the_knowledge_features(clip_model):
    model = TCPCLIP(tcp_cfg(), CLASSNAMES, clip_model, PHOTO)
    with torch.no_grad():
        logits, loss_kg = model(torch.zeros(2, 3, 32, 32), with_knowledge_loss=True)
        text = F.normalize(model.label_text_features(), dim=-1)
    cosine = (text * model.class_knowledge).sum(-1)
    assert logits.shape == (2, 3)
    assert loss_kg.item() == pytest.approx(1 - cosine.mean().item(), abs=1e-6)


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    return train_tiny(data_root, "TCP", tmp_path_factory.mktemp("tcp") / "train")


def test_training_moves_only_the_learner_and_logs_each_term(trained):
    learnable = {"prompt_learner.ctx": (4, 64),
                 "prompt_learner.meta_net.linear1.weight": (16, 64),
                 "prompt_learner.meta_net.linear1.bias": (16,),
                 "prompt_learner.meta_net.linear2.weight": (256, 16),
                 "prompt_learner.meta_net.linear2.bias": (256,)}
    assert trained.learnable_shapes() == learnable
    assert trained.changed() == set(learnable)
    assert {group["eps"] for group in trained.trainer.optim.param_groups} == {1e-3}

    kg_values = [float(v) for v in re.findall(r"loss_kg (\d+\.\d+) \(", trained.log)]
    assert kg_values and "loss_ce " in trained.log and " acc " in trained.log
    assert all(value > 0 for value in kg_values)


def test_loss_is_ce_plus_w_times_the_consistency_term(trained):
    trainer = trained.trainer
    batch = next(iter(trainer.train_loader_x))
    image, label = trainer.parse_batch_train(batch)
    with torch.no_grad():
        loss, summary = trainer.compute_loss(image, label)
        model = trainer.model
        expected_kg = knowledge_distance(model.label_text_features(), model.class_knowledge)
    assert list(summary) == ["loss", "loss_ce", "loss_kg", "acc"]
    assert summary["loss_kg"] == pytest.approx(expected_kg.item(), rel=1e-5)
    assert summary["loss"] == pytest.approx(summary["loss_ce"] + 8.0 * summary["loss_kg"],
                                            rel=1e-5)


def test_checkpoint_reloads_and_transfers_to_new_classes(data_root, trained, tmp_path):
    check_reload_and_new_classes(data_root, "TCP", trained, tmp_path)
