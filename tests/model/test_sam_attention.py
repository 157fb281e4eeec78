"""SAM's ViT attention with a contiguous relative-position bias: same numbers, no copy, weights untouched."""

import copy
import pickle

import pytest
import torch
from conftest import make_tiny_model, make_tiny_sam_config
from transformers import SamHQModel, SamModel

from autosam_hf.model.sam_attention import (
    VISION_ATTENTION_CLASSES,
    contiguous_decomposed_rel_pos,
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
