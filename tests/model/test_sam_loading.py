"""Tests for loading SAM: original segment-anything checkpoints (parity with the original modules, detected
architecture, clear errors on bad files), transformers folders, configs, and offline Hub ids."""

import huggingface_hub
import pytest
import torch
from original_sam import build_tiny_original_sam
from transformers import SamConfig, SamModel

from autosam_hf import AutoSamForSegmentation, load_sam
from autosam_hf.model import convert_original_sam_state_dict, load_original_sam_checkpoint
from autosam_hf.model.sam_loading import dense_prompt_sam_config, load_sam_config, sam_config_from_original_state_dict


class NotAWeight:
    """A pickled object that `torch.load(weights_only=True)` must refuse."""

    def __init__(self):
        self.payload = [1, 2, 3]


@pytest.fixture
def original_sam():
    return build_tiny_original_sam(seed=0)


@pytest.fixture
def original_checkpoint(original_sam, tmp_path):
    path = tmp_path / "sam_tiny_original.pth"
    torch.save(original_sam.state_dict(), path)
    return path


def test_original_checkpoint_matches_original_model(original_sam, original_checkpoint):
    model = AutoSamForSegmentation.from_sam(original_checkpoint, prompt_input_size=64).eval()
    assert model.config.sam_name_or_path == str(original_checkpoint)
    assert model.config.prompt_embedding_shape == (32, 8)

    torch.manual_seed(0)
    pixel_values = torch.randn(2, 3, 32, 32)
    dense_prompt = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        original_embeddings = original_sam.image_encoder(pixel_values)
        image_embeddings = model.get_image_embeddings(pixel_values)
        torch.testing.assert_close(image_embeddings, original_embeddings, rtol=0, atol=1e-4)
        torch.testing.assert_close(
            model.sam.get_image_wide_positional_embeddings(), original_sam.prompt_encoder.get_dense_pe(), rtol=0, atol=0
        )

        embeddings = original_embeddings[:1]
        original_masks, original_iou = original_sam.mask_decoder(
            embeddings, original_sam.prompt_encoder.get_dense_pe(), torch.zeros(1, 0, 32), dense_prompt, False
        )
        masks, iou_scores = model.decode_masks(embeddings, dense_prompt)
        assert masks.shape == original_masks.shape == (1, 1, 32, 32)
        assert iou_scores.shape == original_iou.shape == (1, 1)
        assert original_masks.abs().max() > 0.05  # a meaningful comparison, not two near-zero maps
        torch.testing.assert_close(masks, original_masks, rtol=0, atol=1e-4)
        torch.testing.assert_close(iou_scores, original_iou, rtol=0, atol=1e-4)

        # The mask prompt ("sam_mask_prompt" mode) goes through the converted mask downscaling too.
        mask = torch.randn(1, 1, 32, 32)
        expected = original_sam.prompt_encoder.mask_downscaling(mask)
        torch.testing.assert_close(model.sam.prompt_encoder.mask_embed(mask), expected, rtol=0, atol=1e-5)


def test_original_checkpoint_architecture_is_detected(original_checkpoint):
    sam = load_original_sam_checkpoint(original_checkpoint)
    vision = sam.config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (48, 2, 4)
    assert (vision.window_size, list(vision.global_attn_indexes)) == (3, [1])
    assert (vision.image_size, vision.patch_size, vision.output_channels, vision.mlp_dim) == (32, 4, 32, 192)
    assert vision.num_pos_feats == 16
    prompt = sam.config.prompt_encoder_config
    assert (prompt.hidden_size, prompt.image_embedding_size, prompt.mask_input_channels) == (32, 8, 8)
    decoder = sam.config.mask_decoder_config
    assert (decoder.hidden_size, decoder.mlp_dim, decoder.num_hidden_layers) == (32, 64, 2)
    assert decoder.num_attention_heads == 8  # not visible in the weights: every released SAM's value
    assert (decoder.iou_head_depth, decoder.iou_head_hidden_dim) == (3, 32)


def test_conversion_maps_every_original_key(original_sam):
    state_dict = original_sam.state_dict()
    converted = convert_original_sam_state_dict(state_dict)
    sam = SamModel(sam_config_from_original_state_dict(state_dict))
    assert set(converted) == set(sam.state_dict())
    assert torch.equal(
        converted["shared_image_embedding.positional_embedding"],
        state_dict["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"],
    )
    assert "mask_decoder.iou_prediction_head.proj_out.weight" in converted
    assert "vision_encoder.neck.layer_norm2.weight" in converted


@pytest.mark.parametrize("kind", ["random_bytes", "dict_without_sam_keys", "pickled_object", "not_a_dict"])
def test_bad_checkpoint_raises_value_error_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.pth"
    if kind == "random_bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "dict_without_sam_keys":
        torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3)}, path)
    elif kind == "pickled_object":
        torch.save(NotAWeight(), path)
    else:
        torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match=f"{kind}.pth"):
        AutoSamForSegmentation.from_sam(path)
    with pytest.raises(ValueError, match=f"{kind}.pth"):
        load_sam(str(path))


def test_missing_hub_id_raises_value_error_offline():
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # conftest: tests never reach the network
    with pytest.raises(ValueError, match="autosam-hf-tests/no-such-sam"):
        AutoSamForSegmentation.from_sam("autosam-hf-tests/no-such-sam")


def test_transformers_folder_config_and_model_sources(tiny_sam_config, tmp_path):
    torch.manual_seed(0)
    sam = SamModel(tiny_sam_config)
    sam.save_pretrained(tmp_path / "sam")
    model = AutoSamForSegmentation.from_sam(tmp_path / "sam", prompt_input_size=64)
    assert model.config.sam_name_or_path == str(tmp_path / "sam")
    for name, tensor in sam.state_dict().items():
        assert torch.equal(model.sam.state_dict()[name], tensor), name
    assert not any(parameter.requires_grad for parameter in model.sam.parameters())

    assert load_sam(sam) is sam
    from_config = AutoSamForSegmentation.from_sam(tiny_sam_config, prompt_input_size=64)
    assert from_config.config.sam_name_or_path is None
    assert from_config.config.prompt_embedding_shape == (32, 12)
    with pytest.raises(ValueError, match="not-a-sam"):
        load_sam(tmp_path / "not-a-sam")


def test_a_config_alone_is_read_and_the_dense_prompt_default_has_sams_shape(tmp_path, tiny_sam_config):
    SamModel(tiny_sam_config).save_pretrained(tmp_path / "sam")
    (tmp_path / "sam" / "model.safetensors").unlink()  # the config is all that is read
    config = load_sam_config(tmp_path / "sam")
    assert isinstance(config, SamConfig) and config.to_dict() == SamModel(tiny_sam_config).config.to_dict()
    with pytest.raises(ValueError, match="Could not load SAM from 'nobody/no-such-sam'"):
        load_sam_config("nobody/no-such-sam")
    default = AutoSamForSegmentation.from_sam(dense_prompt_sam_config(), prompt_input_size=64)
    assert default.config.prompt_embedding_shape == (256, 64)
