"""SAM's ViT attention without a wasted copy of its relative-position bias.

SAM's image encoder (`SamVisionAttention`, and SAM-HQ's copy of it) adds a decomposed relative-position bias to
every attention map: `rel_h[..., :, None] + rel_w[..., None, :]`, of shape (B·heads, H, W, H, W). transformers
builds `rel_h` and `rel_w` with `einsum`, whose results come out with permuted strides; the broadcast sum inherits
that layout, so reshaping it to the (B, heads, H·W, H·W) attention mask copies it. In the four global-attention
blocks of ViT-B (64×64 tokens) that mask is 805 MB per image, built and then copied once more: on a 2-core CPU in
float32 about 1.5 s per image of pure memory traffic, ~10% of the encoder. Making the two small terms contiguous
first (12.6 MB each) lets the sum come out contiguous, so the reshape is a view. The arithmetic is unchanged: the
encoder's output is the same bit for bit (tested).
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from transformers.models.sam.modeling_sam import SamVisionAttention
from transformers.models.sam_hq.modeling_sam_hq import SamHQVisionAttention

# SAM's and SAM-HQ's ViT attention (eager and SDPA subclasses); MedSAM is a SAM. Matched by class, not by method
# name: other transformers models define a `get_decomposed_rel_pos` of their own.
VISION_ATTENTION_CLASSES = (SamVisionAttention, SamHQVisionAttention)


def contiguous_decomposed_rel_pos(
    attention: nn.Module,
    query: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> torch.Tensor:
    """`SamVisionAttention.get_decomposed_rel_pos`, returning a contiguous tensor.

    Args:
        query: (B·heads, q_h·q_w, C).
        rel_pos_h, rel_pos_w: (2·max(q, k) − 1, C) relative position tables of the height and width axes.
    Returns:
        (B·heads, q_h, q_w, k_h, k_w), contiguous: bias[b, i, j, k, l] = q[b, (i, j)] · R_h[i − k] + q[b, (i, j)] ·
        R_w[j − l].
    """
    query_height, query_width = q_size
    key_height, key_width = k_size
    relative_position_height = attention.get_rel_pos(query_height, key_height, rel_pos_h)  # (q_h, k_h, C)
    relative_position_width = attention.get_rel_pos(query_width, key_width, rel_pos_w)  # (q_w, k_w, C)
    batch_size, _, channels = query.shape
    reshaped_query = query.reshape(batch_size, query_height, query_width, channels)
    rel_h = torch.einsum("bhwc,hkc->bhwk", reshaped_query, relative_position_height).contiguous()
    rel_w = torch.einsum("bhwc,wkc->bhwk", reshaped_query, relative_position_width).contiguous()
    return rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]


def use_contiguous_relative_position_bias(model: nn.Module) -> int:
    """Give every SAM / SAM-HQ ViT attention inside `model` (eager or SDPA) the contiguous bias above, in place.
    Weights, state dict and outputs are unchanged. Bound with `functools.partial`, so the model still pickles and
    deep-copies. Returns how many modules changed."""
    changed = 0
    for module in model.modules():
        if isinstance(module, VISION_ATTENTION_CLASSES):
            module.get_decomposed_rel_pos = functools.partial(contiguous_decomposed_rel_pos, module)
            changed += 1
    return changed
