"""The DOR variant of every learner: the regulariser uses the learner's own prompt path, is
zero at a zero-shot-equivalent start where the learner has one, and trains its prompts."""
import sys

import pytest
import torch

import train
from conftest import tiny_argv
from toolbox import build_trainer
from trainers.base import unwrap
from wordnet_fixture import write_wordnet

# Settings under which each learner starts out computing the zero-shot "a photo of a {}."
# features (None: the learner has no such start, e.g. CoCoOp's meta-network shifts the context).
ZERO_SHOT_START = {
    "CoOpDOR": ["TRAINER.COOP.CTX_INIT", "a photo of a"],
    "KgCoOpDOR": [],
    "MaPLeDOR": ["TRAINER.MAPLE.PROMPT_DEPTH", 1],
    "PromptSRCDOR": ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 1],
    "CoCoOpDOR": None,
    "TCPDOR": None,
}
# Learnable parameters the regulariser must reach, besides the context.
META_NET = {"prompt_learner.meta_net.linear1.weight", "prompt_learner.meta_net.linear2.weight"}
TEXT_PATH_PARAMETERS = {
    "CoCoOpDOR": META_NET,
    "MaPLeDOR": {"prompt_learner.compound_prompts_text.0"},
    "PromptSRCDOR": {"prompt_learner.deep_text_ctx.0"},
    "TCPDOR": META_NET,
}


@pytest.fixture(scope="module")
def wordnet_dir(tmp_path_factory):
    return write_wordnet(str(tmp_path_factory.mktemp("nltk_data")))


def trainer_at_first_epoch(name, data_root, wordnet_dir, tmp_path, *opts):
    argv = tiny_argv(data_root, name, tmp_path / name, "TRAINER.DOR.WORDNET_DIR", wordnet_dir,
                     "TRAINER.DOR.CACHE_DIR", tmp_path / "cache", "TRAINER.DOR.POOL_SIZE", 8,
                     "TRAINER.DOR.NUM_OUTLIERS", 4, *opts)
    trainer = build_trainer(train.setup_cfg(train.parse_args([str(a) for a in argv])))
    stdout = sys.stdout
    trainer.before_train()
    sys.stdout = stdout
    trainer.epoch, trainer.batch_idx, trainer.num_batches = 0, 0, 10
    trainer.before_epoch()
    trainer.dor_images = next(iter(trainer.train_loader_x))["img"][:2].to(trainer.device)
    return trainer


@pytest.mark.parametrize("name", [n for n, opts in ZERO_SHOT_START.items() if opts is not None])
def test_loss_is_zero_at_the_zero_shot_start(name, data_root, wordnet_dir, tmp_path):
    trainer = trainer_at_first_epoch(name, data_root, wordnet_dir, tmp_path,
                                     *ZERO_SHOT_START[name])
    assert abs(trainer.outlier_loss().item()) < 1e-5
    trainer.close_writer()


@pytest.mark.parametrize("name", sorted(ZERO_SHOT_START))
def test_gradient_reaches_the_prompts_and_nothing_frozen(name, data_root, wordnet_dir,
                                                         tmp_path):
    trainer = trainer_at_first_epoch(name, data_root, wordnet_dir, tmp_path)
    model = unwrap(trainer.model)
    with torch.no_grad():  # move off any zero-shot start, where the gradient vanishes
        for param in model.prompt_learner.parameters():
            param.add_(0.05 * torch.randn_like(param))

    loss = trainer.outlier_loss()
    assert loss.item() > 1e-4
    loss.backward()
    reached = {n for n, p in model.named_parameters()
               if p.grad is not None and p.grad.abs().sum() > 0}
    learnable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "prompt_learner.ctx" in reached and reached <= learnable
    assert TEXT_PATH_PARAMETERS.get(name, set()) <= reached
    trainer.close_writer()


@pytest.mark.parametrize("name", sorted(ZERO_SHOT_START))
def test_the_learners_own_terms_and_dor_compose(name, data_root, wordnet_dir, tmp_path):
    trainer = trainer_at_first_epoch(name, data_root, wordnet_dir, tmp_path,
                                     "TRAINER.DOR.LAMBDA", 3.0)
    batch = next(iter(trainer.train_loader_x))
    image, label = trainer.parse_batch_train(batch)[:2]
    loss, terms = trainer.compute_loss(image, label)
    trainer.close_writer()

    learner = build_trainer(train.setup_cfg(train.parse_args([str(a) for a in tiny_argv(
        data_root, name[:-3], tmp_path / name[:-3])])))
    learner.epoch, learner.batch_idx, learner.num_batches = 0, 0, 10
    _, own_terms = learner.compute_loss(image, label)

    assert list(terms)[:2] == ["loss", "loss_task"] and list(terms)[-1] == "loss_dor"
    assert set(own_terms) - {"loss"} <= set(terms)  # e.g. KgCoOp's loss_ce and loss_kg
    assert terms["loss"] == pytest.approx(terms["loss_task"] + 3.0 * terms["loss_dor"],
                                          rel=1e-5)
    assert loss.item() == pytest.approx(terms["loss"], rel=1e-6)
