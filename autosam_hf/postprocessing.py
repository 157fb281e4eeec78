"""Mask logits → each image's prediction at its original size: the one post-processing path of `autosam-predict`,
`autosam-eval` and training validation.

    logits (B, K, 4E, 4E) on SAM's low-resolution canvas (any mode, or SAM given a ground-truth prompt; K = 1 for
    the binary model)
      └─ AutoSamImageProcessor.post_process_class_logits: upsample to SAM's canvas, crop the padding, resize to
         (H_i, W_i), every class alike
           └─ label map: binary: logits > mask_threshold (the model's `config.mask_threshold`; 0.0 is probability
              0.5); K > 1: argmax over [mask_threshold, z_1..z_K] (`segmentation_classes`)

The `image-segmentation` pipeline reaches the same label maps through the processor's
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
from .model.segmentation_classes import class_masks_from_logits, class_probabilities, label_maps_from_logits


@dataclass(frozen=True)
class ImagePrediction:
    """One image's prediction at its original size (H, W), for a model of K classes besides the background.

    class_logits: (K, H, W) float32 logits, on the CPU; label_map: (H, W) uint8, 0 background, k = class k (binary:
    1 = foreground); mask_threshold and class_activation: the rule that made the label map (`segmentation_classes`).
    """

    class_logits: torch.Tensor
    label_map: np.ndarray
    mask_threshold: float = 0.0
    class_activation: str = "softmax"

    @property
    def num_classes(self) -> int:
        return self.class_logits.shape[0]

    @property
    def logits(self) -> torch.Tensor:
        """(H, W) float32 logits of a binary model (K = 1); multi-class predictions have `class_logits`."""
        if self.num_classes != 1:
            raise ValueError(f"a {self.num_classes}-class prediction has class_logits (K, H, W), not one logit map")
        return self.class_logits[0]

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: any class (binary: `logits > mask_threshold`)."""
        return self.label_map > 0

    @property
    def probabilities(self) -> np.ndarray:
        """(H, W) float32 probability of any class: binary sigmoid(logits); K > 1, 1 − P(background) (softmax) or
        1 − Π_k (1 − p_k) (sigmoid)."""
        if self.num_classes == 1:
            return torch.sigmoid(self.logits).numpy()
        per_class = torch.from_numpy(self.class_probabilities)
        if self.class_activation == "softmax":
            return per_class.sum(dim=0).clamp(max=1).numpy()
        return (1 - (1 - per_class).prod(dim=0)).numpy()

    @property
    def class_probabilities(self) -> np.ndarray:
        """(K, H, W) float32 probability of each class (`segmentation_classes.class_probabilities`)."""
        return class_probabilities(self.class_logits, self.class_activation).numpy()

    @property
    def class_masks(self) -> np.ndarray:
        """(K, H, W) bool mask of each class: the label map's (softmax), or z_k > threshold, overlaps allowed
        (sigmoid)."""
        return class_masks_from_logits(self.class_logits, self.mask_threshold, self.class_activation).numpy()


def post_process_predictions(
    processor: AutoSamImageProcessor,
    logits: torch.Tensor,
    original_sizes: Sequence[Sequence[int]] | torch.Tensor,
    mask_threshold: float,
    class_activation: str = "softmax",
) -> list[ImagePrediction]:
    """Turn a batch's mask logits into one `ImagePrediction` per image, at its original size.

    Args:
        processor: the processor that made the batch (its canvas sizes define how the logits map back).
        logits: (B, K, 4E, 4E) mask logits (`outputs.logits` of any mode), on any device, in any float dtype.
        original_sizes: (B, 2) (height, width) of each image, the processor's `original_sizes`.
        mask_threshold: threshold on the logits, `model.config.mask_threshold`.
        class_activation: the model's `config.class_activation` (what K > 1 class probabilities mean).
    """
    per_image_logits = processor.post_process_class_logits(logits.float(), original_sizes)
    return [
        ImagePrediction(
            class_logits=image_logits.cpu(),
            label_map=label_maps_from_logits(image_logits, mask_threshold).to(torch.uint8).cpu().numpy(),
            mask_threshold=mask_threshold,
            class_activation=class_activation,
        )
        for image_logits in per_image_logits
    ]


def model_predictions(
    model, processor: AutoSamImageProcessor, logits: torch.Tensor, original_sizes, mask_threshold: float | None = None
) -> list[ImagePrediction]:
    """`post_process_predictions` with the model's own rule: its `config.mask_threshold` (unless given) and
    `config.class_activation`."""
    threshold = model.config.mask_threshold if mask_threshold is None else mask_threshold
    return post_process_predictions(processor, logits, original_sizes, threshold, model.config.class_activation)


__all__ = ["ImagePrediction", "model_predictions", "post_process_predictions"]
