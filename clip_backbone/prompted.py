"""The prompted CLIP text encoder shared by every prompt learner.

A learner assembles token *embeddings* (learned context spliced between CLIP's own token
embeddings) and passes them with the token ids of an equivalent text. The encoder runs CLIP's
causal text transformer and reads the feature at the EOT token (the largest id).

Sequences are cut after the last EOT position in the batch. Every position after a sequence's
EOT is padding that, under the causal mask, can influence nothing at or before its EOT, so the
result equals the full 77-token pass while costing a fraction of it.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from tqdm import tqdm

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
        1..n_ctx at the input of layer i+1, as MaPLe and PromptSRC do.
        """
        eot = tokenized_prompts.argmax(dim=-1)
        length = int(eot.max().item()) + 1 if truncate else prompts.shape[1]
        x = prompts[:, :length] + self.positional_embedding[:length].to(prompts.dtype)
        mask = self.attn_mask[:length, :length] if self.attn_mask is not None else None

        batch_first = getattr(self.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for index, block in enumerate(self.transformer.resblocks):
            if deep_prompts is not None and 1 <= index <= len(deep_prompts):
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
def encode_texts(clip_model: nn.Module, texts: Sequence[str], batch_size: int = 256,
                 truncate: bool = True, progress: bool = False,
                 device: Optional[torch.device] = None) -> torch.Tensor:
    """Frozen CLIP text features (unnormalised, float32, on CPU) of plain texts, in batches.

    Sorting by token length first keeps each batch's truncation length tight.
    """
    encoder = PromptedTextEncoder(clip_model)
    device = device or clip_model.token_embedding.weight.device
    dtype = clip_model.visual.conv1.weight.dtype
    tokens = tokenize(list(texts), truncate=True)
    order = torch.argsort(tokens.argmax(dim=-1))

    features = torch.empty(len(texts), clip_model.text_projection.shape[1])
    batches = range(0, len(texts), batch_size)
    for start in tqdm(batches, desc="encoding texts", disable=not progress, unit="batch"):
        index = order[start:start + batch_size]
        batch = tokens[index].to(device)
        embeddings = clip_model.token_embedding(batch).to(dtype)
        features[index] = encoder(embeddings, batch, truncate=truncate).float().cpu()
    return features


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
                        n_ctx: int, dtype: torch.dtype) -> LabelPrompts:
    """Tokenise ``"<context_text> <name>."`` per name and split around the n_ctx context slots."""

    names = [name.replace("_", " ") for name in names]
    texts = [f"{context_text} {name}." if context_text else f"{name}." for name in names]
    tokenized = tokenize(texts).to(token_embedding.weight.device)
    embedding = token_embedding(tokenized).to(dtype)
    return LabelPrompts(
        names,
        prefix=embedding[:, :1, :],
        suffix=embedding[:, 1 + n_ctx:, :],
        tokenized=tokenized,
        name_lens=[len(encode(name)) for name in names],
    )
