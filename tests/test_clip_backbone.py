"""The open_clip backbone: tiny models, local OpenAI files, missing weights, text encoding."""
import time

import pytest
import torch

from clip_backbone.loader import WeightsUnavailableError, build_tiny, load_clip
from clip_backbone.prompted import PromptedTextEncoder, encode_texts
from clip_backbone.tokenizer import tokenize

TEXTS = ["a photo of a dog.", "a photo of a golden retriever, a type of pet.",
         "a centered satellite photo of Annual Crop Land.", "lamp"]


def test_tiny_model_builds_fast_and_deterministically():
    start = time.perf_counter()
    first = build_tiny("tiny-vit")
    assert time.perf_counter() - start < 1.0
    second = build_tiny("tiny-vit")
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert max(p.shape[-1] for n, p in first.named_parameters() if "ln_final" in n) <= 128


def test_weights_are_in_openai_mixed_precision():
    model = load_clip("tiny-vit").model
    assert model.visual.conv1.weight.dtype == torch.float16
    assert model.ln_final.weight.dtype == torch.float32


def _same_outputs(model, reference) -> None:
    tokens = tokenize(TEXTS)
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.encode_text(tokens), reference.encode_text(tokens), atol=1e-5)
        assert torch.allclose(model.encode_image(image), reference.encode_image(image), atol=1e-5)


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-rn"])
def test_local_checkpoints_load_the_same_model(name, tmp_path):
    reference = load_clip(name).model.float().eval()
    state = load_clip(name).model.state_dict()

    # An open_clip training checkpoint (wrapped, "module." prefixes) of a registered architecture.
    wrapped = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}},
               wrapped)
    loaded = load_clip(name, path=str(wrapped))
    assert loaded.weights_id.startswith("sha256:")
    _same_outputs(loaded.model.float().eval(), reference)

    # The same weights as an OpenAI-style state dict, read by OpenAI's rebuild (QuickGELU).
    plain = tmp_path / "clip.pt"
    torch.save(state, plain)
    _same_outputs(load_clip(name, path=str(plain), tag="openai").model.float().eval(), reference)


def test_a_file_that_is_not_clip_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not an OpenAI CLIP file"):
        load_clip("ViT-B/16", path=str(path))


def test_missing_weights_name_the_file_and_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr("clip_backbone.loader.OPENAI_CACHE", str(tmp_path))
    monkeypatch.setattr("clip_backbone.loader._cached_hub_file", lambda cfg: None)
    monkeypatch.setattr("socket.getaddrinfo", _offline)
    with pytest.raises(WeightsUnavailableError) as info:
        load_clip("ViT-B/16")
    message = str(info.value)
    assert str(tmp_path / "ViT-B-16.pt") in message
    assert "MODEL.BACKBONE.PATH" in message and "huggingface-cli download" in message

    with pytest.raises(WeightsUnavailableError, match="is not a file"):
        load_clip("ViT-B/16", path=str(tmp_path / "nope.pt"))


def _offline(*args, **kwargs):
    raise OSError("no network")


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="Unknown CLIP backbone"):
        load_clip("ViT-Q/99")


def test_truncated_and_full_length_text_encoding_agree():
    model = load_clip("tiny-vit").model.float()
    truncated = encode_texts(model, TEXTS, truncate=True)
    full = encode_texts(model, TEXTS, truncate=False)
    with torch.no_grad():
        reference = model.encode_text(tokenize(TEXTS))
    assert (truncated - full).abs().max() <= 1e-5
    assert (truncated - reference).abs().max() <= 1e-5


def test_deep_prompts_replace_context_positions_only_after_layer_zero():
    model = load_clip("tiny-vit").model.float()
    encoder = PromptedTextEncoder(model)
    tokens = tokenize(["X X a dog.", "X X a cat."])
    embeddings = model.token_embedding(tokens)
    deep = [torch.zeros(2, 64)]
    with torch.no_grad():
        plain = encoder(embeddings, tokens)
        prompted = encoder(embeddings, tokens, deep_prompts=deep)
        changed = embeddings.clone()
        changed[:, 1:3] = 5.0
        prompted_changed = encoder(changed, tokens, deep_prompts=deep)
    assert not torch.allclose(plain, prompted)
    # Layer 0 still sees the input context, so changing it changes the output.
    assert not torch.allclose(prompted, prompted_changed)

