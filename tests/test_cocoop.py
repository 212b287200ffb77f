"""CoCoOp: the meta-network, the instance-conditioned context and the per-image logits."""
import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from clip_backbone.loader import load_clip
from learner_runs import check_reload_and_new_classes, train_tiny
from trainers.cocoop import CoCoOpCLIP
from trainers.coop import CoOpCLIP

CLASSNAMES = ["dog", "golden_retriever", "traffic light"]


def cocoop_cfg(**overrides):
    cfg = CfgNode({"N_CTX": 16, "CTX_INIT": "a photo of a", "PREC": "fp32"})
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))

pytestmark = pytest.mark.usefixtures("seeded")


def test_learnable_parameters_are_the_context_and_the_meta_network(clip_model):
    model = CoCoOpCLIP(cocoop_cfg(), CLASSNAMES, clip_model)
    shapes = {n: tuple(p.shape) for n, p in model.prompt_learner.named_parameters()}
    # tiny-vit: vis_dim 64 -> 64 / 16 = 4 -> ctx_dim 64
    assert shapes == {"ctx": (4, 64),
                      "meta_net.linear1.weight": (4, 64), "meta_net.linear1.bias": (4,),
                      "meta_net.linear2.weight": (64, 4), "meta_net.linear2.bias": (64,)}
    assert isinstance(model.prompt_learner.meta_net.relu, torch.nn.ReLU)


def test_learner_follows_clip_precision_and_trains_in_it(clip_model, images):
    fp16_clip = load_clip("tiny-vit").model  # OpenAI's mixed precision, as under PREC fp16
    model = CoCoOpCLIP(cocoop_cfg(), CLASSNAMES, fp16_clip)
    assert {p.dtype for p in model.prompt_learner.parameters()} == {torch.float16}
    logits = model(images)
    assert logits.dtype == torch.float16
    F.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    for name, param in model.prompt_learner.named_parameters():
        assert param.grad.dtype == torch.float16 and torch.isfinite(param.grad).all(), name

    # fp32 weights under autocast (CPU bf16 standing in for CUDA amp) mix dtypes safely.
    model = CoCoOpCLIP(cocoop_cfg(), CLASSNAMES, clip_model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(images), torch.tensor([0, 1, 2]))
    loss.backward()
    assert all(p.grad is not None for p in model.prompt_learner.parameters())


def test_zero_bias_gives_the_plain_context_for_every_image(clip_model):
    model = CoCoOpCLIP(cocoop_cfg(), CLASSNAMES, clip_model)
    coop = CoOpCLIP(CfgNode({"N_CTX": 4, "CTX_INIT": "a photo of a", "CSC": False,
                             "CLASS_TOKEN_POSITION": "end"}), CLASSNAMES, clip_model)
    with torch.no_grad():
        plain = model.label_text_features()
        shifted = model.label_text_features(bias=torch.zeros(2, 64))
        assert plain.shape == (3, 64) and shifted.shape == (2, 3, 64)
        assert torch.allclose(plain, coop.label_text_features(), atol=1e-6)
        assert torch.allclose(shifted[0], plain, atol=1e-6)
        assert torch.allclose(shifted[1], plain, atol=1e-6)


def test_logits_condition_each_image_on_its_own_context(clip_model, images):
    model = CoCoOpCLIP(cocoop_cfg(), CLASSNAMES, clip_model).eval()
    with torch.no_grad():
        logits = model(images)

        features = model.encode_image(images)
        bias = model.context_bias(features)
        assert bias.shape == (3, 64) and bias.abs().sum() > 0
        expected = []
        for i in range(3):  # one image at a time, as CoCoOp's own loop does
            ctx = model.prompt_learner.ctx + bias[i]
            prompts = model.prompt_learner.assemble(model.prompt_learner.class_prompts, ctx)
            text = model.text_encoder(prompts, model.prompt_learner.tokenized_prompts)
            expected.append(model.logit_scale.exp() * features[i] @ F.normalize(text).t())
        assert torch.allclose(logits, torch.stack(expected), atol=1e-4)

        # Images of one batch get different prompts, hence different text features.
        text = model.label_text_features(bias=bias)
        assert not torch.allclose(text[0], text[1], atol=1e-4)

        model.MAX_PROMPTS_PER_PASS = 1  # one image per text-encoder pass
        assert torch.allclose(model(images), logits, atol=1e-5)


def test_label_prompts_take_the_same_path_and_carry_gradients(clip_model, images):
    model = CoCoOpCLIP(cocoop_cfg(), CLASSNAMES, clip_model)
    labels = model.label_prompts(CLASSNAMES)
    with torch.no_grad():
        assert torch.equal(model.label_text_features(labels), model.label_text_features())

    bias = model.context_bias(model.encode_image(images))
    via_labels = model.label_text_features(labels, bias=bias)
    assert via_labels.shape == (3, 3, 64)
    assert torch.allclose(via_labels, model.label_text_features(bias=bias), atol=1e-6)

    via_labels.pow(2).sum().backward()
    for name, param in model.prompt_learner.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    return train_tiny(data_root, "CoCoOp", tmp_path_factory.mktemp("cocoop") / "train")


def test_training_moves_only_the_learner_and_logs_the_loss(trained):
    learnable = {"prompt_learner.ctx": (4, 64),
                 "prompt_learner.meta_net.linear1.weight": (4, 64),
                 "prompt_learner.meta_net.linear1.bias": (4,),
                 "prompt_learner.meta_net.linear2.weight": (64, 4),
                 "prompt_learner.meta_net.linear2.bias": (64,)}
    assert trained.learnable_shapes() == learnable
    assert trained.changed() == set(learnable)
    assert "epoch [3/3] batch [20/20]" in trained.log and " loss " in trained.log


def test_loss_is_the_cross_entropy_of_the_logits(trained):
    trainer = trained.trainer
    batch = next(iter(trainer.train_loader_x))
    image, label = trainer.parse_batch_train(batch)
    with torch.no_grad():
        loss, summary = trainer.compute_loss(image, label)
        expected = F.cross_entropy(trainer.model_inference(image), label)
    assert list(summary) == ["loss"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_checkpoint_reloads_and_transfers_to_new_classes(data_root, trained, tmp_path):
    check_reload_and_new_classes(data_root, "CoCoOp", trained, tmp_path)
