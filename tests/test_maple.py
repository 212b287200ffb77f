"""MaPLe: learnable parts, initialisation, language-to-vision coupling, training and reloads."""
import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from clip_backbone.loader import load_clip
from clip_backbone.prompted import encode_texts
import train
from conftest import GENERATED, run_train, tiny_argv, trainer_config
from learner_runs import check_reload_and_new_classes, train_tiny
from test_prompted_vision import wide_tiny_clip
from trainers.maple import MaPLeCLIP

CLASSNAMES = ["dog", "golden_retriever", "traffic light"]


def maple_cfg(**overrides):
    cfg = CfgNode({"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp32", "PROMPT_DEPTH": 3})
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_learnable_parameters_follow_the_towers_widths():
    model = MaPLeCLIP(maple_cfg(), CLASSNAMES, wide_tiny_clip(layers=4, text_width=64,
                                                               vision_width=128))
    learner = model.prompt_learner
    shapes = {name: tuple(p.shape) for name, p in learner.named_parameters()}
    assert shapes == {
        "ctx": (2, 64),
        "proj.weight": (128, 64), "proj.bias": (128,),
        "compound_prompts_text.0": (2, 64), "compound_prompts_text.1": (2, 64),
        "compound_prompt_projections.0.weight": (128, 64),
        "compound_prompt_projections.0.bias": (128,),
        "compound_prompt_projections.1.weight": (128, 64),
        "compound_prompt_projections.1.bias": (128,),
    }
    # The deeper couplings start as clones of one layer; the shallow one is drawn separately.
    first, second = learner.compound_prompt_projections
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)
    assert not torch.equal(first.weight, learner.proj.weight)
    # The context starts as the embeddings of "a photo"; "of a" stays a fixed token.
    assert learner.context_text == "a photo of a"
    with torch.no_grad():
        assert torch.equal(learner.ctx, model.token_embedding.weight[[320, 1125]])


def test_context_longer_than_the_phrase_starts_random(clip_model):
    learner = MaPLeCLIP(maple_cfg(N_CTX=5, PROMPT_DEPTH=2), CLASSNAMES, clip_model).prompt_learner
    assert learner.context_text == "X X X X X" and learner.ctx.shape == (5, 64)
    assert learner.ctx.std().item() == pytest.approx(0.02, rel=0.5)


def test_precision_follows_the_clip_model():
    """With OpenAI's fp16 weights (PREC fp16 on CUDA) the input context and its coupling are
    fp16, as upstream; the deeper prompts and couplings stay fp32 and are cast where used."""
    fp16_clip = load_clip("tiny-vit").model
    learner = MaPLeCLIP(maple_cfg(PROMPT_DEPTH=2), CLASSNAMES, fp16_clip).prompt_learner
    dtypes = {name: p.dtype for name, p in learner.named_parameters()}
    assert dtypes.pop("ctx") == dtypes.pop("proj.weight") == dtypes.pop("proj.bias") \
        == torch.float16
    assert set(dtypes.values()) == {torch.float32}


@pytest.mark.parametrize("n_ctx", [2, 4])
def test_depth_one_starts_at_the_zero_shot_prompt(clip_model, n_ctx):
    model = MaPLeCLIP(maple_cfg(N_CTX=n_ctx, PROMPT_DEPTH=1), CLASSNAMES, clip_model)
    assert len(model.prompt_learner.compound_prompts_text) == 0
    expected = F.normalize(encode_texts(clip_model, ["a photo of a dog.",
                                                     "a photo of a golden retriever.",
                                                     "a photo of a traffic light."]), dim=-1)
    with torch.no_grad():
        tuned = F.normalize(model.label_text_features(), dim=-1)
        assert torch.allclose(tuned, expected, atol=1e-5)

        # Deeper prompts (random at init) replace the context inside the transformer.
        deeper = MaPLeCLIP(maple_cfg(N_CTX=n_ctx, PROMPT_DEPTH=2), CLASSNAMES, clip_model)
        assert not torch.allclose(F.normalize(deeper.label_text_features(), dim=-1), expected,
                                  atol=1e-3)


def test_vision_prompts_are_the_coupled_text_prompts(clip_model, images):
    model = MaPLeCLIP(maple_cfg(PROMPT_DEPTH=2), CLASSNAMES, clip_model)
    learner = model.prompt_learner
    shallow, deep = learner.vision_prompts()
    assert torch.equal(shallow, learner.proj(learner.ctx))
    assert len(deep) == 1
    assert torch.equal(deep[0], learner.compound_prompt_projections[0](
        learner.compound_prompts_text[0]))

    # A loss on the image features alone trains the text prompts through the couplings.
    model.image_features(images).pow(2).sum().backward()
    for name, param in learner.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_label_prompts_take_the_same_path_and_carry_gradients(clip_model):
    model = MaPLeCLIP(maple_cfg(PROMPT_DEPTH=2), CLASSNAMES, clip_model)
    labels = model.label_prompts(["traffic_light", "cat"])
    features = model.label_text_features(labels)
    assert features.shape == (2, 64)
    with torch.no_grad():
        assert torch.allclose(features[0], model.label_text_features()[2], atol=1e-6)

    features.pow(2).sum().backward()
    learner = model.prompt_learner
    assert learner.ctx.grad.abs().sum() > 0
    assert learner.compound_prompts_text[0].grad.abs().sum() > 0
    assert learner.proj.weight.grad is None  # the couplings feed the image tower only


@pytest.mark.parametrize("name, epochs, lr, depth", [
    ("vit_b16_c2_ep5_batch4_2ctx", 5, 0.0035, 9),
    ("vit_b16_c2_ep5_batch4_2ctx_cross_datasets", 2, 0.0026, 3)])
def test_shipped_configs_hold_upstreams_values(name, epochs, lr, depth):
    cfg = train.setup_cfg(train.parse_args(["--dataset-config-file", GENERATED,
                                            "--config-file", trainer_config("MaPLe", name)]))
    assert (cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == \
        (epochs, lr, 4)
    maple = cfg.TRAINER.MAPLE
    assert (maple.N_CTX, maple.CTX_INIT, maple.PREC, maple.PROMPT_DEPTH) == \
        (2, "a photo of a", "fp16", depth)
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16" and cfg.INPUT.SIZE == (224, 224)


def test_depth_beyond_the_layers_is_a_clear_error(clip_model):
    with pytest.raises(ValueError, match="PROMPT_DEPTH = 3 .* text transformer has 2"):
        MaPLeCLIP(maple_cfg(PROMPT_DEPTH=3), CLASSNAMES, clip_model)
    with pytest.raises(ValueError, match="PROMPT_DEPTH must be at least 1"):
        MaPLeCLIP(maple_cfg(PROMPT_DEPTH=0), CLASSNAMES, clip_model)


def test_resnet_backbone_stops_the_run(data_root, tmp_path):
    with pytest.raises(ValueError, match="need a ViT image encoder"):
        run_train(tiny_argv(data_root, "MaPLe", tmp_path / "rn", "MODEL.BACKBONE.NAME",
                            "tiny-rn"))


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    return train_tiny(data_root, "MaPLe", tmp_path_factory.mktemp("maple") / "train")


LEARNED = {"ctx": (2, 64), "proj.weight": (64, 64), "proj.bias": (64,),
           "compound_prompts_text.0": (2, 64),
           "compound_prompt_projections.0.weight": (64, 64),
           "compound_prompt_projections.0.bias": (64,)}


def test_training_moves_only_the_prompts(trained):
    learnable = {f"prompt_learner.{name}": shape for name, shape in LEARNED.items()}
    assert trained.learnable_shapes() == learnable
    assert trained.changed() == set(learnable)  # no frozen CLIP weight moved
    assert "epoch [3/3] batch [10/10]" in trained.log and " loss " in trained.log


def test_checkpoint_holds_only_the_prompt_learner(trained):
    checkpoint = torch.load(f"{trained.output_dir}/MultiModalPromptLearner/model.pth.tar-3",
                            weights_only=True)
    state = checkpoint["state_dict"]
    assert set(state) == set(LEARNED) | {"token_prefix", "token_suffix"}
    assert {k: tuple(state[k].shape) for k in LEARNED} == LEARNED
    assert checkpoint["epoch"] == 3


def test_checkpoint_reloads_and_transfers_to_new_classes(data_root, trained, tmp_path):
    check_reload_and_new_classes(data_root, "MaPLe", trained, tmp_path)
