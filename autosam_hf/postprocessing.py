"""Mask logits → each image's prediction at its original size: the one post-processing path of `autosam-predict`,
`autosam-eval` and training validation.

    logits (B, 1, 4E, 4E) on SAM's low-resolution canvas (any mode, or SAM given a ground-truth prompt)
      └─ AutoSamImageProcessor.post_process_logits: upsample to SAM's canvas, crop the padding, resize to (H_i, W_i)
           └─ mask = logits > mask_threshold  (the model's `config.mask_threshold`; 0.0 is probability 0.5)

The `image-segmentation` pipeline reaches the same masks through the processor's
`post_process_semantic_segmentation`: it thresholds at the processor's `mask_threshold`, which is the model's when
the two were loaded together (`autosam_hf.hub.load_model_and_processor`) and in every folder `autosam-publish`
writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .model import AutoSamImageProcessor


@dataclass(frozen=True)
class ImagePrediction:
    """One image's prediction at its original size (H, W).

    logits: (H, W) float32 mask logits, on the CPU; mask: (H, W) bool, `logits > mask_threshold`.
    """

    logits: torch.Tensor
    mask: np.ndarray

    @property
    def probabilities(self) -> np.ndarray:
        """(H, W) float32 foreground probabilities, sigmoid(logits)."""
        return torch.sigmoid(self.logits).numpy()


def post_process_predictions(
    processor: AutoSamImageProcessor,
    logits: torch.Tensor,
    original_sizes: Sequence[Sequence[int]] | torch.Tensor,
    mask_threshold: float,
) -> list[ImagePrediction]:
    """Turn a batch's mask logits into one `ImagePrediction` per image, at its original size.

    Args:
        processor: the processor that made the batch (its canvas sizes define how the logits map back).
        logits: (B, 1, 4E, 4E) mask logits (`outputs.logits` of any mode), on any device, in any float dtype.
        original_sizes: (B, 2) (height, width) of each image, the processor's `original_sizes`.
        mask_threshold: threshold on the logits, `model.config.mask_threshold`.
    """
    per_image_logits = processor.post_process_logits(logits.float(), original_sizes)
    return [
        ImagePrediction(logits=image_logits.cpu(), mask=(image_logits > mask_threshold).cpu().numpy())
        for image_logits in per_image_logits
    ]


__all__ = ["ImagePrediction", "post_process_predictions"]
