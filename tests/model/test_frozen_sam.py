"""The frozen model's families (`frozen_sam.py`): SAM (and MedSAM, a SAM checkpoint), SAM-HQ and SAM 2.

Parity: AutoSAM's decoder call with a dense prompt equals what each transformers class computes from the same
prompt through its own forward (its own encoder included). Then: each family builds with `from_sam`, takes its
cached image features by name, trains g only, saves and loads with equal outputs; SAM 2's processor squashes;
MedSAM's preprocessing is read from its checkpoint folder and applied to SAM's canvas only.

Tiny random configs: SAM-HQ is the tiny SAM of conftest (canvas 24², features (32, 12, 12) and (12, 12, 36));
SAM 2 has a 64² canvas, features (4, 16, 16), (8, 8, 8), (32, 4, 4) and 16² masks.
"""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_sam_config
from transformers import Sam2Config, Sam2Model, SamHQConfig, SamHQModel, SamModel

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.model import AutoSamConfig


def make_tiny_sam_hq_config() -> SamHQConfig:
    tiny = make_tiny_sam_config()
    return SamHQConfig(
        vision_config=tiny.vision_config.to_dict(),
        prompt_encoder_config=tiny.prompt_encoder_config.to_dict(),
        mask_decoder_config={**tiny.mask_decoder_config.to_dict(), "vit_dim": tiny.vision_config.hidden_size},
    )


def make_tiny_sam2_config() -> Sam2Config:
    backbone = dict(
        model_type="sam2_hiera_det_model",
        image_size=[64, 64],
        patch_kernel_size=[7, 7],
        patch_stride=[4, 4],
        patch_padding=[3, 3],
        hidden_size=12,
        num_attention_heads=1,
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[12, 24, 48, 96],
        window_size_per_stage=[4, 4, 4, 4],
        global_attention_blocks=[3],
        query_stride=[2, 2],
        window_positional_embedding_background_size=[2, 2],
    )
    return Sam2Config(
        vision_config=dict(
            backbone_config=backbone,
            backbone_channel_list=[96, 48, 24, 12],
            backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
            fpn_hidden_size=32,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(
            hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=32
        ),
    )


FAMILIES = {
    "sam": (make_tiny_sam_config, SamModel),
    "sam_hq": (make_tiny_sam_hq_config, SamHQModel),
    "sam2": (make_tiny_sam2_config, Sam2Model),
}


def make_model(family: str, seed: int = 0, **config_overrides) -> AutoSamForSegmentation:
    """Tiny AutoSAM around a family's random model, every frozen weight perturbed (seeded) so that the decoder's
    output depends visibly on its inputs (random init leaves it nearly silent)."""
    torch.manual_seed(seed)
    model = AutoSamForSegmentation.from_sam(FAMILIES[family][0](), prompt_input_size=64, **config_overrides)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in model.sam.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def canvases(model: AutoSamForSegmentation, batch_size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    side = model.config.frozen_sam_class.canvas_size(model.config.sam_config)
    generator = torch.Generator().manual_seed(seed)
    return {
        "pixel_values": torch.randn(batch_size, 3, side, side, generator=generator),
        "prompt_pixel_values": torch.randn(batch_size, 3, 64, 64, generator=generator),
    }


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("family,hq_token_only", [("sam", False), ("sam_hq", False), ("sam_hq", True)])
def test_dense_prompt_decoding_equals_the_class_forward_with_a_mask_prompt(family, hq_token_only):
    # SAM and SAM-HQ without points or boxes: the class's forward decodes the mask prompt's dense embedding with no
    # sparse tokens, exactly AutoSAM's call; the class runs its own encoder on the pixels.
    model = make_model(family, hq_token_only=hq_token_only)
    inputs = canvases(model)
    side = 4 * model.config.prompt_embedding_shape[1]
    masks = torch.randn(2, 1, side, side, generator=torch.Generator().manual_seed(3))
    extra = {"hq_token_only": hq_token_only} if family == "sam_hq" else {}
    with torch.no_grad():
        theirs = model.sam(pixel_values=inputs["pixel_values"], input_masks=masks, multimask_output=False, **extra)
        dense = model.sam.prompt_encoder.mask_embed(masks)
        logits, iou_scores = model.decode_masks(model.image_features(inputs["pixel_values"]), dense)
    assert logits.shape == (2, 1, side, side)
    torch.testing.assert_close(logits, theirs.pred_masks[:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(iou_scores, theirs.iou_scores[:, 0], rtol=0, atol=1e-5)
    assert theirs.pred_masks.abs().amax() > 1e-2  # not trivially equal


def test_hq_token_changes_the_mask():
    inputs = canvases(make_model("sam_hq"))
    with torch.no_grad():
        both = make_model("sam_hq")(**inputs).logits
        hq_only = make_model("sam_hq", hq_token_only=True)(**inputs).logits
    assert (both - hq_only).abs().amax() > 1e-3


def test_sam2_dense_prompt_decoding_equals_sam2_forward_with_that_prompt(monkeypatch):
    # Sam2Model.forward always adds a "not-a-point" token when given no points, so its own prompt encoder is replaced
    # by one returning AutoSAM's prompt: no sparse token, g's dense embedding. Everything else is the class's own:
    # its encoder, feature maps, positional embeddings and decoder call.
    model = make_model("sam2")
    inputs = canvases(model)
    channels, side = model.config.prompt_embedding_shape
    dense = torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(3))
    empty_sparse = torch.zeros(2, 1, 0, channels)
    monkeypatch.setattr(model.sam.prompt_encoder, "forward", lambda **kwargs: (empty_sparse, dense))
    with torch.no_grad():
        theirs = model.sam(pixel_values=inputs["pixel_values"], multimask_output=False)
        logits, iou_scores = model.decode_masks(model.image_features(inputs["pixel_values"]), dense)
    assert logits.shape == (2, 1, 16, 16)
    torch.testing.assert_close(logits, theirs.pred_masks[:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(iou_scores, theirs.iou_scores[:, 0], rtol=0, atol=1e-5)
    assert theirs.pred_masks.abs().amax() > 1e-2


def test_sam2_always_answers_with_token_0():
    # The stability fallback (on in eval mode) would swap token 0 for another output token per sample.
    model = make_model("sam2")
    assert model.sam.mask_decoder.dynamic_multimask_via_stability is False
    assert model.config.sam_config.mask_decoder_config.dynamic_multimask_via_stability is False


# ---------------------------------------------------------------------------------------------- building and forward
@pytest.mark.parametrize("family", FAMILIES)
def test_from_sam_builds_each_family_frozen(family):
    make_config, model_class = FAMILIES[family]
    model = AutoSamForSegmentation.from_sam(make_config(), prompt_input_size=64).train()
    assert type(model.sam) is model_class and model.config.sam_config.model_type == family
    assert not model.sam.training and not any(parameter.requires_grad for parameter in model.sam.parameters())
    assert model.prompt_generator.training
    shapes = model.image_feature_shapes()
    features = model.image_features(canvases(model)["pixel_values"])
    assert {name: tuple(tensor.shape[1:]) for name, tensor in features.items()} == shapes
    channels, side = model.config.prompt_embedding_shape
    assert shapes["image_embeddings"] == (channels, side, side)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["autosam", "sam_mask_prompt"])
def test_forward_takes_the_cached_features_by_name(family, mode):
    model = make_model(family)
    inputs = canvases(model)
    with torch.no_grad():
        from_pixels = model(**inputs, mode=mode)
        features = model.image_features(inputs["pixel_values"])
        from_features = model(prompt_pixel_values=inputs["prompt_pixel_values"], **features, mode=mode)
    torch.testing.assert_close(from_features.logits, from_pixels.logits, rtol=0, atol=1e-6)
    if len(features) > 1:  # a decoder that needs more than the image embeddings refuses to run without them
        with pytest.raises(ValueError, match=sorted(set(features) - {"image_embeddings"})[0]):
            model(prompt_pixel_values=inputs["prompt_pixel_values"], image_embeddings=features["image_embeddings"])


@pytest.mark.parametrize("family", ["sam_hq", "sam2"])
def test_a_few_training_steps_change_g_and_not_the_frozen_model(family):
    model = make_model(family).train()
    inputs = canvases(model)
    side = 4 * model.config.prompt_embedding_shape[1]
    labels = torch.zeros(2, side, side)
    labels[:, side // 4 : side // 2] = 1
    frozen = {name: tensor.clone() for name, tensor in model.sam.state_dict().items()}
    g_before = {name: tensor.clone() for name, tensor in model.prompt_generator.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.equal(model.sam.state_dict()[name], tensor) for name, tensor in frozen.items())
    assert all(parameter.grad is None for parameter in model.sam.parameters())
    changed = [not torch.equal(model.prompt_generator.state_dict()[n], t) for n, t in g_before.items()]
    assert any(changed)


@pytest.mark.parametrize("family", ["sam_hq", "sam2"])
def test_save_and_load_give_equal_outputs(family, tmp_path):
    model = make_model(family, hq_token_only=family == "sam_hq")
    processor = AutoSamImageProcessor.from_model_config(model.config)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoSamForSegmentation.from_pretrained(tmp_path).eval()
    loaded_processor = AutoSamImageProcessor.from_pretrained(tmp_path)
    assert type(loaded.sam) is type(model.sam) and loaded.config.hq_token_only == (family == "sam_hq")
    assert loaded_processor.canvas_rule == processor.canvas_rule
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    inputs = processor(image)
    for name, tensor in loaded_processor(image).items():
        assert torch.equal(tensor, inputs[name]), name
    with torch.no_grad():
        for mode in ("autosam", "surrogate"):
            torch.testing.assert_close(loaded(**inputs, mode=mode).logits, model(**inputs, mode=mode).logits)


@pytest.mark.parametrize("family,cache", [("sam2", True), ("sam2", False), ("sam_hq", True)])
def test_training_script_trains_around_the_family(family, cache, shared_data_dir, tmp_path):
    # The training script with a checkpoint folder of the family (--sam), on a few real Kvasir-SEG images.
    from test_train import quick_args

    from autosam_hf.train import main

    make_config, model_class = FAMILIES[family]
    torch.manual_seed(0)
    model_class(make_config()).save_pretrained(tmp_path / "frozen")
    output_dir = tmp_path / "run"
    flags = ["--stage", "prompt", "--max_train_steps", "2"] + ([] if cache else ["--no_cache"])
    main(quick_args(tmp_path / "frozen", shared_data_dir, output_dir, *flags, num_overlays="0"))
    results = json.loads((output_dir / "all_results.json").read_text())
    assert 0.0 <= results["validation"]["kvasir"]["iou"] <= results["validation"]["kvasir"]["dice"] <= 1.0
    model = AutoSamForSegmentation.from_pretrained(output_dir)
    assert type(model.sam) is model_class
    for key, value in model_class.from_pretrained(tmp_path / "frozen").state_dict().items():
        assert torch.equal(model.sam.state_dict()[key], value), key  # the frozen model left untouched
    entries = sorted((output_dir / "embedding_cache").rglob("*.safetensors"))
    assert bool(entries) == cache
    if cache:  # every image feature the family's decoder reads is stored
        from safetensors.torch import load_file

        assert set(load_file(entries[0])) == set(model.image_feature_shapes())


# ---------------------------------------------------------------------------------------------- processors
def test_sam2_processor_squashes_every_canvas_and_post_processes_back():
    model = make_model("sam2")
    processor = AutoSamImageProcessor.from_model_config(model.config)
    assert processor.canvas_rule == "squash"
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), np.uint8)
    mask[:, 20:] = 1  # right half
    outputs = processor(image, segmentation_maps=mask)
    assert outputs["pixel_values"].shape == (1, 3, 64, 64) and outputs["prompt_pixel_values"].shape == (1, 3, 64, 64)
    assert outputs["reshaped_input_sizes"].tolist() == [[64, 64]] and bool(outputs["valid_mask"].all())
    labels = outputs["labels"][0]
    assert labels.shape == (16, 16) and labels[:, :8].sum() == 0 and labels[:, 8:].all()  # no padding, squashed
    # No padding: the bottom rows hold the image, not zeros (normalised zeros would be -2.0 and below).
    expected = np.asarray(PIL.Image.fromarray(image).resize((64, 64), PIL.Image.BILINEAR)) / 255
    expected = (expected - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(outputs["pixel_values"][0].permute(1, 2, 0).numpy(), expected, atol=1e-4)
    logits = torch.where(torch.arange(16) < 8, -5.0, 5.0).expand(1, 1, 16, 16)
    (label_map,) = processor.post_process_semantic_segmentation({"logits": logits}, target_sizes=[(30, 40)])
    assert label_map.shape == (30, 40) and label_map[:, :19].sum() == 0 and label_map[:, 21:].all()


def test_medsam_checkpoint_folder_gives_its_preprocessing_to_sams_canvas_only(tmp_path):
    # MedSAM (wanglab/medsam-vit-base) is a SamModel checkpoint whose processor skips ImageNet normalisation.
    folder = tmp_path / "medsam"
    SamModel(make_tiny_sam_config()).save_pretrained(folder)
    settings = {"image_processor_type": "SamImageProcessor", "do_normalize": False, "resample": 3, "do_pad": True}
    (folder / "preprocessor_config.json").write_text(json.dumps(settings))
    model = AutoSamForSegmentation.from_sam(folder, prompt_input_size=64)
    assert model.config.sam_preprocessing == {"do_normalize": False, "resample": 3}
    processor = AutoSamImageProcessor.from_model_config(model.config)
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    outputs = processor(image)
    expected = np.asarray(PIL.Image.fromarray(image).resize((24, 18), PIL.Image.BICUBIC)) / 255
    np.testing.assert_allclose(outputs["pixel_values"][0, :, :18].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    assert outputs["prompt_pixel_values"].min() < -1  # g's canvas keeps ImageNet statistics
    processor.save_pretrained(tmp_path / "saved")
    reloaded = AutoSamImageProcessor.from_pretrained(tmp_path / "saved")
    assert torch.equal(reloaded(image)["pixel_values"], outputs["pixel_values"])
    # A checkpoint with SAM's own preprocessing sets nothing.
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True, "resample": 2}))
    assert AutoSamForSegmentation.from_sam(folder, prompt_input_size=64).config.sam_preprocessing is None
    # A broken one is named.
    (folder / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="preprocessor config .*medsam/preprocessor_config.json"):
        AutoSamForSegmentation.from_sam(folder, prompt_input_size=64)


# ---------------------------------------------------------------------------------------------- errors
def test_unsupported_model_types_name_the_argument(tmp_path):
    folder = tmp_path / "vit"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match=r"sam .*'vit'.*supported: sam, sam_hq, sam2"):
        AutoSamForSegmentation.from_sam(folder)
    with pytest.raises(ValueError, match=r"sam_config: model_type 'vit'"):
        AutoSamConfig(sam_config={"model_type": "vit"})
