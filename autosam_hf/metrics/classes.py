"""Per-class Dice and IoU of multi-class predictions (label maps 0 background, 1..K the classes).

Every class is scored per image exactly like the binary foreground (`dice_iou_per_image`: the class's predicted
mask against its ground-truth mask at the original resolution; both empty = 1, one empty = 0), then averaged over
images. The macro mean is the mean over the K classes (the background not counted) of those per-class means.
`foreground_dice` / `foreground_iou` score "any class" against "any class" (e.g. nucleus = interior ∪ boundary).

Keys of `MulticlassSegmentationMetrics.compute()`: `dice`, `iou` (macro means, so that tables, model cards and
model selection read multi-class results under the binary names), `dice_<class>`, `iou_<class>` for each class
(`class_metric_key`), `foreground_dice`, `foreground_iou`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from .segmentation import ArrayLike, _to_2d_numpy, dice_iou_per_image


def class_metric_key(metric: str, class_name: str) -> str:
    """The result key of `metric` for one class: `dice_<class>` with the class name in snake case."""
    return f"{metric}_{re.sub(r'[^0-9a-z]+', '_', class_name.lower()).strip('_')}"


# Display names of the per-image scores that are not per-class Dice/IoU (`MulticlassSegmentationMetrics`,
# `InstanceMetrics`).
DETAIL_METRIC_NAMES = {
    "foreground_dice": "Dice (any class)",
    "foreground_iou": "IoU (any class)",
    "aji": "AJI",
    "count_error": "count error",
    "count_relative_error": "relative count error",
    "predicted_instances": "predicted instances",
    "true_instances": "true instances",
}


def metric_display_name(key: str) -> str:
    """A result key's name in tables and model cards: `dice_interior` → "Dice (interior)", `aji` → "AJI"; other keys
    as they are."""
    if key in DETAIL_METRIC_NAMES:
        return DETAIL_METRIC_NAMES[key]
    metric, _, class_name = key.partition("_")
    if metric in ("dice", "iou") and class_name:
        return f"{'Dice' if metric == 'dice' else 'IoU'} ({class_name})"
    return key


def class_names_of(id2label: Mapping[int, str]) -> list[str]:
    """The names of classes 1..K of an `id2label` mapping (keys int or str), the background left out."""
    labels = {int(index): name for index, name in id2label.items()}
    return [labels[index] for index in range(1, len(labels))]


def per_class_dice_iou(pred_class_masks: np.ndarray, target_label_map: ArrayLike) -> np.ndarray:
    """(K, 2) Dice and IoU of each class of one image.

    Args:
        pred_class_masks: (K, H, W) bool, the predicted mask of each class (`ImagePrediction.class_masks`).
        target_label_map: (H, W) ground truth with values 0..K, at the same resolution.
    """
    target = _to_2d_numpy(target_label_map, "target_label_map")
    return np.array(
        [dice_iou_per_image(mask, target == index) for index, mask in enumerate(pred_class_masks, start=1)]
    ).reshape(len(pred_class_masks), 2)


class MulticlassSegmentationMetrics:
    """Accumulates per-class Dice and IoU over images (see the module docstring).

    Args:
        class_names: the names of classes 1..K, in label order.
    """

    def __init__(self, class_names: Sequence[str]):
        if not class_names:
            raise ValueError("class_names: give the names of classes 1..K (at least one)")
        self.class_names = list(class_names)
        self.reset()

    def reset(self) -> None:
        self.scores: list[np.ndarray] = []  # (K, 2) per image
        self.foreground: list[tuple[float, float]] = []

    def __len__(self) -> int:
        return len(self.scores)

    def update(self, pred_class_masks: np.ndarray, target_label_map: ArrayLike) -> dict[str, float]:
        """Adds one image: `pred_class_masks` (K, H, W) bool, `target_label_map` (H, W) 0..K. Returns its scores
        (the keys of `compute`)."""
        pred_class_masks = np.asarray(pred_class_masks, dtype=bool)
        if pred_class_masks.ndim != 3 or len(pred_class_masks) != len(self.class_names):
            raise ValueError(
                f"pred_class_masks must be (K, H, W) with K = {len(self.class_names)}, got {pred_class_masks.shape}"
            )
        target = _to_2d_numpy(target_label_map, "target_label_map")
        scores = per_class_dice_iou(pred_class_masks, target)
        foreground = dice_iou_per_image(pred_class_masks.any(axis=0), target > 0)
        self.scores.append(scores)
        self.foreground.append(foreground)
        return self._summary(scores, np.asarray(foreground))

    def _summary(self, scores: np.ndarray, foreground: np.ndarray) -> dict[str, float]:
        summary = {"dice": float(scores[:, 0].mean()), "iou": float(scores[:, 1].mean())}
        for name, (dice, iou) in zip(self.class_names, scores, strict=True):
            summary[class_metric_key("dice", name)] = float(dice)
            summary[class_metric_key("iou", name)] = float(iou)
        summary["foreground_dice"], summary["foreground_iou"] = float(foreground[0]), float(foreground[1])
        return summary

    def compute(self) -> dict[str, float]:
        """Per-class means over images, their macro means (`dice`, `iou`) and the foreground scores."""
        if not self.scores:
            raise ValueError("No image was added: call `update` at least once before `compute`.")
        return self._summary(np.mean(self.scores, axis=0), np.mean(self.foreground, axis=0))


__all__ = [
    "DETAIL_METRIC_NAMES",
    "MulticlassSegmentationMetrics",
    "class_metric_key",
    "class_names_of",
    "metric_display_name",
    "per_class_dice_iou",
]
