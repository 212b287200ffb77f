"""The prompted CLIP text encoder shared by every prompt learner.

A learner assembles token *embeddings* (learned context spliced between CLIP's own token
embeddings) and passes them with the token ids of an equivalent text. The encoder runs CLIP's
causal text transformer and reads the feature at the EOT token (the largest id).

Sequences are cut after the last EOT position in the batch. Every position after a sequence's
EOT is padding that, under the causal mask, can influence nothing at or before its EOT, so the
result equals the full 77-token pass while costing a fraction of it. (Splitting a batch further
by length computes fewer tokens but was measured slower on a CPU: smaller matrix products lose
more than the padding costs.)

``PromptedVisionEncoder`` is the image-side counterpart for learners that also prompt the ViT
image tower (MaPLe, PromptSRC).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .templates import fill
from .tokenizer import encode, tokenize


class PromptedTextEncoder(nn.Module):
    """CLIP's text tower fed with prompt embeddings, optionally with per-layer (deep) prompts."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.register_buffer("attn_mask", clip_model.attn_mask, persistent=False)

    @property
    def num_layers(self) -> int:
        return len(self.transformer.resblocks)

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor,
                deep_prompts: Optional[Sequence[torch.Tensor]] = None,
                truncate: bool = True) -> torch.Tensor:
        """Text features (unnormalised) of ``prompts`` [N, L, D] read at each EOT position.

        ``deep_prompts[i]`` ([n_ctx, D] or [N, n_ctx, D]) replaces token positions
        1..n_ctx at the input of layer i+1, as MaPLe and PromptSRC do; a ``None`` entry
        leaves that layer's input as it is (TCP replaces the tokens at one deep layer only).
        """
        eot = tokenized_prompts.argmax(dim=-1)
        length = int(eot.max().item()) + 1 if truncate else prompts.shape[1]
        x = prompts[:, :length] + self.positional_embedding[:length].to(prompts.dtype)
        mask = self.attn_mask[:length, :length] if self.attn_mask is not None else None

        batch_first = getattr(self.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for index, block in enumerate(self.transformer.resblocks):
            if deep_prompts is not None and 1 <= index <= len(deep_prompts) \
                    and deep_prompts[index - 1] is not None:
                x = self._replace_context(x, deep_prompts[index - 1], batch_first)
            x = block(x, attn_mask=mask)
        if not batch_first:
            x = x.transpose(0, 1)

        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return x @ self.text_projection.to(x.dtype)

    @staticmethod
    def _replace_context(x: torch.Tensor, context: torch.Tensor, batch_first: bool):
        """Overwrite positions 1..n_ctx with ``context`` (shared or per sequence)."""
        if not batch_first:
            x = x.transpose(0, 1)
        n_ctx = context.shape[-2]
        if context.dim() == 2:
            context = context.unsqueeze(0).expand(x.shape[0], -1, -1)
        x = torch.cat([x[:, :1], context.to(x.dtype), x[:, 1 + n_ctx:]], dim=1)
        return x if batch_first else x.transpose(0, 1)


@torch.no_grad()
def encode_token_texts(text_encoder: PromptedTextEncoder, token_embedding: nn.Embedding,
                       texts: Sequence[str], dtype: torch.dtype, batch_size: int = 256,
                       truncate: bool = True, progress: bool = False) -> torch.Tensor:
    """Frozen text features (unnormalised, float32, on the encoder's device) of plain texts.

    Texts are encoded in batches sorted by token length, which keeps each batch's truncation
    length tight; the result is in input order.
    """
    device = token_embedding.weight.device
    tokens = tokenize(list(texts), truncate=True)
    order = torch.argsort(tokens.argmax(dim=-1))

    features = torch.empty(len(texts), text_encoder.text_projection.shape[1], device=device)
    batches = range(0, len(texts), batch_size)
    for start in tqdm(batches, desc="encoding texts", disable=None if progress else True,
                      unit="batch"):
        index = order[start:start + batch_size].to(device)
        batch = tokens[index.cpu()].to(device)
        embeddings = token_embedding(batch).to(dtype)
        features[index] = text_encoder(embeddings, batch, truncate=truncate).float()
    return features


@torch.no_grad()
def encode_texts(clip_model: nn.Module, texts: Sequence[str], batch_size: int = 256,
                 truncate: bool = True, progress: bool = False,
                 device: Optional[torch.device] = None) -> torch.Tensor:
    """Frozen CLIP text features (unnormalised, float32, on CPU) of plain texts.

    Runs where CLIP's token embedding is, unless ``device`` says otherwise (CLIP is moved).
    """
    if device is not None:
        clip_model.to(device)
    encoder = PromptedTextEncoder(clip_model).to(clip_model.token_embedding.weight.device)
    return encode_token_texts(encoder, clip_model.token_embedding, texts,
                              clip_model.visual.conv1.weight.dtype, batch_size, truncate,
                              progress).cpu()


def encode_labels(clip_model: nn.Module, labels: Sequence[str], template: str,
                  batch_size: int = 256, progress: bool = False,
                  device: Optional[torch.device] = None) -> torch.Tensor:
    """Normalised zero-shot features (float32, CPU) of label names filled into ``template``."""
    texts = [fill(template, label) for label in labels]
    return F.normalize(encode_texts(clip_model, texts, batch_size, progress=progress,
                                    device=device), dim=-1)


class LabelPrompts:
    """The fixed token embeddings around a learned context, for a list of label names.

    For prompts ``"<context text> <name>."`` it holds the SOT embedding (``prefix``), the
    embeddings after the context (``suffix``: name, period, EOT, padding), the token ids
    (for EOT pooling) and each name's BPE length (for middle/front class-token positions).
    """

    def __init__(self, names, prefix: torch.Tensor, suffix: torch.Tensor,
                 tokenized: torch.Tensor, name_lens):
        self.names = list(names)
        self.prefix = prefix
        self.suffix = suffix
        self.tokenized = tokenized
        self.name_lens = list(name_lens)

    def __len__(self) -> int:
        return len(self.names)

    def to(self, device) -> "LabelPrompts":
        return LabelPrompts(self.names, self.prefix.to(device), self.suffix.to(device),
                            self.tokenized.to(device), self.name_lens)


@torch.no_grad()
def build_label_prompts(token_embedding: nn.Embedding, names: Sequence[str], context_text: str,
                        n_ctx: int, dtype: torch.dtype, template: str = "{}.") -> LabelPrompts:
    """Tokenise ``"<context_text> <name>."`` per name and split around the n_ctx context slots.

    ``template`` is the fixed text after the context (``{}`` stands for the name); its default
    gives the prompt above.
    """

    names = [name.replace("_", " ") for name in names]
    bodies = [template.format(name) for name in names]
    texts = [f"{context_text} {body}" if context_text else body for body in bodies]
    tokenized = tokenize(texts).to(token_embedding.weight.device)
    embedding = token_embedding(tokenized).to(dtype)
    return LabelPrompts(
        names,
        prefix=embedding[:, :1, :],
        suffix=embedding[:, 1 + n_ctx:, :],
        tokenized=tokenized,
        name_lens=[len(encode(name)) for name in names],
    )


class ClassPromptLearner(nn.Module):
    """Base of prompt learners: keeps the training class names' fixed prompt pieces.

    They are buffers so they follow the model to its device; ``token_prefix`` and
    ``token_suffix`` are saved (as CoOp saves them) but dropped when a checkpoint is loaded,
    because they encode the class names of the run that saved it.
    """

    context_text = ""  # the words the context stands in for (its tokens' count is n_ctx)
    n_ctx = 0
    name_template = "{}."  # the fixed text after the context; {} is the label name

    def register_class_prompts(self, labels: LabelPrompts) -> None:
        self.register_buffer("token_prefix", labels.prefix)
        self.register_buffer("token_suffix", labels.suffix)
        self.register_buffer("tokenized_prompts", labels.tokenized, persistent=False)
        self.classnames = labels.names
        self.name_lens = labels.name_lens

    @property
    def class_prompts(self) -> LabelPrompts:
        return LabelPrompts(self.classnames, self.token_prefix, self.token_suffix,
                            self.tokenized_prompts, self.name_lens)


class PromptedCLIP(nn.Module):
    """Base of the learners' models: frozen CLIP's text side and prompts for any label names.

    A subclass sets ``prompt_learner`` (a ``ClassPromptLearner``) and its image path;
    ``label_prompts`` then builds the fixed pieces of its prompts for arbitrary names (new
    classes, outlier labels), exactly as it built those of the training class names.
    """

    prompt_learner: ClassPromptLearner

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.text_encoder = PromptedTextEncoder(clip_model)
        self.token_embedding = clip_model.token_embedding
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.visual.conv1.weight.dtype

    def label_prompts(self, names: Sequence[str]) -> LabelPrompts:
        """Fixed prompt pieces for arbitrary label names (e.g. outlier labels)."""
        learner = self.prompt_learner
        return build_label_prompts(self.token_embedding, names, learner.context_text,
                                   learner.n_ctx, self.dtype, learner.name_template)


class PromptedVisionEncoder(nn.Module):
    """CLIP's ViT image tower with learnable tokens appended after the class and patch tokens.

    Shallow prompts ([n_ctx, W] or [B, n_ctx, W]) are appended after the positional embedding,
    before ``ln_pre``; ``deep_prompts[i]`` replaces the last n_ctx tokens at the input of layer
    i+1 (MaPLe, PromptSRC). Without prompts the result equals ``clip_model.visual(image)``.
    """

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        visual = clip_model.visual
        if not hasattr(visual, "class_embedding") or not hasattr(visual, "transformer"):
            raise ValueError(f"Vision prompts need a ViT image encoder, but this CLIP's is "
                             f"{type(visual).__name__} (a ResNet backbone has no tokens to "
                             "prompt); use a ViT backbone such as ViT-B/16")
        if getattr(visual, "attn_pool", None) is not None or \
                getattr(visual, "pool_type", "tok") != "tok":
            raise ValueError("Vision prompts need a ViT that reads its feature at the class "
                             "token (CLIP's design); this one uses another pooling")
        self.visual = visual

    @property
    def num_layers(self) -> int:
        return len(self.visual.transformer.resblocks)

    @property
    def width(self) -> int:
        return self.visual.class_embedding.shape[-1]

    def forward(self, image: torch.Tensor, prompts: Optional[torch.Tensor] = None,
                deep_prompts: Optional[Sequence[Optional[torch.Tensor]]] = None
                ) -> torch.Tensor:
        """Image features (unnormalised) of ``image`` (already in the tower's dtype).

        A ``None`` entry of ``deep_prompts`` leaves that layer's prompt tokens as the previous
        layer produced them.
        """
        self._check_prompts(prompts, deep_prompts)
        visual = self.visual

        x = visual.conv1(image)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        class_token = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([class_token, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.patch_dropout(x)
        if prompts is not None:
            x = torch.cat([x, self._per_image(prompts, x)], dim=1)
        x = visual.ln_pre(x)

        batch_first = getattr(visual.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1).contiguous()
        for index, block in enumerate(visual.transformer.resblocks):
            if deep_prompts is not None and 1 <= index <= len(deep_prompts) \
                    and deep_prompts[index - 1] is not None:
                x = self._replace_last(x, deep_prompts[index - 1], batch_first)
            x = block(x, attn_mask=None)
        if not batch_first:
            x = x.transpose(0, 1)

        x = visual.ln_post(x[:, 0])
        return x @ visual.proj if visual.proj is not None else x

    def _check_prompts(self, prompts, deep_prompts) -> None:
        if not deep_prompts:
            return
        if prompts is None:
            raise ValueError("Deep vision prompts replace the appended prompt tokens, so they "
                             "need shallow prompts as well")
        if len(deep_prompts) > self.num_layers - 1:
            raise ValueError(f"{len(deep_prompts)} deep vision prompts address layers 1.."
                             f"{len(deep_prompts)}, but the vision transformer has "
                             f"{self.num_layers} layers (0..{self.num_layers - 1})")
        n_ctx = prompts.shape[-2]
        for deep in deep_prompts:
            if deep is not None and deep.shape[-2] != n_ctx:
                raise ValueError(f"Every deep vision prompt must have the shallow prompts' "
                                 f"{n_ctx} tokens, got {deep.shape[-2]}")

    @staticmethod
    def _per_image(prompts: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``prompts`` as [B, n_ctx, W] in the activations' dtype (shared or per image)."""
        if prompts.dim() == 2:
            prompts = prompts.unsqueeze(0).expand(x.shape[0], -1, -1)
        return prompts.to(x.dtype)

    def _replace_last(self, x: torch.Tensor, prompts: torch.Tensor, batch_first: bool):
        """Overwrite the last n_ctx tokens with ``prompts``."""
        if not batch_first:
            x = x.transpose(0, 1)
        x = torch.cat([x[:, :x.shape[1] - prompts.shape[-2]], self._per_image(prompts, x)],
                      dim=1)
        return x if batch_first else x.transpose(0, 1)
