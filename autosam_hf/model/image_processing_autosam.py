"""Image processor for AutoSAM.

Builds on transformers' SAM processor (PIL backend, so torchvision is not needed): resize the longest side to
SAM's input size, rescale, normalise **once** with ImageNet statistics (g reads the same `pixel_values`), pad
bottom/right. Masks go to the low-resolution label canvas with a `valid_mask` that marks the unpadded part, so the
loss never learns the padding. Post-processing crops the padding and resizes back to each original image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_utils import BatchFeature
from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

ImageLike = PIL.Image.Image | np.ndarray | torch.Tensor


def to_rgb_uint8(image: ImageLike, name: str = "image") -> np.ndarray:
    """Any supported image as an (H, W, 3) uint8 RGB array.

    Accepts PIL images (any mode), numpy arrays (H, W) or (H, W, C) and torch tensors (H, W) or (C, H, W), with
    C in {1, 3, 4}; uint8, uint16 (scaled by 1/257), bool, or float in [0, 1]. Alpha is dropped, grey is repeated.
    """
    if isinstance(image, PIL.Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            image = np.asarray(image)
        else:
            return np.asarray(image.convert("RGB"))
    elif isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
        image = np.moveaxis(array, 0, -1) if array.ndim == 3 and array.shape[0] in (1, 3, 4) else array
    elif not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: unsupported type {type(image).__name__}; expected a PIL image, numpy array or tensor")

    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected (H, W) or (H, W, C) with C in 1, 3, 4; got shape {tuple(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: empty image of shape {tuple(image.shape)}")
    image = image[..., :3] if image.shape[-1] == 4 else image
    image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image

    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16 or (np.issubdtype(image.dtype, np.integer) and image.max() > 255):
        if image.max() > 65535 or image.min() < 0:
            raise ValueError(f"{name}: integer values outside 0..65535 cannot be read as an image")
        return (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        if image.min() < 0:
            raise ValueError(f"{name}: negative pixel values")
        return image.astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise ValueError(f"{name}: float images must hold values in [0, 1] (got {image.min()}..{image.max()})")
        return (image * 255).round().astype(np.uint8)
    raise ValueError(f"{name}: unsupported dtype {image.dtype}")


_WIDE_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def binarize_mask(mask: ImageLike, name: str = "mask", instance_labels: bool = False) -> np.ndarray:
    """A ground-truth mask as an (H, W) uint8 array of 0/1. The one binarisation rule of this package:

    - bool and bilevel (PIL "1") masks as they are;
    - 16/32-bit integer masks (instance label maps such as MoNuSeg's) → > 0;
    - 8-bit masks (grey, palette indices; PIL RGB converted to grey; array RGB read through channel 0) whose
      maximum exceeds 1 → > 127 (0/255 masks, JPEG noise included); 8-bit 0/1 masks → > 0;
    - `instance_labels=True` (e.g. GlaS `*_anno.bmp`: 0 background, 1..N glands) → > 0 whatever the depth;
    - float masks → > 0.5.
    """
    if isinstance(mask, PIL.Image.Image):
        if mask.mode == "1":
            return np.asarray(mask, dtype=np.uint8)
        # Palette masks keep their indices: converting them to grey would turn label 1 into its colour's grey.
        keep = mask.mode in _WIDE_INTEGER_MODES or mask.mode in ("L", "P")
        mask = np.asarray(mask if keep else mask.convert("L"))
    elif isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    elif not isinstance(mask, np.ndarray):
        raise TypeError(f"{name}: unsupported type {type(mask).__name__}; expected a PIL image, numpy array or tensor")
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim == 3 and mask.shape[-1] in (1, 3, 4):
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"{name}: expected a single-channel (H, W) mask, got shape {tuple(mask.shape)}")
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if np.issubdtype(mask.dtype, np.floating):
        return (mask > 0.5).astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{name}: unsupported dtype {mask.dtype}")
    if instance_labels or mask.dtype != np.uint8:
        return (mask > 0).astype(np.uint8)
    return (mask > (127 if mask.max() > 1 else 0)).astype(np.uint8)


class AutoSamImageProcessor(SamImageProcessorPil):
    r"""
    Constructs an AutoSAM image processor: SAM's preprocessing (defaults: longest edge 1024, ImageNet mean/std,
    zero padding to 1024×1024; masks to 256×256) plus the valid-region mask and semantic post-processing.

    `__call__(images, segmentation_maps=None, return_tensors="pt")` returns:
        - `pixel_values` (B, 3, 1024, 1024): normalised once, padded bottom/right;
        - `original_sizes` (B, 2), `reshaped_input_sizes` (B, 2): (height, width) before and after resizing;
        - with `segmentation_maps`: `labels` (B, 256, 256) float 0/1 and `valid_mask` (B, 256, 256) bool, true on
          the part of the canvas covered by the image.
    """

    model_input_names = ["pixel_values"]

    @classmethod
    def from_sam_config(cls, sam_config, image_size: int | None = None, **kwargs: Any) -> AutoSamImageProcessor:
        """The processor matching a `SamConfig`: canvas = SAM's input size S, label canvas = 4E (SAM's mask size).

        `image_size` sets a smaller image canvas for models used without SAM (g resizes to its own input size, so
        a canvas of that size loses nothing and costs a fraction); labels stay on the 4E canvas.
        """
        image_size = image_size or sam_config.vision_config.image_size
        mask_size = 4 * sam_config.prompt_encoder_config.image_embedding_size
        return cls(
            size={"longest_edge": image_size},
            pad_size={"height": image_size, "width": image_size},
            mask_size={"longest_edge": mask_size},
            mask_pad_size={"height": mask_size, "width": mask_size},
            **kwargs,
        )

    def __call__(self, images: ImageLike | list[ImageLike], segmentation_maps=None, **kwargs) -> BatchFeature:
        return self.preprocess(images, segmentation_maps=segmentation_maps, **kwargs)

    def preprocess(
        self,
        images: ImageLike | list[ImageLike],
        segmentation_maps: ImageLike | list[ImageLike] | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        images = images if isinstance(images, (list, tuple)) else [images]
        if len(images) == 0:
            raise ValueError("images: got an empty list")
        images = [to_rgb_uint8(image, name=f"images[{i}]") for i, image in enumerate(images)]
        masks = None
        if segmentation_maps is not None:
            masks = segmentation_maps if isinstance(segmentation_maps, (list, tuple)) else [segmentation_maps]
            if len(masks) != len(images):
                raise ValueError(f"segmentation_maps: got {len(masks)} masks for {len(images)} images")
            masks = [binarize_mask(mask, name=f"segmentation_maps[{i}]") for i, mask in enumerate(masks)]
            for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
                if image.shape[:2] != mask.shape:
                    raise ValueError(
                        f"segmentation_maps[{i}] is {mask.shape[0]}x{mask.shape[1]} but images[{i}] is "
                        f"{image.shape[0]}x{image.shape[1]} (height x width)"
                    )
        longest_edges = [(kwargs.get("size") or self.size)["longest_edge"]]
        if masks is not None:
            longest_edges.append((kwargs.get("mask_size") or self.mask_size)["longest_edge"])
        for i, image in enumerate(images):
            if min(self._get_preprocess_shape(image.shape[:2], min(longest_edges))) == 0:
                raise ValueError(
                    f"images[{i}] is {image.shape[0]}x{image.shape[1]}: too elongated to resize to a longest edge of "
                    f"{min(longest_edges)} (its short side would become 0 pixels)"
                )
        # Images are (H, W, 3) now; said explicitly, because SAM's processor guesses the channel axis from the
        # shape and takes an image 1 or 3 pixels high for channels-first.
        kwargs["input_data_format"] = "channels_last"
        outputs = super().preprocess(images, segmentation_maps=masks, return_tensors=return_tensors, **kwargs)
        if masks is not None:
            mask_longest_edge = (kwargs.get("mask_size") or self.mask_size)["longest_edge"]
            canvas = outputs["labels"].shape[-2:]
            valid = np.zeros((len(images), *canvas), dtype=bool)
            for i, image in enumerate(images):
                height, width = self._get_preprocess_shape(image.shape[:2], mask_longest_edge)
                valid[i, :height, :width] = True
            outputs["labels"] = outputs["labels"].float() if return_tensors == "pt" else outputs["labels"]
            outputs["valid_mask"] = torch.from_numpy(valid) if return_tensors == "pt" else valid
        return outputs

    def reshaped_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) an image of `original_size` takes on SAM's canvas."""
        return self._get_preprocess_shape(tuple(original_size), self.size["longest_edge"])

    def post_process_logits(
        self, logits: torch.Tensor, original_sizes: list[tuple[int, int]] | torch.Tensor
    ) -> list[torch.Tensor]:
        """Low-resolution logits (B, 1, h, w) → list of (H_i, W_i) float logits at each original size.

        The canvas is upsampled to SAM's padded input size, the padding is cropped, then the image is resized to
        its original size (SAM's own `post_process_masks`, without binarising).
        """
        if isinstance(original_sizes, torch.Tensor):
            original_sizes = original_sizes.tolist()
        reshaped = [self.reshaped_size(size) for size in original_sizes]
        masks = [logits[i : i + 1].float() for i in range(logits.shape[0])]
        processed = self.post_process_masks(masks, original_sizes, reshaped, binarize=False)
        return [mask[0, 0] for mask in processed]

    def post_process_semantic_segmentation(
        self, outputs, target_sizes: list[tuple[int, int]] | None = None, mask_threshold: float = 0.0
    ) -> list[torch.Tensor]:
        """Label maps (0 background, 1 foreground) at each `target_sizes` entry (the original image sizes).

        Used by the `image-segmentation` pipeline. Without `target_sizes`, the maps stay on the logits' canvas.
        """
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        if target_sizes is None:
            return [(mask[0] > mask_threshold).long() for mask in logits]
        if len(target_sizes) != logits.shape[0]:
            raise ValueError(f"target_sizes has {len(target_sizes)} entries for a batch of {logits.shape[0]}")
        return [(mask > mask_threshold).long() for mask in self.post_process_logits(logits, target_sizes)]


__all__ = ["AutoSamImageProcessor", "binarize_mask", "to_rgb_uint8"]
