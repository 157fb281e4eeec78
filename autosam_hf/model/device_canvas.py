"""The processor's image canvases built on the model's device from uint8 images.

`AutoSamImageProcessor` builds its canvases on the CPU (PIL resize, then rescale, normalise and pad in float32), and a
GPU then waits for that work and for a float32 copy of SAM's 1024² canvas (12 MB per image). Here the images travel
as uint8 (pinned and copied without blocking when the device is CUDA) and are resized, rescaled, normalised and
padded where the model runs, by the processor's own rules: its canvas sides and rule (`_reshaped_size`, letterbox or
squash) and each canvas's settings (`AutoSamImageProcessor.canvas_settings`: resampling, rescale, normalisation, with
the frozen checkpoint's `sam_preprocessing` on SAM's canvas).

The resize does what `PIL.Image.resize` does (`resize_as_pil`: one antialiased pass per axis, the width first, each
rounded half up to uint8 levels; bilinear, bicubic or nearest, as the settings say). torch's filter weights are exact
where PIL's are fixed-point, so where a value is within rounding of a tie the two land on neighbouring levels: the
canvases equal the processor's up to one uint8 level (`rescale_factor / image_std` after normalising, at most 0.0175
for ImageNet statistics) in a few values (up to 2% of them on real images, the most when shrinking), and up to float32
rounding elsewhere (tested).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BatchFeature
from transformers.image_utils import PILImageResampling

from .image_processing_autosam import CANVAS_OUTPUTS, CANVAS_SETTINGS, OUTPUT_CANVASES, to_rgb_uint8

# Processor settings a canvas's values depend on after the resize (besides its size).
NORMALISATION = ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")
# PIL's filters that torch has: bilinear and bicubic (a = -0.5, as PIL's, when antialiased) filter as PIL's do when
# shrinking; nearest-exact samples the pixel centres as PIL's nearest does.
TORCH_RESAMPLING = {
    PILImageResampling.NEAREST: "nearest-exact",
    PILImageResampling.BILINEAR: "bilinear",
    PILImageResampling.BICUBIC: "bicubic",
}


def canvas_normalisation(processor, canvas_output: str) -> dict:
    """The rescale and normalisation of a canvas (`"pixel_values"`: SAM's, with the frozen checkpoint's own
    settings; `"prompt_pixel_values"`: g's), as the processor applies them (`canvas_settings`)."""
    settings = processor.canvas_settings(OUTPUT_CANVASES[canvas_output])
    return {key: settings[key] for key in NORMALISATION}


def normalise_on_device(image: torch.Tensor, settings: dict, maximum: float = 255.0) -> torch.Tensor:
    """(B, 3, H, W) float pixel values in 0..`maximum` (255: uint8 levels; 1: kornia's range) → the canvas's values
    (`canvas_normalisation`'s `settings`), rescaled in one multiplication, so uint8 levels rescale as the processor's
    do. The mean and std are applied channel by channel as Python numbers: tensors of them would be a host-to-device
    copy, which waits for the device's queued work."""
    scale = 255.0 / maximum * (settings["rescale_factor"] if settings["do_rescale"] else 1.0)
    if scale != 1.0:
        image = image * scale
    if settings["do_normalize"]:
        channels = zip(image.unbind(-3), settings["image_mean"], settings["image_std"], strict=True)
        image = torch.stack([(channel - mean) / std for channel, mean, std in channels], dim=-3)
    return image


def resize_as_pil(image: torch.Tensor, size: tuple[int, int], resample) -> torch.Tensor:
    """(3, H, W) uint8 → (3, h, w) float32 holding uint8 levels, resized as `PIL.Image.resize(..., resample)` does
    it: one pass per axis that changes, the width first, each rounded half up and clipped to 0..255 (bicubic
    overshoot is clipped between the passes, as PIL clips it), antialiased when shrinking."""
    resample = PILImageResampling(resample)
    mode = TORCH_RESAMPLING.get(resample)
    if mode is None:
        names = ", ".join(filter_.name.lower() for filter_ in TORCH_RESAMPLING)
        raise ValueError(f"resample: canvases on the device resample {names}, got {resample.name.lower()}")
    filtered = {"antialias": True, "align_corners": False} if mode != "nearest-exact" else {}
    resized = image[None].float()
    for target in ((resized.shape[-2], size[1]), tuple(size)):
        if tuple(resized.shape[-2:]) != target:
            resized = F.interpolate(resized, target, mode=mode, **filtered).add_(0.5).floor_().clamp_(0, 255)
    return resized[0]


def to_device_uint8(images: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """(H, W, 3) uint8 arrays → (3, H, W) uint8 tensors on `device` (through pinned memory, without blocking, on
    CUDA)."""
    tensors = []
    for image in images:
        with warnings.catch_warnings():  # PIL's buffers are read-only; the tensor is only read (copied from)
            warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
            tensor = torch.from_numpy(np.ascontiguousarray(image))
        if device.type == "cuda":
            tensor = tensor.pin_memory().to(device, non_blocking=True)
        tensors.append(tensor.to(device).permute(2, 0, 1))
    return tensors


def build_canvas(processor, images: Sequence[torch.Tensor], canvas_output: str, side: int) -> torch.Tensor:
    """One canvas of side `side` for each (3, H, W) uint8 image (on its device), in the processor's steps and
    order: resized by its rule (`resize_as_pil`), rescaled, normalised, zero-padded bottom/right after normalising.
    Returns (B, 3, side, side) float32."""
    settings = processor.canvas_settings(OUTPUT_CANVASES[canvas_output])
    if not settings["do_resize"]:
        raise ValueError("do_resize: canvases on the device are always resized to the canvas (do_resize=False)")
    canvas = torch.zeros(len(images), 3, side, side, device=images[0].device)
    for i, image in enumerate(images):
        height, width = processor._reshaped_size(tuple(image.shape[-2:]), side)
        resized = resize_as_pil(image, (height, width), settings["resample"])
        canvas[i, :, :height, :width] = normalise_on_device(resized[None], settings)[0]
    return canvas


def preprocess_on_device(
    processor,
    images: Sequence[np.ndarray | torch.Tensor],
    device: torch.device | str,
    canvases: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
    **prompts,
) -> BatchFeature:
    """`processor(images, canvases=canvases, return_tensors="pt", **prompts)` without segmentation maps, its
    canvases built on `device`.

    Args:
        processor: an `AutoSamImageProcessor`.
        images: RGB images, (H, W, 3) uint8 arrays as they are, anything else as `to_rgb_uint8` reads it.
        device: where the canvases are built (the model's device; "cpu" runs the same code).
        canvases: "sam" and/or "prompt" (default: the processor's own).
        dtype: the canvases' dtype (computed in float32, then cast).
        prompts: `input_points` / `input_labels` / `input_boxes` in the images' coordinates (`sparse_prompts`).
    Returns:
        `pixel_values` (B, 3, S, S) and/or `prompt_pixel_values` (B, 3, P, P) on `device`; `original_sizes`,
        `reshaped_input_sizes` (B, 2) and the prompts on the CPU, as the processor gives them.
    """
    device = torch.device(device)
    canvases = processor._resolve_canvases(canvases)
    unknown = sorted(set(processor.sam_preprocessing or {}) - set(CANVAS_SETTINGS))
    if unknown:  # a setting the device would silently not apply
        raise ValueError(f"sam_preprocessing: {unknown[0]!r} is not one of {list(CANVAS_SETTINGS)}")
    if len(images) == 0:
        raise ValueError("images: got an empty list")
    images = [to_rgb_uint8(image, name=f"images[{i}]") for i, image in enumerate(images)]
    sizes = [tuple(image.shape[:2]) for image in images]
    sides = {canvas: processor.canvas_side(canvas) for canvas in canvases}
    processor._check_resizable(sizes, min(sides.values()))
    prompts = processor.sparse_prompts(sizes, prompts.get("input_points"), prompts.get("input_labels"),
                                       prompts.get("input_boxes"))  # fmt: skip
    on_device = to_device_uint8(images, device)
    outputs = {
        CANVAS_OUTPUTS[canvas]: build_canvas(processor, on_device, CANVAS_OUTPUTS[canvas], sides[canvas]).to(dtype)
        for canvas in canvases
    }
    outputs["original_sizes"] = torch.tensor(sizes)
    outputs["reshaped_input_sizes"] = torch.tensor([processor.reshaped_size(size) for size in sizes])
    outputs |= {name: torch.from_numpy(array) for name, array in prompts.items()}
    return BatchFeature(outputs)


__all__ = [
    "build_canvas",
    "canvas_normalisation",
    "normalise_on_device",
    "preprocess_on_device",
    "resize_as_pil",
    "to_device_uint8",
]
