"""Pictures: a mask (or a label map of several classes, with a legend) drawn over its image, a grid of validation
overlays, and training curves."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFilter

from .atomic_write import write_atomically

PREDICTION_COLOR = (255, 64, 64)
GROUND_TRUTH_COLOR = (64, 255, 64)
CONTOUR_COLOR = (255, 255, 0)
# Colours of classes 1, 2, ... of multi-class label maps (repeated beyond their number); green is left to the
# ground truth's contours.
CLASS_COLORS = ((255, 64, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255), (0, 220, 220), (255, 128, 0))


def overlay_mask(
    image: PIL.Image.Image | np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = PREDICTION_COLOR,
    alpha: float = 0.4,
    contour_color: tuple[int, int, int] | None = CONTOUR_COLOR,
) -> np.ndarray:
    """The image as (H, W, 3) uint8 with the (H, W) binary `mask` tinted in `color` and its contour drawn.

    The contour is about 1/400 of the longer side thick (at least one pixel); `contour_color=None` draws it in
    `color`.
    """
    image = np.asarray(image.convert("RGB") if isinstance(image, PIL.Image.Image) else image)
    mask = np.asarray(mask).astype(bool)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask is {mask.shape} but the image is {image.shape[:2]} (height, width)")
    overlay = image.astype(np.float32)
    overlay[mask] = (1 - alpha) * overlay[mask] + alpha * np.asarray(color, dtype=np.float32)
    thickness = max(1, round(max(mask.shape) / 400))
    eroded = PIL.Image.fromarray(mask.astype(np.uint8) * 255).filter(PIL.ImageFilter.MinFilter(2 * thickness + 1))
    overlay[mask & (np.asarray(eroded) == 0)] = contour_color or color
    return overlay.round().astype(np.uint8)


def class_colors(id2label: Mapping[int, str]) -> dict[str, tuple[int, int, int]]:
    """Class name → colour for classes 1..K of `id2label` (the background has none)."""
    labels = {int(index): name for index, name in id2label.items()}
    return {labels[index]: CLASS_COLORS[(index - 1) % len(CLASS_COLORS)] for index in range(1, len(labels))}


def overlay_label_map(
    image: PIL.Image.Image | np.ndarray, label_map: np.ndarray, colors: Sequence[tuple[int, int, int]], alpha=0.4
) -> np.ndarray:
    """The image as (H, W, 3) uint8 with each class k of the (H, W) `label_map` (1..K) tinted in `colors[k - 1]`,
    its contour drawn in the same colour."""
    overlay = np.asarray(image.convert("RGB") if isinstance(image, PIL.Image.Image) else image)
    for index, color in enumerate(colors, start=1):
        overlay = overlay_mask(overlay, np.asarray(label_map) == index, color, alpha=alpha, contour_color=None)
    return overlay


def add_legend(image: np.ndarray, colors: Mapping[str, tuple[int, int, int]]) -> np.ndarray:
    """(H, W, 3) uint8 image → (H + h, W, 3) with a legend strip below it: a colour swatch and each class name."""
    line_height = 14
    legend = PIL.Image.new("RGB", (image.shape[1], line_height * len(colors) + 4), (255, 255, 255))
    draw = PIL.ImageDraw.Draw(legend)
    for row, (name, color) in enumerate(colors.items()):
        top = 2 + row * line_height
        draw.rectangle((4, top + 2, 14, top + 11), fill=tuple(color))
        draw.text((20, top), str(name), fill=(0, 0, 0))
    return np.concatenate([np.asarray(image), np.asarray(legend)], axis=0)


def prediction_pictures(prediction: np.ndarray, image: np.ndarray, id2label: Mapping[int, str] | None = None):
    """What is written for one predicted (H, W) label map over its image (H, W, 3): (mask PNG array, overlay).

    Binary (`id2label` None or two labels): the mask as 0/255 and the image with the mask tinted red; more
    classes: the label map itself (values 0..K) and each class tinted in its colour, with a legend."""
    if id2label is None or len(id2label) == 2:
        return np.asarray(prediction).astype(np.uint8) * 255, overlay_mask(image, prediction)
    colors = class_colors(id2label)
    overlay = overlay_label_map(image, prediction, list(colors.values()))
    return np.asarray(prediction).astype(np.uint8), add_legend(overlay, colors)


def write_png(image: np.ndarray | PIL.Image.Image, path: str | os.PathLike) -> None:
    """Write a uint8 (H, W) or (H, W, 3) array (or a PIL image) as PNG, atomically (temporary file, then rename)."""
    image = image if isinstance(image, PIL.Image.Image) else PIL.Image.fromarray(image)
    write_atomically(path, lambda temporary: image.save(temporary, format="PNG"))


def save_overlay_grid(
    images: list[PIL.Image.Image],
    targets: list[np.ndarray],
    predictions: list[np.ndarray],
    path: str | os.PathLike,
    tile: int = 256,
    id2label: Mapping[int, str] | None = None,
) -> None:
    """One row per example: image, ground truth, prediction; written as a PNG. Binary masks (`id2label` None or of
    two labels): ground truth green, prediction red. Label maps of more classes: each class in its colour
    (`class_colors`), with a legend below the grid."""
    colors = class_colors(id2label) if id2label is not None and len(id2label) > 2 else None
    rows = []
    for image, target, prediction in zip(images, targets, predictions, strict=True):
        if colors is None:
            truth = overlay_mask(image, target, GROUND_TRUTH_COLOR, contour_color=None)
            predicted = overlay_mask(image, prediction, contour_color=None)
        else:
            truth, predicted = (
                overlay_label_map(image, labels, list(colors.values())) for labels in (target, prediction)
            )
        tiles = [np.asarray(image.convert("RGB")), truth, predicted]
        rows.append(np.concatenate([np.asarray(PIL.Image.fromarray(t).resize((tile, tile))) for t in tiles], axis=1))
    grid = np.concatenate(rows, axis=0)
    write_png(grid if colors is None else add_legend(grid, colors), path)


def plot_training_curves(log_path: str | os.PathLike, path: str | os.PathLike) -> None:
    """Training loss per step and validation Dice/IoU per epoch, for each stage in a `train_log.jsonl`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    stages = list(dict.fromkeys(record["stage"] for record in records))
    figure, axes = plt.subplots(len(stages), 2, figsize=(10, 3.5 * len(stages)), squeeze=False)
    for row, stage in zip(axes, stages, strict=True):
        steps = [r for r in records if r["stage"] == stage and "loss" in r]
        evaluations = [r for r in records if r["stage"] == stage and "val_dice" in r]
        row[0].plot([r["step"] for r in steps], [r["loss"] for r in steps])
        row[0].set(title=f"{stage}: training loss", xlabel="step", ylabel="classification + Dice loss")
        for key in ("val_dice", "val_iou"):
            row[1].plot([r["epoch"] for r in evaluations], [r[key] for r in evaluations], marker="o", label=key)
        row[1].set(title=f"{stage}: validation", xlabel="epoch", ylim=(0, 1))
        row[1].legend()
    save_figure(figure, path)


def save_figure(figure, path: str | os.PathLike, dpi: int | None = None) -> None:
    """A matplotlib figure as a PNG at `path` (folders made, written atomically), then closed."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(Path(path), lambda temporary: figure.savefig(temporary, format="png", dpi=dpi))
    plt.close(figure)
