"""CLIP's byte-pair tokenizer (open_clip's copy) with CLIP's strict length check."""
from typing import List, Union

import torch
from open_clip.tokenizer import SimpleTokenizer

CONTEXT_LENGTH = 77
_tokenizer = SimpleTokenizer(context_length=CONTEXT_LENGTH)
SOT_TOKEN_ID = _tokenizer.sot_token_id
EOT_TOKEN_ID = _tokenizer.eot_token_id


def encode(text: str) -> List[int]:
    """BPE ids of ``text`` without start/end tokens (used for class-name lengths)."""
    return _tokenizer.encode(text)


def tokenize(texts: Union[str, List[str]], context_length: int = CONTEXT_LENGTH,
             truncate: bool = False) -> torch.LongTensor:
    """Token ids ``[SOT] + BPE + [EOT]`` zero-padded to ``context_length``.

    A text that does not fit raises ``ValueError`` unless ``truncate`` is set, as in OpenAI's
    ``clip.tokenize``: a silently cut prompt would move the EOT token the features are read at.
    """
    if isinstance(texts, str):
        texts = [texts]

    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        tokens = [SOT_TOKEN_ID] + encode(text) + [EOT_TOKEN_ID]
        if len(tokens) > context_length:
            if not truncate:
                raise ValueError(f'Text "{text[:60]}..." is longer than the context length '
                                 f"{context_length} of CLIP's text encoder")
            tokens = tokens[:context_length]
            tokens[-1] = EOT_TOKEN_ID
        result[i, :len(tokens)] = torch.tensor(tokens)
    return result
