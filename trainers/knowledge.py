"""Hand-crafted-prompt ("knowledge") text features and the distance KgCoOp and TCP penalise."""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone.prompted import PromptedTextEncoder, encode_token_texts

# Cosine-similarity eps used by KgCoOp's and TCP's consistency terms.
COSINE_EPS = 1e-7


@torch.no_grad()
def frozen_text_features(text_encoder: PromptedTextEncoder, token_embedding: nn.Embedding,
                         texts: Sequence[str], dtype: torch.dtype) -> torch.Tensor:
    """Normalised frozen-CLIP features [n, d] of plain texts, in ``dtype`` on CLIP's device.

    Learners hold CLIP's parts rather than the CLIP model, and encode label names they were
    not built with (new classes, outlier labels) through their own frozen text encoder.
    """
    if not texts:
        raise ValueError("No texts to encode")
    features = encode_token_texts(text_encoder, token_embedding, texts, dtype)
    return F.normalize(features, dim=-1).to(dtype)


def knowledge_distance(text_features: torch.Tensor, knowledge: torch.Tensor) -> torch.Tensor:
    """``1 - mean_c cos(t_c, k_c)`` between tuned features and their hand-crafted counterparts.

    Computed in fp32: near 1 an fp16 cosine resolves only about 1e-3, too coarse for a loss
    scaled by 8.
    """
    tuned = F.normalize(text_features.float(), dim=-1)
    cosine = F.cosine_similarity(tuned, knowledge.float(), dim=-1, eps=COSINE_EPS)
    return 1.0 - cosine.mean()
