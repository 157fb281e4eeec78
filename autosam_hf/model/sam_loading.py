"""Loading a frozen SAM, SAM-HQ or SAM 2 from any of its published forms.

- a transformers checkpoint (Hub id such as `facebook/sam-vit-base`, `syscv-community/sam-hq-vit-base`,
  `facebook/sam2.1-hiera-tiny`, or a local folder): the family is read from its config.json's `model_type`
  (sam, sam_hq, sam2, sam2_video) and the checkpoint loaded by that family's class (`frozen_sam.py`);
- an original segment-anything checkpoint (`sam_vit_b_01ec64.pth`, ...): its keys are converted here and its
  architecture (vit_b / vit_l / vit_h, or any other size) is read off the weights themselves;
- a bare `SamConfig` / `SamHQConfig` / `Sam2Config` (random weights, for tests and timing), or a model.

The checkpoint's own preprocessing, where it differs from SAM's (MedSAM), is read by `load_sam_preprocessing`.
"""

from __future__ import annotations

import json
import math
import os
import re

import torch
from huggingface_hub.errors import EntryNotFoundError
from transformers import PreTrainedConfig, PreTrainedModel, SamConfig, SamModel
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.utils import IMAGE_PROCESSOR_NAME, cached_file

from .frozen_sam import CHECKPOINT_MODEL_TYPES, frozen_sam_class

# Original segment-anything name → transformers name, applied in order (after the layer-specific rules below).
_ORIGINAL_TO_HF_PATTERNS = [
    (r"^image_encoder\.", "vision_encoder."),
    (r"\.blocks\.", ".layers."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"\.norm(\d|_final_attn)", r".layer_norm\1"),
    (r"\.neck\.0\.", ".neck.conv1."),
    (r"\.neck\.1\.", ".neck.layer_norm1."),
    (r"\.neck\.2\.", ".neck.conv2."),
    (r"\.neck\.3\.", ".neck.layer_norm2."),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
    (r"\.point_embeddings\.", ".point_embed."),
]
# Buffers of the original model that transformers' SAM does not keep (normalisation lives in the processor).
_DROPPED_KEYS = ("pixel_mean", "pixel_std")


def _rename_feed_forward(key: str, depths: dict[str, int]) -> str:
    """`<mlp>.layers.0/.../N-1` → `proj_in`, `layers.k-1`, `proj_out` (transformers' SamFeedForward)."""
    match = re.match(r"^(.*(?:iou_prediction_head|output_hypernetworks_mlps\.\d+))\.layers\.(\d+)\.(.*)$", key)
    if match is None:
        return key
    prefix, index, leaf = match.group(1), int(match.group(2)), match.group(3)
    if index == 0:
        return f"{prefix}.proj_in.{leaf}"
    if index == depths[prefix] - 1:
        return f"{prefix}.proj_out.{leaf}"
    return f"{prefix}.layers.{index - 1}.{leaf}"


def convert_original_sam_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original segment-anything state dict to transformers' `SamModel` keys."""
    depths: dict[str, int] = {}
    for key in state_dict:
        match = re.match(r"^(.*(?:iou_prediction_head|output_hypernetworks_mlps\.\d+))\.layers\.(\d+)\.", key)
        if match:
            depths[match.group(1)] = max(depths.get(match.group(1), 0), int(match.group(2)) + 1)

    converted = {}
    for key, value in state_dict.items():
        if key in _DROPPED_KEYS:
            continue
        new_key = _rename_feed_forward(key, depths)
        for pattern, replacement in _ORIGINAL_TO_HF_PATTERNS:
            new_key = re.sub(pattern, replacement, new_key)
        if new_key == "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix":
            # One Gaussian matrix serves both the prompt and the image positional encodings in transformers.
            converted["shared_image_embedding.positional_embedding"] = value
            new_key = "prompt_encoder.shared_embedding.positional_embedding"
        converted[new_key] = value
    return converted


def sam_config_from_original_state_dict(
    state_dict: dict[str, torch.Tensor], mask_decoder_num_attention_heads: int = 8
) -> SamConfig:
    """Read a `SamConfig` off original segment-anything weights (vit_b/l/h, or any other size).

    The mask decoder's head count is not visible in its weights; every released SAM uses 8.
    """
    patch_weight = state_dict["image_encoder.patch_embed.proj.weight"]
    hidden_size, _, patch_size, _ = patch_weight.shape
    grid = state_dict["image_encoder.pos_embed"].shape[1]
    num_layers = 1 + max(int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks."))
    rel_pos_lengths = [state_dict[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] for i in range(num_layers)]
    head_dim = state_dict["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
    global_attn_indexes = [i for i, length in enumerate(rel_pos_lengths) if length == 2 * grid - 1]
    window_lengths = [length for length in rel_pos_lengths if length != 2 * grid - 1]
    window_size = (window_lengths[0] + 1) // 2 if window_lengths else grid
    decoder_dim = state_dict["mask_decoder.iou_token.weight"].shape[1]
    decoder_layers = 1 + max(
        int(k.split(".")[3]) for k in state_dict if k.startswith("mask_decoder.transformer.layers.")
    )
    image_size = grid * patch_size
    return SamConfig(
        vision_config=dict(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=hidden_size // head_dim,
            image_size=image_size,
            patch_size=patch_size,
            output_channels=state_dict["image_encoder.neck.0.weight"].shape[0],
            mlp_dim=state_dict["image_encoder.blocks.0.mlp.lin1.weight"].shape[0],
            window_size=window_size,
            global_attn_indexes=global_attn_indexes,
            num_pos_feats=state_dict["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape[1],
        ),
        prompt_encoder_config=dict(
            hidden_size=decoder_dim,
            image_size=image_size,
            patch_size=patch_size,
            mask_input_channels=state_dict["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        ),
        mask_decoder_config=dict(
            hidden_size=decoder_dim,
            mlp_dim=state_dict["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            num_hidden_layers=decoder_layers,
            num_attention_heads=mask_decoder_num_attention_heads,
            iou_head_hidden_dim=state_dict["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
            iou_head_depth=1
            + max(int(k.split(".")[3]) for k in state_dict if k.startswith("mask_decoder.iou_prediction_head.layers.")),
        ),
    )


def load_original_sam_checkpoint(checkpoint_path: str | os.PathLike) -> SamModel:
    """Build a transformers `SamModel` from an original segment-anything `.pth` file (loaded with weights_only)."""
    try:
        state_dict = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and weights_only errors all mean "not a usable checkpoint"
        raise ValueError(f"Could not read SAM checkpoint {checkpoint_path}: {error}") from error
    if not isinstance(state_dict, dict) or "image_encoder.patch_embed.proj.weight" not in state_dict:
        raise ValueError(
            f"{checkpoint_path} is not an original segment-anything checkpoint "
            "(no 'image_encoder.patch_embed.proj.weight' key)."
        )
    sam = SamModel(sam_config_from_original_state_dict(state_dict))
    converted = convert_original_sam_state_dict(state_dict)
    result = sam.load_state_dict(converted, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{checkpoint_path}: conversion left missing keys {result.missing_keys[:5]} and unexpected keys "
            f"{result.unexpected_keys[:5]}"
        )
    return sam


def load_sam(
    sam: str | os.PathLike | PreTrainedConfig | PreTrainedModel, revision: str | None = None, **from_pretrained_kwargs
) -> PreTrainedModel:
    """A `SamModel`, `SamHQModel` or `Sam2Model` from a Hub id or transformers folder (family from its config.json),
    an original segment-anything `.pth` file, a config of one of the three, or a model of one of them.

    `from_pretrained_kwargs` (`cache_dir`, `token`, `local_files_only`, ...) go to the family's `from_pretrained`.
    Raises ValueError naming `sam` when nothing loadable is there or its type is not supported.
    """
    if isinstance(sam, PreTrainedModel):
        family = frozen_sam_class(sam.config)
        if not isinstance(sam, family.model_class):
            raise ValueError(f"sam: a {type(sam).__name__} is not a {family.model_class.__name__}")
        return sam
    if isinstance(sam, PreTrainedConfig):
        return frozen_sam_class(sam).model_class(sam)
    if os.path.isfile(sam):
        return load_original_sam_checkpoint(sam)
    config = load_sam_config(sam, revision=revision, **from_pretrained_kwargs)
    family = frozen_sam_class(config)
    try:
        return family.model_class.from_pretrained(sam, config=config, revision=revision, **from_pretrained_kwargs)
    except (OSError, ValueError) as error:
        raise ValueError(f"Could not load the {family.model_type} checkpoint {sam!r}: {error}") from error


# A SAM whose dense prompt is SAM ViT-B/L/H's (C, E) = (256, 64) and whose image encoder is as small as SAM's
# config allows: what a SAM-free model (h(g(I)), which reads only that shape) is built around where no SAM config
# can be had. Its random weights are never used to segment.
DENSE_PROMPT_SAM_CONFIG_NAME = "sam-dense-prompt-256x64x64"


def dense_prompt_sam_config() -> SamConfig:
    """The `DENSE_PROMPT_SAM_CONFIG_NAME` config: a 1024² canvas in 16² patches (E = 64), C = 256 channels, a
    one-layer 32-wide encoder."""
    return SamConfig(
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=1,
            mlp_dim=64,
            output_channels=256,
            image_size=1024,
            patch_size=16,
            window_size=14,
            global_attn_indexes=[0],
            num_pos_feats=128,
        ),
        prompt_encoder_config=dict(hidden_size=256, image_size=1024, patch_size=16),
        mask_decoder_config=dict(hidden_size=256),
    )


def load_sam_config(
    sam: str | os.PathLike | PreTrainedConfig, revision: str | None = None, **hub_kwargs
) -> PreTrainedConfig:
    """Only the config of what `load_sam` would load (no weights are read from a Hub id or folder; a `.pth` file
    holds its config only in its weights' shapes). Raises ValueError naming `sam` when there is none to be had."""
    if isinstance(sam, PreTrainedConfig):
        frozen_sam_class(sam)  # an unsupported config fails here, as in load_sam
        return sam
    if os.path.isfile(sam):
        return load_original_sam_checkpoint(sam).config
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(sam, revision=revision, **hub_kwargs)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Could not load SAM from {sam!r}: not an original .pth file, a transformers SAM / SAM-HQ / SAM 2 "
            f"folder, or a reachable Hub id ({error})"
        ) from error
    family = frozen_sam_class(config_dict.get("model_type"), argument=f"sam {str(sam)!r}")
    return family.config_class(**_image_model_config_dict(config_dict))


def _image_model_config_dict(config_dict: dict) -> dict:
    """A checkpoint's config.json as its family's image-model config: a `sam2_video` config keeps only what
    `Sam2Model` reads (its vision, prompt encoder and mask decoder configs), not the video memory settings."""
    if config_dict.get("model_type") == "sam2_video":
        keys = ("vision_config", "prompt_encoder_config", "mask_decoder_config", "initializer_range")
        return {key: config_dict[key] for key in keys if key in config_dict}
    return config_dict


# Settings of a checkpoint's preprocessor_config.json that change the values of SAM's canvas, with the defaults of
# SAM's own processor (and AutoSAM's): MedSAM copies differ in `do_normalize` and `resample`.
SAM_CANVAS_DEFAULTS = {
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": list(IMAGENET_DEFAULT_MEAN),
    "image_std": list(IMAGENET_DEFAULT_STD),
    "resample": int(PILImageResampling.BILINEAR),
}


def load_sam_preprocessing(
    sam: str | os.PathLike, revision: str | None = None, **hub_kwargs
) -> dict[str, object] | None:
    """The SAM-canvas settings (`SAM_CANVAS_DEFAULTS` keys) of a checkpoint's `preprocessor_config.json` that
    differ from SAM's defaults, or None when it has none (or no such file, or the file cannot be fetched)."""
    try:
        path = cached_file(
            sam,
            IMAGE_PROCESSOR_NAME,
            revision=revision,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub_kwargs,
        )
    except (OSError, EntryNotFoundError):
        return None
    if path is None:
        return None
    try:
        with open(path) as file:
            settings = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"Could not read the frozen model's preprocessor config {path}: {error}") from error
    differing = {
        key: settings[key]
        for key, default in SAM_CANVAS_DEFAULTS.items()
        if key in settings and not _same_setting(settings[key], default)
    }
    return differing or None


def _same_setting(value, default) -> bool:
    if isinstance(default, list):
        return isinstance(value, list) and len(value) == len(default) and all(map(math.isclose, value, default))
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isclose(value, default)
    return value == default


__all__ = [
    "CHECKPOINT_MODEL_TYPES",
    "DENSE_PROMPT_SAM_CONFIG_NAME",
    "SAM_CANVAS_DEFAULTS",
    "convert_original_sam_state_dict",
    "dense_prompt_sam_config",
    "load_original_sam_checkpoint",
    "load_sam",
    "load_sam_config",
    "load_sam_preprocessing",
    "sam_config_from_original_state_dict",
]
