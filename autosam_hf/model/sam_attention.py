"""SAM's ViT attention without a wasted copy of its relative-position bias.

SAM's image encoder (`SamVisionAttention`, and SAM-HQ's copy of it) adds a decomposed relative-position bias to
every attention map: `rel_h[..., :, None] + rel_w[..., None, :]`, of shape (B·heads, H, W, H, W). transformers
builds `rel_h` and `rel_w` with `einsum`, whose results come out with permuted strides; the broadcast sum inherits
that layout, so reshaping it to the (B, heads, H·W, H·W) attention mask copies it. In the four global-attention
blocks of ViT-B (64×64 tokens) that mask is 805 MB per image, built and then copied once more: on a 2-core CPU in
float32 about 1.5 s per image of pure memory traffic, ~10% of the encoder. Making the two small terms contiguous
first (12.6 MB each) lets the sum come out contiguous, so the reshape is a view. The arithmetic is unchanged: the
encoder's output is the same bit for bit (tested).

The SDPA attention can also take the bias without ever building it (`folded_bias_attention`): the decomposed bias
is an inner product too, `rel_h[i, k_h(j)] + rel_w[i, k_w(j)] = [rel_h_i, rel_w_i] · [onehot(k_h(j)), onehot(k_w(j))]`,
so appending `rel_h / scale` and `rel_w / scale` to each query and the two one-hot codes of its position to each key
gives SDPA the biased logits with no mask at all (the value is zero-padded to the same width, which every fused
kernel accepts). The (B, heads, H·W, H·W) mask of a global block (in bfloat16, 400 MB per image at ViT-B's 64×64
tokens) is never allocated; the price is a query/key/value width of C + H + W instead of C, three times ViT-B's
global-attention arithmetic. It is opt-in (`set_relative_position_kernel(model, "folded")`): it pays where memory,
not arithmetic, bounds the batch.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.sam.modeling_sam import SamVisionAttention, SamVisionSdpaAttention
from transformers.models.sam_hq.modeling_sam_hq import SamHQVisionAttention, SamHQVisionSdpaAttention

# SAM's and SAM-HQ's ViT attention (eager and SDPA subclasses); MedSAM is a SAM. Matched by class, not by method
# name: other transformers models define a `get_decomposed_rel_pos` of their own.
VISION_ATTENTION_CLASSES = (SamVisionAttention, SamHQVisionAttention)
SDPA_VISION_ATTENTION_CLASSES = (SamVisionSdpaAttention, SamHQVisionSdpaAttention)

RELATIVE_POSITION_KERNELS = ("dense", "folded")
# Fused attention kernels read query/key widths in multiples of 8 (else PyTorch falls back to its unfused kernel).
_KERNEL_WIDTH_MULTIPLE = 8


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


def _position_codes(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(H·W, H + W): key position (k_h, k_w) → [onehot(k_h), onehot(k_w)], in `like`'s dtype and device."""
    rows = torch.arange(height, device=like.device).repeat_interleave(width)
    columns = torch.arange(width, device=like.device).repeat(height)
    codes = torch.zeros(height * width, height + width, dtype=like.dtype, device=like.device)
    positions = torch.arange(height * width, device=like.device)
    codes[positions, rows] = 1
    codes[positions, height + columns] = 1
    return codes


def folded_bias_attention(
    attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """softmax(scale · q kᵀ + rel_h + rel_w) v by SDPA, the decomposed bias folded into the query and key.

    Args:
        query, key, value: (B, heads, H·W, C).
        size: (H, W), the token grid (query and key alike: SAM's ViT attends within one grid).
    Returns:
        (B, heads, H·W, C), the attention output the dense mask gives, up to rounding.
    """
    height, width = size
    batch_size, heads, tokens, channels = query.shape
    relative_position_height = attention.get_rel_pos(height, height, attention.rel_pos_h)  # (H, H, C)
    relative_position_width = attention.get_rel_pos(width, width, attention.rel_pos_w)  # (W, W, C)
    grid_query = query.reshape(batch_size, heads, height, width, channels)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_query, relative_position_height).reshape(*query.shape[:3], height)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_query, relative_position_width).reshape(*query.shape[:3], width)
    codes = _position_codes(height, width, key).expand(batch_size, heads, -1, -1)
    # SDPA multiplies the whole product by `scale`: dividing the bias terms by it first leaves them unscaled.
    folded_query = torch.cat([query, rel_h / attention.scale, rel_w / attention.scale], dim=-1)
    folded_key = torch.cat([key, codes], dim=-1)
    folded_width = channels + height + width
    padding = -folded_width % _KERNEL_WIDTH_MULTIPLE
    # Zero columns change no product. The value is padded to the same width: flash kernels need one width for all
    # three (and 4-D inputs: 3-D ones fall back to the unfused kernel).
    output = F.scaled_dot_product_attention(
        F.pad(folded_query, (0, padding)),
        F.pad(folded_key, (0, padding)),
        F.pad(value, (0, folded_width + padding - channels)),
        scale=attention.scale,
    )
    return output[..., :channels]


def sdpa_vision_attention_forward(
    attention: nn.Module, hidden_states: torch.Tensor, output_attentions: bool = False
) -> tuple[torch.Tensor, None]:
    """`SamVisionSdpaAttention.forward` (SAM-HQ's is the same) with the bias folded into q and k (module docstring),
    the forward `set_relative_position_kernel(..., "folded")` gives a module; one without relative positions keeps
    transformers' own.

    Args:
        hidden_states: (B, H, W, D) tokens of one grid (a window or the whole image).
    Returns:
        ((B, H, W, D) attention output, None).
    """
    if not attention.use_rel_pos:
        return type(attention).forward(attention, hidden_states, output_attentions)
    batch_size, height, width, _ = hidden_states.shape
    heads = attention.num_attention_heads
    qkv = attention.qkv(hidden_states).reshape(batch_size, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)  # (B, heads, H·W, C)
    output = folded_bias_attention(attention, query, key, value, (height, width))
    output = output.permute(0, 2, 1, 3).reshape(batch_size, height, width, -1)
    return attention.proj(output), None


def set_relative_position_kernel(model: nn.Module, kernel: str) -> int:
    """Choose how every SAM / SAM-HQ SDPA ViT attention inside `model` applies its relative-position bias:
    `"dense"` (transformers' mask, the default) or `"folded"` (folded into q and k). Outputs agree up to rounding.
    Returns how many modules it set."""
    if kernel not in RELATIVE_POSITION_KERNELS:
        raise ValueError(f"relative_position_kernel must be one of {list(RELATIVE_POSITION_KERNELS)}, got {kernel!r}")
    attentions = [module for module in model.modules() if isinstance(module, SDPA_VISION_ATTENTION_CLASSES)]
    for module in attentions:
        module.relative_position_kernel = kernel
        # Only a folded module gets the forward of its own: the dense one keeps transformers' forward untouched.
        if kernel == "folded":
            module.forward = functools.partial(sdpa_vision_attention_forward, module)
        else:
            vars(module).pop("forward", None)
    return len(attentions)


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
