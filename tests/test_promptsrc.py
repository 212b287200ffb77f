"""PromptSRC: learnable parts, frozen targets, self-regulating losses, GPA, training, reloads."""
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode

import train
from clip_backbone.loader import load_clip
from clip_backbone.prompted import encode_texts
from conftest import GENERATED, run_train, tiny_argv, trainer_config
from learner_runs import check_reload_and_new_classes, train_tiny
from test_prompted_vision import wide_tiny_clip
from toolbox import build_trainer
from trainers.promptsrc import (GPA_STATES_FILE, PROMPTSRC_TEMPLATES, PromptSRCCLIP,
                                gpa_weights, self_regulating_losses, template_text_features)

CLASSNAMES = ["dog", "golden_retriever", "traffic light"]
TERMS = ["loss", "loss_ce", "loss_text_l1", "loss_image_l1", "loss_kl", "acc"]


def src_cfg(**overrides):
    cfg = CfgNode({"N_CTX_VISION": 3, "N_CTX_TEXT": 4, "CTX_INIT": "a photo of a",
                   "PREC": "fp32", "PROMPT_DEPTH_VISION": 2, "PROMPT_DEPTH_TEXT": 3,
                   "TEXT_LOSS_WEIGHT": 25, "IMAGE_LOSS_WEIGHT": 10, "GPA_MEAN": 15,
                   "GPA_STD": 1})
    cfg.update(overrides)
    return cfg


def test_learnable_parameters_follow_the_towers_widths():
    model = PromptSRCCLIP(src_cfg(), CLASSNAMES, wide_tiny_clip(layers=4, text_width=64,
                                                                vision_width=128))
    shapes = {name: tuple(p.shape) for name, p in model.prompt_learner.named_parameters()}
    assert shapes == {"ctx": (4, 64), "deep_text_ctx.0": (4, 64), "deep_text_ctx.1": (4, 64),
                      "vision_ctx": (3, 128), "deep_vision_ctx.0": (3, 128)}
    assert model.prompt_learner.text_deep_prompts()[1] is model.prompt_learner.deep_text_ctx[1]

    no_vision = PromptSRCCLIP(src_cfg(PROMPT_DEPTH_VISION=0, PROMPT_DEPTH_TEXT=1), CLASSNAMES,
                              wide_tiny_clip(layers=4))
    assert [n for n, _ in no_vision.prompt_learner.named_parameters()] == ["ctx"]
    assert no_vision.prompt_learner.vision_prompts() == (None, [])


def test_only_the_text_input_context_takes_clip_fp16_dtype():
    learner = PromptSRCCLIP(src_cfg(PROMPT_DEPTH_TEXT=2), CLASSNAMES,
                            load_clip("tiny-vit").model).prompt_learner
    dtypes = {name: p.dtype for name, p in learner.named_parameters()}
    assert dtypes == {"ctx": torch.float16, "deep_text_ctx.0": torch.float32,
                      "vision_ctx": torch.float32, "deep_vision_ctx.0": torch.float32}


def test_prompts_reach_both_towers_and_carry_gradients(clip_model):
    model = PromptSRCCLIP(src_cfg(PROMPT_DEPTH_TEXT=2), CLASSNAMES, clip_model)
    images = torch.randn(2, 3, 32, 32)
    labels = model.label_prompts(["traffic_light", "cat"])
    text = model.label_text_features(labels)
    with torch.no_grad():
        assert torch.allclose(text[0], model.label_text_features()[2], atol=1e-6)
    (text.pow(2).sum() + model.image_features(images).pow(2).sum()).backward()
    for name, param in model.prompt_learner.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_depths_beyond_the_layers_are_clear_errors(clip_model):
    with pytest.raises(ValueError, match="PROMPT_DEPTH_VISION = 3 .* vision transformer has 2"):
        PromptSRCCLIP(src_cfg(PROMPT_DEPTH_VISION=3, PROMPT_DEPTH_TEXT=2), CLASSNAMES,
                      clip_model)
    with pytest.raises(ValueError, match="PROMPT_DEPTH_TEXT = 3 .* text transformer has 2"):
        PromptSRCCLIP(src_cfg(PROMPT_DEPTH_VISION=2, PROMPT_DEPTH_TEXT=3), CLASSNAMES,
                      clip_model)


@pytest.mark.parametrize("name, epochs, depth, gpa", [
    ("vit_b16_c2_ep20_batch4_4+4ctx", 20, 9, (15, 1)),
    ("vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", 20, 3, (6, 10)),
    ("vit_b16_c2_ep50_batch4_4+4ctx_few_shot", 50, 9, (30, 30))])
def test_shipped_configs_hold_upstreams_values(name, epochs, depth, gpa):
    cfg = train.setup_cfg(train.parse_args(["--dataset-config-file", GENERATED,
                                            "--config-file", trainer_config("PromptSRC", name)]))
    assert (cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == \
        (epochs, 0.0025, 4)
    src = cfg.TRAINER.PROMPTSRC
    assert (src.N_CTX_TEXT, src.N_CTX_VISION, src.CTX_INIT, src.PREC) == \
        (4, 4, "a photo of a", "fp16")
    assert (src.PROMPT_DEPTH_TEXT, src.PROMPT_DEPTH_VISION) == (depth, depth)
    assert (src.TEXT_LOSS_WEIGHT, src.IMAGE_LOSS_WEIGHT) == (25, 10)
    assert (src.GPA_MEAN, src.GPA_STD) == gpa


def test_templates_are_upstreams_sixty():
    assert len(PROMPTSRC_TEMPLATES) == len(set(PROMPTSRC_TEMPLATES)) == 60
    assert "a photo of a {}." in PROMPTSRC_TEMPLATES and "itap of the {}." in PROMPTSRC_TEMPLATES
    assert "a tattoo of the {}." not in PROMPTSRC_TEMPLATES  # the 80th CLIP template


def test_frozen_text_targets_average_unnormalised_features_per_class(clip_model):
    templates = PROMPTSRC_TEMPLATES[:5]
    targets = template_text_features(clip_model, CLASSNAMES, templates)
    for index, name in enumerate(["dog", "golden retriever", "traffic light"]):
        per_template = encode_texts(clip_model, [t.format(name) for t in templates])
        expected = F.normalize(per_template.mean(dim=0), dim=-1)
        assert torch.allclose(targets[index], expected, atol=1e-6)


def test_regularisers_vanish_when_prompted_equals_frozen():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=generator)
    text = F.normalize(torch.randn(3, 8, generator=generator), dim=-1)
    image = F.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    terms = self_regulating_losses(logits, logits, text, text, image, image, 25, 10)
    assert list(terms) == ["loss_text_l1", "loss_image_l1", "loss_kl"]
    assert all(value.item() == 0.0 for value in terms.values())

    other = self_regulating_losses(logits, logits.flip(1), text, text + 0.1, image, image - 0.2,
                                   25, 10)
    assert other["loss_text_l1"].item() == pytest.approx(25 * 0.1)
    assert other["loss_image_l1"].item() == pytest.approx(10 * 0.2)
    p_frozen = F.softmax(logits.flip(1), dim=1)
    kl = (p_frozen * (p_frozen.log() - F.log_softmax(logits, dim=1))).sum() / logits.numel()
    assert other["loss_kl"].item() == pytest.approx(kl.item(), rel=1e-5)


def build_tiny_trainer(data_root, output_dir, *opts):
    argv = [str(a) for a in tiny_argv(data_root, "PromptSRC", output_dir, *opts)]
    return build_trainer(train.setup_cfg(train.parse_args(argv)))


def test_loss_terms_at_init(data_root, tmp_path):
    """Without vision prompts the image tower is the frozen one, so its L1 term is exactly 0;
    the text prompt ("a photo of a {}.") is not the 60-template average, so text L1 and KL
    are not. Vision prompts (random at init) move the image features away at once."""
    no_vision = build_tiny_trainer(data_root, tmp_path / "a", "TRAINER.PROMPTSRC."
                                   "PROMPT_DEPTH_VISION", 0)
    batch = next(iter(no_vision.train_loader_x))
    image, label = no_vision.parse_batch_train(batch)
    with torch.no_grad():
        loss, terms = no_vision.compute_loss(image, label)
    assert list(terms) == TERMS
    assert terms["loss_image_l1"] == 0.0
    assert terms["loss_text_l1"] > 0.0 and terms["loss_kl"] > 0.0
    assert loss.item() == pytest.approx(sum(terms[k] for k in TERMS[1:5]), rel=1e-6)

    with_vision = build_tiny_trainer(data_root, tmp_path / "b")
    with torch.no_grad():
        _, terms = with_vision.compute_loss(image, label)
    assert terms["loss_image_l1"] > 0.0


def test_gpa_weights_are_the_normalised_gaussian():
    weights = gpa_weights(20, 15, 1)
    assert math.fsum(weights) == pytest.approx(1.0, abs=1e-12)
    density = [math.exp(-0.5 * (epoch - 15) ** 2) / math.sqrt(2 * math.pi)
               for epoch in range(1, 21)]
    assert weights == pytest.approx([d / math.fsum(density) for d in density], rel=1e-9)
    assert max(range(20), key=weights.__getitem__) == 14  # epoch 15

    far = gpa_weights(3, 1000, 1)  # every density underflows; the last epoch takes it all
    assert far == pytest.approx([0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="GPA_STD must be positive"):
        gpa_weights(3, 2, 0)


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    return train_tiny(data_root, "PromptSRC", tmp_path_factory.mktemp("promptsrc") / "train",
                      "TRAIN.CHECKPOINT_FREQ", 1)


LEARNED = {"ctx": (4, 64), "vision_ctx": (4, 64), "deep_text_ctx.0": (4, 64),
           "deep_vision_ctx.0": (4, 64)}


def test_training_moves_only_the_prompts_and_logs_every_term(trained):
    learnable = {f"prompt_learner.{name}": shape for name, shape in LEARNED.items()}
    assert trained.learnable_shapes() == learnable
    assert trained.changed() == set(learnable)  # no frozen CLIP weight moved
    line = next(line for line in trained.log.splitlines() if "epoch [3/3] batch [10/10]" in line)
    for term in TERMS:
        assert f" {term} " in line
    assert "Gaussian prompt aggregation: loading the weighted average of epochs [1, 2, 3]" \
        in trained.log


def load_state(run, name):
    path = f"{run.output_dir}/VLPromptLearner/{name}"
    return torch.load(path, weights_only=True)


def test_final_prompts_are_the_gaussian_average_of_the_epochs(trained):
    weights = gpa_weights(3, 2, 1)
    assert weights[1] > weights[0] > 0 and weights[0] == pytest.approx(weights[2])

    states = load_state(trained, GPA_STATES_FILE)
    assert states["epochs"] == [1, 2, 3]
    per_epoch = dict(zip(states["epochs"], states["states"]))
    for epoch in (1, 2):  # the recorded states are the raw ones the checkpoints hold
        raw = load_state(trained, f"model.pth.tar-{epoch}")["state_dict"]
        for name in LEARNED:
            assert torch.equal(per_epoch[epoch][name], raw[name].float())

    final = load_state(trained, "model.pth.tar-3")["state_dict"]
    for name in LEARNED:
        expected = sum(w * per_epoch[e][name].double() for e, w in zip((1, 2, 3), weights))
        assert torch.allclose(final[name].double(), expected, atol=1e-6)
        assert not torch.allclose(final[name], per_epoch[3][name])
    assert set(final) == set(LEARNED) | {"token_prefix", "token_suffix"}


def test_resume_restores_the_epochs_before_it(data_root, trained, tmp_path):
    first = load_state(trained, GPA_STATES_FILE)
    run = tmp_path / "resumed"
    shutil.copytree(trained.output_dir, run)
    (run / "VLPromptLearner" / "model.pth.tar-3").unlink()
    (run / "VLPromptLearner" / "checkpoint").write_text("model.pth.tar-2\n")

    run_train(tiny_argv(data_root, "PromptSRC", run, "TRAIN.CHECKPOINT_FREQ", 1))
    log = max((p for p in run.iterdir() if p.name.startswith("log.txt")),
              key=lambda p: p.stat().st_mtime).read_text()
    assert "restored the states of epochs 1..2" in log and "epoch [1/3]" not in log

    states = torch.load(run / "VLPromptLearner" / GPA_STATES_FILE, weights_only=True)
    assert states["epochs"] == [1, 2, 3]
    weights = gpa_weights(3, 2, 1)
    final = torch.load(run / "VLPromptLearner" / "model.pth.tar-3",
                       weights_only=True)["state_dict"]
    for name in LEARNED:
        for epoch in (0, 1):
            assert torch.equal(states["states"][epoch][name], first["states"][epoch][name])
        expected = sum(w * s[name].double() for w, s in zip(weights, states["states"]))
        assert torch.allclose(final[name].double(), expected, atol=1e-6)

    # Without the recorded states the aggregate covers the resumed epochs only, and says so.
    bare = tmp_path / "bare"
    shutil.copytree(trained.output_dir, bare)
    (bare / "VLPromptLearner" / "model.pth.tar-3").unlink()
    (bare / "VLPromptLearner" / GPA_STATES_FILE).unlink()
    (bare / "VLPromptLearner" / "checkpoint").write_text("model.pth.tar-2\n")
    run_train(tiny_argv(data_root, "PromptSRC", bare))
    log = max((p for p in bare.iterdir() if p.name.startswith("log.txt")),
              key=lambda p: p.stat().st_mtime).read_text()
    assert "leaves the missing epochs out" in log
    states = torch.load(bare / "VLPromptLearner" / GPA_STATES_FILE, weights_only=True)
    final = torch.load(bare / "VLPromptLearner" / "model.pth.tar-3",
                       weights_only=True)["state_dict"]
    assert states["epochs"] == [3]
    for name in LEARNED:
        assert torch.allclose(final[name], states["states"][0][name], atol=1e-6)


def test_checkpoint_reloads_and_transfers_to_new_classes(data_root, trained, tmp_path):
    check_reload_and_new_classes(data_root, "PromptSRC", trained, tmp_path)
