"""SAM's ViT attention with a contiguous relative-position bias: same numbers, no copy, weights untouched; and with the
bias folded into the query and key: the same attention, without the (H·W)² mask."""

import copy
import pickle

import pytest
import torch
from conftest import make_tiny_model, make_tiny_sam_config
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import SamHQModel, SamModel

from autosam_hf.model.sam_attention import (
    SDPA_VISION_ATTENTION_CLASSES,
    VISION_ATTENTION_CLASSES,
    contiguous_decomposed_rel_pos,
    set_relative_position_kernel,
    use_contiguous_relative_position_bias,
)
from tests.model.test_frozen_sam import make_tiny_sam_hq_config


def vision_attentions(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [module for module in model.modules() if isinstance(module, VISION_ATTENTION_CLASSES)]


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["sam", "sam_hq"])
def test_encoder_output_is_unchanged(family, attn_implementation):
    torch.manual_seed(0)
    if family == "sam":
        sam = SamModel._from_config(make_tiny_sam_config(), attn_implementation=attn_implementation).eval()
    else:
        sam = SamHQModel._from_config(make_tiny_sam_hq_config(), attn_implementation=attn_implementation).eval()
    # Relative-position tables are zero at init: give them values, so the bias is not trivially 0.
    for attention in vision_attentions(sam):
        attention.rel_pos_h.data.normal_()
        attention.rel_pos_w.data.normal_()
    pixels = torch.randn(2, 3, 24, 24)
    state_before = {key: value.clone() for key, value in sam.state_dict().items()}
    with torch.no_grad():
        expected = sam.vision_encoder(pixels)[0]
        changed = use_contiguous_relative_position_bias(sam)
        actual = sam.vision_encoder(pixels)[0]
    assert changed == len(vision_attentions(sam)) == 2  # one windowed and one global block
    assert torch.equal(actual, expected)  # bit for bit
    assert sam.state_dict().keys() == state_before.keys()
    assert all(torch.equal(sam.state_dict()[key], value) for key, value in state_before.items())


@pytest.mark.parametrize("size", [(4, 4), (12, 12), (6, 10)])
def test_bias_equals_transformers_and_is_contiguous(size):
    torch.manual_seed(0)
    sam = SamModel._from_config(make_tiny_sam_config())
    attention = vision_attentions(sam)[0]
    height, width = size
    rel_pos_h = torch.randn(2 * height - 1, 9)
    rel_pos_w = torch.randn(2 * width - 1, 9)
    query = torch.randn(8, height * width, 9)
    expected = attention.get_decomposed_rel_pos(query, rel_pos_h, rel_pos_w, size, size)
    actual = contiguous_decomposed_rel_pos(attention, query, rel_pos_h, rel_pos_w, size, size)
    assert not expected.is_contiguous()  # transformers' layout, which reshaping to the mask copies
    assert actual.is_contiguous()
    assert actual.shape == (8, height, width, height, width)
    assert torch.equal(actual, expected)


def test_autosam_uses_it_and_round_trips(tmp_path):
    """Saved and loaded, deep-copied and pickled whole, the model keeps the bias and its outputs."""
    model = make_tiny_model()
    pixels = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        expected = model.sam.get_image_embeddings(pixels)
    model.save_pretrained(tmp_path)
    copies = {
        "from_pretrained": type(model).from_pretrained(tmp_path),
        "deepcopy": copy.deepcopy(model),
        "pickle": pickle.loads(pickle.dumps(model)),
    }
    for how, loaded in [("original", model), *copies.items()]:
        attentions = vision_attentions(loaded.sam)
        assert attentions and all("get_decomposed_rel_pos" in vars(attention) for attention in attentions), how
        # Bound to the copy's own module, not to the original's.
        assert all(vars(attention)["get_decomposed_rel_pos"].args == (attention,) for attention in attentions), how
        with torch.no_grad():
            assert torch.equal(loaded.sam.get_image_embeddings(pixels), expected), how


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements any operator returns."""

    largest = 0

    def __torch_dispatch__(self, function, types, args=(), kwargs=None):
        output = function(*args, **(kwargs or {}))
        for tensor in output if isinstance(output, (tuple, list)) else [output]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return output


def sdpa_attentions(family: str) -> list[torch.nn.Module]:
    """The SDPA ViT attentions of a tiny SAM / SAM-HQ (one windowed block, one global) with unit-scale weights and
    relative-position tables (the tiny configs initialise near zero, which would make any two paths agree)."""
    torch.manual_seed(0)
    if family == "sam":
        sam = SamModel._from_config(make_tiny_sam_config(), attn_implementation="sdpa").eval()
    else:
        sam = SamHQModel._from_config(make_tiny_sam_hq_config(), attn_implementation="sdpa").eval()
    use_contiguous_relative_position_bias(sam)
    attentions = [module for module in sam.modules() if isinstance(module, SDPA_VISION_ATTENTION_CLASSES)]
    for attention in attentions:
        for parameter in attention.parameters():
            parameter.data.normal_(std=0.5)
    return attentions


def grid_hidden_states(attention: torch.nn.Module, batch_size: int) -> tuple[int, torch.Tensor]:
    """The block's grid side (its relative-position table spans 2·side − 1 offsets) and (B, side, side, D) tokens."""
    side = attention.rel_pos_h.shape[0] // 2 + 1
    return side, torch.randn(batch_size, side, side, attention.qkv.in_features)


def dense_and_folded(attention: torch.nn.Module, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        set_relative_position_kernel(attention, "dense")
        dense = attention(hidden_states)[0]
        set_relative_position_kernel(attention, "folded")
        return dense, attention(hidden_states)[0]


@pytest.mark.parametrize("family", ["sam", "sam_hq"])
def test_folded_bias_equals_the_dense_mask(family):
    """Both kernels in float32, on a windowed (4×4) and the global (12×12) grid: the same attention output."""
    attentions = sdpa_attentions(family)
    assert len(attentions) == 2
    for attention in attentions:
        _, hidden_states = grid_hidden_states(attention, 3)
        dense, folded = dense_and_folded(attention, hidden_states)
        assert dense.abs().max() > 1  # a real signal, not the near-zero tiny initialisation
        # float32 sums in another order: differences of a few ulp of the logits, which are of order 10 here.
        torch.testing.assert_close(folded, dense, atol=2e-4, rtol=1e-4)


def test_folded_bias_allocates_no_mask():
    """The global block: the dense kernel materialises the (B, heads, N, N) mask (N = H·W tokens); the folded one
    never allocates anything that large. Unset, a module takes the dense path."""
    attention = sdpa_attentions("sam")[1]
    side, hidden_states = grid_hidden_states(attention, 2)
    tokens = side * side
    mask_elements = 2 * attention.num_attention_heads * tokens * tokens
    largest = {}
    for kernel in ("unset", "dense", "folded"):
        if kernel != "unset":
            set_relative_position_kernel(attention, kernel)
        with torch.no_grad(), LargestTensor() as recorder:
            attention(hidden_states)
        largest[kernel] = recorder.largest
    assert largest["dense"] >= mask_elements
    channels = attention.qkv.in_features // attention.num_attention_heads
    folded_width = -(-(channels + 2 * side) // 8) * 8  # C + H + W, padded to a multiple of 8
    # Nothing larger than the folded query, key and value themselves.
    assert largest["folded"] == 2 * attention.num_attention_heads * tokens * folded_width < mask_elements
    assert largest["unset"] == largest["dense"]


def test_folded_bias_in_bfloat16_and_kernel_errors():
    attention = sdpa_attentions("sam")[1]
    _, hidden_states = grid_hidden_states(attention, 2)
    reference, _ = dense_and_folded(attention, hidden_states)  # float32, dense; the module is left folded
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        folded = attention(hidden_states)[0].float()
    # bfloat16 keeps 8 significant bits: a relative error of a few 2**-8 on unit-scale outputs.
    assert (folded - reference).abs().max() < 0.05 * reference.abs().max()
    with pytest.raises(ValueError, match="relative_position_kernel must be one of"):
        set_relative_position_kernel(attention, "flash")
