"""KgCoOp: the context, the hand-crafted knowledge features and the consistency term."""
import re

import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from clip_backbone.loader import load_clip
from clip_backbone.prompted import encode_texts
from learner_runs import check_reload_and_new_classes, train_tiny
from trainers.kgcoop import KgCoOpCLIP
from trainers.knowledge import knowledge_distance

CLASSNAMES = ["dog", "golden_retriever", "traffic light"]
PHOTO = "a photo of a {}."


def kgcoop_cfg(**overrides):
    cfg = CfgNode({"N_CTX": 16, "CTX_INIT": "a photo of a", "W": 8.0, "PREC": "fp32",
                   "CSC": False, "CLASS_TOKEN_POSITION": "end"})
    cfg.update(overrides)
    return cfg

pytestmark = pytest.mark.usefixtures("seeded")


def test_only_the_context_is_learnable(clip_model):
    model = KgCoOpCLIP(kgcoop_cfg(), CLASSNAMES, clip_model, PHOTO)
    shapes = {n: tuple(p.shape) for n, p in model.prompt_learner.named_parameters()}
    assert shapes == {"ctx": (4, 64)}  # "a photo of a" sets 4 tokens whatever N_CTX says


def test_context_follows_clip_precision_and_trains_in_it():
    fp16_clip = load_clip("tiny-vit").model  # OpenAI's mixed precision, as under PREC fp16
    model = KgCoOpCLIP(kgcoop_cfg(), CLASSNAMES, fp16_clip, PHOTO)
    assert model.prompt_learner.ctx.dtype == torch.float16
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits, loss_kg = model(images, with_knowledge_loss=True)
    assert logits.dtype == torch.float16 and loss_kg.dtype == torch.float32
    (F.cross_entropy(logits, torch.tensor([0, 2])) + 8.0 * loss_kg).backward()
    grad = model.prompt_learner.ctx.grad
    assert grad.dtype == torch.float16 and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_knowledge_features_are_frozen_clip_features_of_the_template(clip_model):
    model = KgCoOpCLIP(kgcoop_cfg(), CLASSNAMES, clip_model, "a photo of a {}, a type of pet.")
    expected = F.normalize(encode_texts(clip_model, [
        "a photo of a dog, a type of pet.", "a photo of a golden retriever, a type of pet.",
        "a photo of a traffic light, a type of pet."]), dim=-1)
    assert not model.class_knowledge.requires_grad
    assert torch.allclose(model.class_knowledge, expected, atol=1e-5)
    # Derived from the class names, so never saved with (or loaded from) a checkpoint.
    assert "class_knowledge" not in model.state_dict()


def test_knowledge_term_is_zero_at_the_hand_crafted_prompt_and_grows_as_the_context_moves(
        clip_model):
    model = KgCoOpCLIP(kgcoop_cfg(), CLASSNAMES, clip_model, PHOTO)
    with torch.no_grad():
        assert knowledge_distance(model.label_text_features(), model.class_knowledge) < 1e-6

        model.prompt_learner.ctx.add_(0.05 * torch.randn_like(model.prompt_learner.ctx))
        assert knowledge_distance(model.label_text_features(), model.class_knowledge) > 1e-3

    other = KgCoOpCLIP(kgcoop_cfg(), CLASSNAMES, clip_model, "a photo of a {}, a type of pet.")
    with torch.no_grad():
        assert knowledge_distance(other.label_text_features(), other.class_knowledge) > 1e-3


def test_label_prompts_of_the_class_names_take_the_same_path_and_carry_gradients(clip_model):
    model = KgCoOpCLIP(kgcoop_cfg(), CLASSNAMES, clip_model, PHOTO)
    labels = model.label_prompts(CLASSNAMES)
    via_labels = model.label_text_features(labels)
    assert torch.equal(via_labels, model.label_text_features())

    via_labels.pow(2).sum().backward()
    assert model.prompt_learner.ctx.grad is not None
    assert model.prompt_learner.ctx.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    return train_tiny(data_root, "KgCoOp", tmp_path_factory.mktemp("kgcoop") / "train")


def test_training_moves_only_the_context_and_logs_each_term(trained):
    assert trained.learnable_shapes() == {"prompt_learner.ctx": (4, 64)}
    assert trained.trainer.model.knowledge_template == PHOTO  # the generated dataset's
    assert trained.changed() == {"prompt_learner.ctx"}

    kg_values = [float(v) for v in re.findall(r"loss_kg (\d+\.\d+) \(", trained.log)]
    assert kg_values and "loss_ce " in trained.log and " acc " in trained.log
    assert kg_values[-1] > 0  # the context left the hand-crafted prompt


def test_loss_is_ce_plus_w_times_the_knowledge_term(trained):
    trainer = trained.trainer
    batch = next(iter(trainer.train_loader_x))
    image, label = trainer.parse_batch_train(batch)
    with torch.no_grad():
        loss, summary = trainer.compute_loss(image, label)
    assert list(summary) == ["loss", "loss_ce", "loss_kg", "acc"]
    assert summary["loss_kg"] > 0
    assert summary["loss"] == pytest.approx(summary["loss_ce"] + 8.0 * summary["loss_kg"],
                                            rel=1e-5)


def test_checkpoint_reloads_and_transfers_to_new_classes(data_root, trained, tmp_path):
    check_reload_and_new_classes(data_root, "KgCoOp", trained, tmp_path)
