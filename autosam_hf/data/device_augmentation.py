"""The training augmentation applied batched on the accelerator, to canvases the data-loader workers leave unaugmented.

`JointAugmentation` augments each view on the CPU, per image at its original size, before the processor makes the
canvases. Here the workers make the canvases of the *unaugmented* image, as uint8 (`AutoSamViewDataset` with
``augment_on_device=True``), with the view's draw (`JointAugmentation.parameters`, drawn on the CPU under the same
``(seed, index, view)`` seed), and `DeviceAugmentation` applies that draw to the whole batch where it arrived:

- colour: kornia's `ColorJitter` steps with the drawn factors, in each view's drawn order; contrast blends with the
  grey mean of the canvas's valid region (the image, not its letterbox padding);
- geometry: the flips, exact, mirrored about the centre of the valid region; then the affine that acts on the
  original image (rotation and isotropic scale about its centre, zero fill), conjugated by the canvas's resize so
  that it acts on the valid region (a squashed canvas makes it anisotropic), one `warp_affine` per canvas: bilinear
  for the images, nearest for the labels, nothing kept outside the valid region;
- then the processor's rescale and normalisation (its SAM-canvas settings for SAM's canvas), and its zero padding.

The batch that comes out has the keys, shapes and dtypes of the CPU path's. Its pixels are those of the same draw
resampled once on the canvas instead of at the original resolution, so they differ by resampling only; flips and an
identity draw give the CPU path's canvases.
"""

from __future__ import annotations

import torch
from kornia.color import rgb_to_grayscale
from kornia.enhance import adjust_brightness_accumulative, adjust_hue, adjust_saturation_with_gray_subtraction
from kornia.geometry.transform import get_affine_matrix2d, warp_affine

from ..model.device_canvas import canvas_normalisation, normalise_on_device
from ..model.image_processing_autosam import OUTPUT_CANVASES
from .augmentation import NEUTRAL_JITTER, JointAugmentation

AUGMENTATION_DEVICES = ("auto", "cpu", "accelerator")
IMAGE_CANVASES = ("pixel_values", "prompt_pixel_values")  # SAM's canvas, g's canvas


def augments_on_device(choice: str, device: torch.device | str) -> bool:
    """Whether `--augmentation_device` `choice` augments batched on the training `device`: "accelerator" always (on
    a CPU run, batched in the main process), "cpu" never (per image in the data-loader workers), "auto" when the
    device is an accelerator."""
    if choice not in AUGMENTATION_DEVICES:
        raise ValueError(f"augmentation_device must be one of {AUGMENTATION_DEVICES}, got {choice!r}")
    return choice == "accelerator" or (choice == "auto" and torch.device(device).type != "cpu")


def canvas_valid_sizes(processor, original_size: tuple[int, int], names) -> dict[str, torch.Tensor]:
    """(height, width) of the part of each canvas in `names` (`IMAGE_CANVASES` and "labels") an image of
    `original_size` covers, as the processor resizes it."""
    return {
        name: torch.tensor(processor._reshaped_size(tuple(original_size), processor.canvas_side(OUTPUT_CANVASES[name])))
        for name in names
    }


def _region(valid: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) bool: true on the top-left `valid` (B, 2) (height, width) of an H×W canvas."""
    rows = torch.arange(shape[0], device=valid.device)[None, :, None] < valid[:, 0, None, None]
    columns = torch.arange(shape[1], device=valid.device)[None, None, :] < valid[:, 1, None, None]
    return (rows & columns)[:, None]


def _contrast(image: torch.Tensor, factor: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """kornia's `adjust_contrast_with_mean_subtraction`, with the grey mean of `region` only."""
    grey = rgb_to_grayscale(image) * region
    mean = grey.sum((-2, -1), keepdim=True) / region.sum((-2, -1), keepdim=True).clamp(min=1)
    factor = factor[:, None, None, None]
    return (image * factor + mean * (1 - factor)).clamp(0.0, 1.0)


def _jitter_steps(region: torch.Tensor):
    """kornia `ColorJitter`'s four steps, in its parameters' order: brightness, contrast, saturation, hue (turns)."""
    return (
        lambda image, factor: adjust_brightness_accumulative(image, factor),
        lambda image, factor: _contrast(image, factor, region),
        lambda image, factor: adjust_saturation_with_gray_subtraction(image, factor),
        lambda image, factor: adjust_hue(image, factor * 2 * torch.pi),
    )


class DeviceAugmentation:
    """Applies the views `AutoSamViewDataset(..., augment_on_device=True)` leaves to it, batched on the batch's
    device (see the module docstring).

    Args:
        augmentation: the views' augmentation; its settings say which steps can apply (the others cost nothing).
        processor: the `AutoSamImageProcessor` that made the canvases: its canvas sides, rescale and normalisation.
    """

    def __init__(self, augmentation: JointAugmentation, processor):
        config = augmentation.config
        self.processor = processor
        self.jitter = any((config.brightness, config.contrast, config.saturation, config.hue))
        self.flips = (config.vertical_flip, config.horizontal_flip)
        self.affine = bool(config.rotation_degrees) or config.scale_range != (1.0, 1.0)

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The augmented batch: uint8 canvases (B, 3, S, S) and/or (B, 3, P, P) → normalised float32, labels (B, 4E,
        4E) moved with them, the `augmentation` entry (the draws, see `JointAugmentation.parameters`, and `sizes`:
        each canvas's valid (height, width)) removed. A batch without one is returned as it is."""
        if "augmentation" not in batch:
            return batch
        batch = dict(batch)
        draws = batch.pop("augmentation")
        original = batch["original_size"]
        matrix = self._original_matrix(draws, original) if self.affine else None
        for name in IMAGE_CANVASES:
            if name in batch:
                batch[name] = self._image(name, batch[name], draws, draws["sizes"][name], original, matrix)
        labels = self._geometry(batch["labels"][:, None], draws, draws["sizes"]["labels"], original, matrix, "nearest")
        batch["labels"] = torch.where(batch["valid_mask"], labels[:, 0], 0.0)
        return batch

    # ------------------------------------------------------------------------------------------------ the steps
    def _image(self, name, canvas, draws, valid, original, matrix) -> torch.Tensor:
        """One image canvas: uint8 (B, 3, H, W) → augmented, rescaled and normalised as the processor does it."""
        region = _region(valid, canvas.shape[-2:])
        image = canvas.float() / 255  # [0, 1], as kornia augments (and the processor's rescale by 1/255, bit for bit)
        if self.jitter:
            image = self._colour(image, draws["jitter_factors"], draws["jitter_order"], region)
            image = image * region  # contrast lifts the padding: it has no content to sample
        image = self._geometry(image, draws, valid, original, matrix, "bilinear")
        image = normalise_on_device(image, canvas_normalisation(self.processor, name), maximum=1.0)
        return torch.where(region, image, 0.0)  # the processor pads after normalising

    def _colour(self, image, factors, order, region) -> torch.Tensor:
        """ColorJitter with each view's factors in its order; a neutral factor is skipped, as kornia skips it."""
        active = factors != torch.tensor(NEUTRAL_JITTER, device=factors.device)
        steps = _jitter_steps(region)
        # Each view has its own order: at every position, each step runs on the batch and is kept where it is that
        # view's step there (no host sync, whatever the orders).
        for position in range(4):
            for step, apply in enumerate(steps):
                selected = active[:, step] & (order[:, position] == step)
                image = torch.where(selected[:, None, None, None], apply(image, factors[:, step]), image)
        return image

    def _geometry(self, canvas, draws, valid, original, matrix, mode) -> torch.Tensor:
        """Flips (exact) then the affine, each about the centre of the `valid` (B, 2) region of `canvas`
        (B, C, H, W)."""
        for axis, flips in enumerate(self.flips):  # 0: vertical (rows), 1: horizontal (columns)
            if not flips:
                continue
            dim, length = canvas.dim() - 2 + axis, canvas.shape[-2 + axis]
            index = torch.arange(length, device=canvas.device)[None]
            extent = valid[:, axis, None]
            mirrored = torch.where(index < extent, extent - 1 - index, index)  # (B, length)
            shape = [canvas.shape[0], 1, 1, 1]
            shape[dim] = length
            flipped = canvas.gather(dim, mirrored.view(shape).expand_as(canvas))
            canvas = torch.where(draws["flips"][:, axis, None, None, None], flipped, canvas)
        if matrix is None:
            return canvas
        # x_canvas = s (x + 1/2) - 1/2 per axis, s = canvas extent / original extent: the resize's pixel centres.
        s = valid.flip(-1).to(matrix.dtype) / original.flip(-1).to(matrix.dtype)  # (B, 2): (x, y)
        to_canvas = torch.zeros_like(matrix)
        to_canvas[:, 0, 0], to_canvas[:, 1, 1], to_canvas[:, 2, 2] = s[:, 0], s[:, 1], 1.0
        to_canvas[:, :2, 2] = (s - 1) / 2
        from_canvas = torch.zeros_like(matrix)
        from_canvas[:, 0, 0], from_canvas[:, 1, 1], from_canvas[:, 2, 2] = 1 / s[:, 0], 1 / s[:, 1], 1.0
        from_canvas[:, :2, 2] = (1 - s) / (2 * s)
        on_canvas = to_canvas @ matrix @ from_canvas
        # RandomAffine's own flags (zero fill, align_corners=False); labels nearest, as kornia resamples masks.
        warped = warp_affine(
            canvas, on_canvas[:, :2], tuple(canvas.shape[-2:]), mode=mode, padding_mode="zeros", align_corners=False
        )
        warped = warped * _region(valid, canvas.shape[-2:])  # the original-size output has nothing outside H×W
        return torch.where(draws["affine"][:, None, None, None], warped, canvas)

    @staticmethod
    def _original_matrix(draws, original) -> torch.Tensor:
        """(B, 3, 3) RandomAffine's matrix on the original images (pixel coordinates), as kornia composes it."""
        height, width = original.float().unbind(-1)
        center = torch.stack([(width - 1) / 2, (height - 1) / 2], dim=-1)
        scale = draws["scale"].float()[:, None].expand(-1, 2)
        return get_affine_matrix2d(torch.zeros_like(center), center, scale, draws["angle"].float())
