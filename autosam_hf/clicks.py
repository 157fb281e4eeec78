"""The simulated user of interactive segmentation: where the next corrective click goes, given the current prediction
and the ground truth. One protocol for `autosam-eval --mode autosam_clicks` and `autosam-train --click_training`.

The protocol of RITM (Sofiiuk et al. 2022), SimpleClick and SAM's interactive evaluation, in its "largest error
region" form:

1. The errors: false negatives (ground truth, not predicted) and false positives (predicted, not ground truth), each
   split into connected regions (4-connectivity, `scipy.ndimage.label`).
2. The largest region by pixel count (ties: false negatives first, then the region met first in row-major order).
3. The click goes to the pixel of that region farthest from its boundary: the maximum of the Euclidean distance
   transform (`scipy.ndimage.distance_transform_edt`) of the region padded by one background pixel, so that the
   image border counts as boundary (as RITM pads); ties go to the first pixel in row-major order.
4. A false-negative region gives a positive click (label 1), a false-positive region a negative one (label 0). A
   prediction without error gives no click: the simulated user is done.

Clicks are (x, y) pixel indices (column, row) of the mask they were computed on; `click_prompts` stacks them into
SAM's `input_points` / `input_labels` layout in that same frame, which the caller maps to SAM's canvas (the
processor's `canvas_coordinates` for original-image pixels; × S / 4E for the low-resolution label canvas). Several
classes: each class's mask is corrected on its own, one click per class (`next_clicks`), on that class's prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

# SamProcessor's label of a padding point (ragged point lists); the model decodes a class whose points are all
# padding as if it had none.
PADDING_LABEL = -10


class Click(NamedTuple):
    """One simulated click: pixel (x = column, y = row) of the mask it was computed on; positive adds to the mask."""

    x: int
    y: int
    positive: bool

    @property
    def label(self) -> int:
        """SAM's point label: 1 positive, 0 negative."""
        return int(self.positive)


def largest_error_region(prediction: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """The largest connected region of false negatives or false positives (module docstring, steps 1-2).

    Args:
        prediction, target: (H, W) binary masks of the same shape.
    Returns:
        (region (H, W) bool, whether it is a false-negative region), or None when the prediction has no error.
    """
    prediction, target = np.asarray(prediction, dtype=bool), np.asarray(target, dtype=bool)
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape}: expected two (H, W) masks")
    best = None  # (size, region, is false negative)
    for errors, is_false_negative in ((target & ~prediction, True), (prediction & ~target, False)):
        regions, count = ndimage.label(errors)
        if count == 0:
            continue
        sizes = np.bincount(regions.ravel())[1:]
        largest = int(np.argmax(sizes))  # the first of equal sizes: labels follow row-major order
        if best is None or sizes[largest] > best[0]:
            best = (sizes[largest], regions == largest + 1, is_false_negative)
    return None if best is None else (best[1], best[2])


def next_click(prediction: np.ndarray, target: np.ndarray) -> Click | None:
    """The simulated user's next click on a binary mask (module docstring), or None when the prediction is exact.

    Args:
        prediction, target: (H, W) binary masks of the same shape (e.g. the prediction and ground truth at the
            original resolution, or on the label canvas).
    """
    found = largest_error_region(prediction, target)
    if found is None:
        return None
    region, is_false_negative = found
    x, y = region_centre(region)
    return Click(x, y, is_false_negative)


def region_centre(region: np.ndarray) -> tuple[int, int]:
    """(x, y): the pixel of a non-empty (H, W) binary region farthest from its boundary (module docstring, step 3;
    also the GT point prompt of `sam_gt_point`)."""
    # One pixel of background around the image, so that the image border counts as the region's boundary too.
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    row, column = np.unravel_index(int(np.argmax(distance)), region.shape)
    return int(column), int(row)


def next_clicks(predictions: np.ndarray, targets: np.ndarray) -> list[Click | None]:
    """`next_click` for each class: predictions and targets (K, H, W) binary, one mask per class."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predicted class masks for {len(targets)} target class masks")
    return [next_click(prediction, target) for prediction, target in zip(predictions, targets, strict=True)]


def click_prompts(
    clicks: Sequence[Sequence[Sequence[Click]]], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clicks so far (per image, per class, in click order) → SAM's sparse point prompt, in the clicks' pixel frame.

    Returns:
        input_points (B, K, N, 2) float32 (x, y) and input_labels (B, K, N) int64 (1 positive, 0 negative), N the
        most clicks of any (image, class); shorter lists padded with points (0, 0) labelled `PADDING_LABEL`.
    """
    batch, classes = len(clicks), max((len(per_image) for per_image in clicks), default=0)
    count = max((len(per_class) for per_image in clicks for per_class in per_image), default=0)
    points = torch.zeros(batch, classes, count, 2, dtype=torch.float32)
    labels = torch.full((batch, classes, count), PADDING_LABEL, dtype=torch.long)
    for image, per_image in enumerate(clicks):
        if len(per_image) != classes:
            raise ValueError(f"image {image}: clicks for {len(per_image)} classes, others have {classes}")
        for index, per_class in enumerate(per_image):
            for position, click in enumerate(per_class):
                points[image, index, position] = torch.tensor([click.x, click.y], dtype=torch.float32)
                labels[image, index, position] = click.label
    return points.to(device), labels.to(device)


__all__ = [
    "Click",
    "PADDING_LABEL",
    "click_prompts",
    "largest_error_region",
    "next_click",
    "next_clicks",
    "region_centre",
]
