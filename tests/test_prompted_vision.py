"""The prompted ViT image encoder: equal to CLIP's without prompts, prompts where they belong."""
import copy

import open_clip
import pytest
import torch
from open_clip.model import CLIP

from clip_backbone.loader import load_clip
from clip_backbone.prompted import PromptedVisionEncoder


def wide_tiny_clip(layers: int = 4, text_width: int = 64, vision_width: int = 128) -> CLIP:
    """A random fp32 CLIP whose towers differ in width and have ``layers`` layers each, so
    that widths and depths taken from the wrong tower show up."""
    cfg = copy.deepcopy(open_clip.get_model_config("tiny-vit"))
    cfg["vision_cfg"].update(layers=layers, width=vision_width)
    cfg["text_cfg"].update(layers=layers, width=text_width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return CLIP(**cfg).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("make_model", [lambda: load_clip("tiny-vit").model.float(),
                                        wide_tiny_clip],
                         ids=["tiny-vit", "wide-4-layers"])
def test_without_prompts_it_equals_clip_visual(make_model, images):
    model = make_model()
    encoder = PromptedVisionEncoder(model)
    with torch.no_grad():
        expected = model.visual(images)
        assert torch.allclose(encoder(images), expected, atol=1e-5, rtol=0)
        assert torch.allclose(encoder(images, deep_prompts=[]), expected, atol=1e-5, rtol=0)


def capture_blocks(encoder):
    """Record the input and output of every vision transformer block."""
    inputs, outputs = [], []

    def record(module, args, output) -> None:
        inputs.append(args[0].detach())
        outputs.append(output.detach())

    hooks = [block.register_forward_hook(record) for block in encoder.visual.transformer.resblocks]
    return inputs, outputs, hooks


def test_deep_prompts_replace_only_the_prompt_tokens_of_the_layers_they_address(images):
    model = wide_tiny_clip(layers=4)
    encoder = PromptedVisionEncoder(model)
    n_ctx, width = 3, encoder.width
    generator = torch.Generator().manual_seed(1)
    shallow = torch.randn(n_ctx, width, generator=generator)
    deep = [torch.randn(n_ctx, width, generator=generator), None,
            torch.randn(n_ctx, width, generator=generator)]

    inputs, outputs, hooks = capture_blocks(encoder)
    with torch.no_grad():
        shallow_only = encoder(images, shallow)
        prompted = encoder(images, shallow, deep)
    for hook in hooks:
        hook.remove()
    shallow_in, deep_in = inputs[:4], inputs[4:]
    deep_out = outputs[4:]

    # Layer 0: the appended prompts passed through ln_pre; deep prompts play no part there.
    assert deep_in[0].shape == (3, 1 + 16 + n_ctx, width)
    assert torch.equal(deep_in[0], shallow_in[0])
    assert torch.allclose(deep_in[0][:, -n_ctx:], model.visual.ln_pre(shallow).expand(3, -1, -1))
    # Layer 1: the last n_ctx tokens are the deep prompt, the others are layer 0's output.
    assert torch.equal(deep_in[1][:, -n_ctx:], deep[0].expand(3, -1, -1))
    assert torch.equal(deep_in[1][:, :-n_ctx], deep_out[0][:, :-n_ctx])
    assert torch.equal(deep_in[1][:, :-n_ctx], shallow_in[1][:, :-n_ctx])
    # Layer 2 (None): left as layer 1 produced it; layer 3: replaced again.
    assert torch.equal(deep_in[2], deep_out[1])
    assert torch.equal(deep_in[3][:, -n_ctx:], deep[2].expand(3, -1, -1))
    assert torch.equal(deep_in[3][:, :-n_ctx], deep_out[2][:, :-n_ctx])
    assert not torch.allclose(prompted, shallow_only)


def test_prompts_change_the_features_and_receive_gradients(images):
    model = wide_tiny_clip(layers=2)
    encoder = PromptedVisionEncoder(model)
    shallow = (0.02 * torch.randn(2, encoder.width)).requires_grad_()
    deep = (0.02 * torch.randn(2, encoder.width)).requires_grad_()
    features = encoder(images, shallow, [deep])
    assert features.shape == (3, model.visual.output_dim)
    assert not torch.allclose(features, model.visual(images))
    features.pow(2).sum().backward()
    assert shallow.grad.abs().sum() > 0 and deep.grad.abs().sum() > 0


def test_per_image_prompts_are_accepted(images):
    encoder = PromptedVisionEncoder(wide_tiny_clip(layers=2))
    shared = torch.randn(2, encoder.width)
    with torch.no_grad():
        assert torch.allclose(encoder(images, shared), encoder(images, shared.expand(3, -1, -1)))


def test_more_deep_prompts_than_layers_is_a_clear_error(images):
    encoder = PromptedVisionEncoder(load_clip("tiny-vit").model.float())
    prompts = torch.zeros(2, encoder.width)
    with pytest.raises(ValueError, match="vision transformer has 2 layers"):
        encoder(images, prompts, [prompts, prompts])


def test_deep_prompts_need_shallow_prompts_of_the_same_length(images):
    encoder = PromptedVisionEncoder(load_clip("tiny-vit").model.float())
    with pytest.raises(ValueError, match="need shallow prompts"):
        encoder(images, None, [torch.zeros(2, encoder.width)])
    with pytest.raises(ValueError, match="2 tokens, got 3"):
        encoder(images, torch.zeros(2, encoder.width), [torch.zeros(3, encoder.width)])


def test_resnet_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="need a ViT image encoder.*ModifiedResNet"):
        PromptedVisionEncoder(load_clip("tiny-rn").model)
