"""The processor's image canvases built on the model's device from uint8 images.

`AutoSamImageProcessor` builds its canvases on the CPU (PIL resize, then rescale, normalise and pad in float32), and a
GPU then waits for that work and for a float32 copy of SAM's 1024² canvas (12 MB per image). Here the images travel
as uint8 (pinned and copied without blocking when the device is CUDA) and are resized, rescaled, normalised and
padded where the model runs, by the processor's own rules: its canvas sides and rule (`_reshaped_size`, letterbox or
squash), its rescale and normalisation, and the frozen checkpoint's settings for SAM's canvas (`sam_preprocessing`).

The resize is bilinear with antialiasing, as PIL's, and rounds to uint8 levels as PIL's does, so the canvases equal
the processor's up to one grey level where the two resamplers round differently (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BatchFeature

# Processor settings a canvas's values depend on (besides its size).
NORMALISATION = ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")


def canvas_normalisation(processor, canvas_output: str) -> dict:
    """The rescale and normalisation of a canvas (`"pixel_values"`: SAM's, with the frozen checkpoint's own
    settings; `"prompt_pixel_values"`: g's), as the processor applies them."""
    settings = {key: getattr(processor, key) for key in NORMALISATION}
    if canvas_output == "pixel_values":
        overrides = processor.sam_preprocessing or {}
        settings |= {key: value for key, value in overrides.items() if key in settings}
    return settings


def normalise_on_device(image: torch.Tensor, settings: dict, maximum: float = 255.0) -> torch.Tensor:
    """(B, 3, H, W) float pixel values in 0..`maximum` (255: uint8 levels; 1: kornia's range) → the canvas's values
    (`canvas_normalisation`'s `settings`), in one multiplication, so uint8 levels rescale as the processor's do."""
    scale = 255.0 / maximum * (settings["rescale_factor"] if settings["do_rescale"] else 1.0)
    if scale != 1.0:
        image = image * scale
    if settings["do_normalize"]:
        mean = torch.tensor(settings["image_mean"], dtype=image.dtype, device=image.device)[:, None, None]
        std = torch.tensor(settings["image_std"], dtype=image.dtype, device=image.device)[:, None, None]
        image = (image - mean) / std
    return image


def to_device_uint8(images: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """(H, W, 3) uint8 arrays → (3, H, W) uint8 tensors on `device` (through pinned memory, without blocking, on
    CUDA)."""
    # Decoded images may be read-only views (PIL's buffers): those are copied, as torch cannot wrap them.
    tensors = [torch.from_numpy(np.require(image, requirements=("C", "W"))).permute(2, 0, 1) for image in images]
    if device.type == "cuda":
        return [tensor.pin_memory().to(device, non_blocking=True) for tensor in tensors]
    return [tensor.to(device) for tensor in tensors]


def build_canvas(processor, images: Sequence[torch.Tensor], canvas_output: str, side: int) -> torch.Tensor:
    """One canvas of side `side` for each (3, H, W) uint8 image (on its device): resized by the processor's rule,
    normalised, zero-padded bottom/right after normalising (as the processor pads). Returns (B, 3, side, side)
    float32."""
    settings = canvas_normalisation(processor, canvas_output)
    canvas = torch.zeros(len(images), 3, side, side, device=images[0].device)
    for i, image in enumerate(images):
        height, width = processor._reshaped_size(tuple(image.shape[-2:]), side)
        resized = F.interpolate(image[None].float(), (height, width), mode="bilinear", antialias=True)
        # PIL resizes uint8 images to uint8: the same rounding, before the float arithmetic.
        resized = resized.round_().clamp_(0, 255)
        canvas[i, :, :height, :width] = normalise_on_device(resized, settings)[0]
    return canvas


def preprocess_on_device(
    processor,
    images: Sequence[np.ndarray],
    device: torch.device | str,
    canvases: Sequence[str] | None = None,
    **prompts,
) -> BatchFeature:
    """`processor(images, canvases=canvases, return_tensors="pt", **prompts)` without segmentation maps, its
    canvases built on `device`.

    Args:
        processor: an `AutoSamImageProcessor`.
        images: (H, W, 3) uint8 RGB arrays (`to_rgb_uint8`).
        device: where the canvases are built (the model's device).
        canvases: "sam" and/or "prompt" (default: the processor's own).
        prompts: `input_points` / `input_labels` / `input_boxes` in the images' coordinates (`sparse_prompts`).
    Returns:
        `pixel_values` (B, 3, S, S) and/or `prompt_pixel_values` (B, 3, P, P) float32 on `device`;
        `original_sizes`, `reshaped_input_sizes` (B, 2) and the prompts on the CPU, as the processor gives them.
    """
    from .image_processing_autosam import CANVAS_OUTPUTS, PROMPT_CANVAS, SAM_CANVAS

    device = torch.device(device)
    canvases = processor._resolve_canvases(canvases)
    sizes = [tuple(image.shape[:2]) for image in images]
    on_device = to_device_uint8(images, device)
    sides = {SAM_CANVAS: processor._side(processor.size), PROMPT_CANVAS: processor.prompt_size}
    outputs = {
        CANVAS_OUTPUTS[canvas]: build_canvas(processor, on_device, CANVAS_OUTPUTS[canvas], sides[canvas])
        for canvas in canvases
    }
    outputs["original_sizes"] = torch.tensor(sizes)
    outputs["reshaped_input_sizes"] = torch.tensor([processor.reshaped_size(size) for size in sizes])
    prompts = processor.sparse_prompts(sizes, prompts.get("input_points"), prompts.get("input_labels"),
                                       prompts.get("input_boxes"))  # fmt: skip
    outputs |= {name: torch.from_numpy(array) for name, array in prompts.items()}
    return BatchFeature(outputs)


__all__ = ["build_canvas", "canvas_normalisation", "normalise_on_device", "preprocess_on_device", "to_device_uint8"]
