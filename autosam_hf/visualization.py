"""Pictures: a mask drawn over its image, a grid of validation overlays, and training curves."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageFilter

from .atomic_write import write_atomically

PREDICTION_COLOR = (255, 64, 64)
GROUND_TRUTH_COLOR = (64, 255, 64)
CONTOUR_COLOR = (255, 255, 0)


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
) -> None:
    """One row per example: image, ground truth (green), prediction (red); written as a PNG."""
    rows = []
    for image, target, prediction in zip(images, targets, predictions, strict=True):
        tiles = [
            np.asarray(image.convert("RGB")),
            overlay_mask(image, target, GROUND_TRUTH_COLOR, contour_color=None),
            overlay_mask(image, prediction, contour_color=None),
        ]
        rows.append(np.concatenate([np.asarray(PIL.Image.fromarray(t).resize((tile, tile))) for t in tiles], axis=1))
    write_png(np.concatenate(rows, axis=0), path)


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
        row[0].set(title=f"{stage}: training loss", xlabel="step", ylabel="BCE + Dice loss")
        for key in ("val_dice", "val_iou"):
            row[1].plot([r["epoch"] for r in evaluations], [r[key] for r in evaluations], marker="o", label=key)
        row[1].set(title=f"{stage}: validation", xlabel="epoch", ylim=(0, 1))
        row[1].legend()
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png"))
    plt.close(figure)
