"""Pictures: a mask drawn over its image, a grid of validation overlays, and training curves."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import PIL.Image

PREDICTION_COLOR = (255, 64, 64)
GROUND_TRUTH_COLOR = (64, 255, 64)


def overlay_mask(
    image: PIL.Image.Image | np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = PREDICTION_COLOR,
    alpha: float = 0.45,
) -> PIL.Image.Image:
    """`image` (H, W, 3) with the (H, W) binary `mask` tinted in `color` and its boundary drawn solid."""
    rgb = np.asarray(image.convert("RGB") if isinstance(image, PIL.Image.Image) else image, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"overlay: image is {rgb.shape[:2]} but mask is {mask.shape}")
    tint = np.asarray(color, dtype=np.float32)
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * tint
    # Boundary: foreground pixels with a background 4-neighbour.
    padded = np.pad(mask, 1, mode="edge")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    rgb[mask & ~interior] = tint
    return PIL.Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))


def save_overlay_grid(
    images: list[PIL.Image.Image], targets: list[np.ndarray], predictions: list[np.ndarray], path: str | os.PathLike,
    tile: int = 256,
) -> None:
    """One row per example: image, ground truth (green), prediction (red); written as a PNG."""
    rows = []
    for image, target, prediction in zip(images, targets, predictions, strict=True):
        tiles = [image.convert("RGB"), overlay_mask(image, target, GROUND_TRUTH_COLOR), overlay_mask(image, prediction)]
        rows.append(np.concatenate([np.asarray(t.resize((tile, tile))) for t in tiles], axis=1))
    _save_png(PIL.Image.fromarray(np.concatenate(rows, axis=0)), Path(path))


def plot_training_curves(log_path: str | os.PathLike, path: str | os.PathLike) -> None:
    """Training loss per step and validation Dice/IoU per epoch, for each stage in a `train_log.jsonl`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    stages = list(dict.fromkeys(record["stage"] for record in records))
    figure, axes = plt.subplots(len(stages), 2, figsize=(10, 3.5 * len(stages)), squeeze=False)
    for row, stage in zip(axes, stages):
        steps = [r for r in records if r["stage"] == stage and "loss" in r]
        evaluations = [r for r in records if r["stage"] == stage and "val_dice" in r]
        row[0].plot([r["step"] for r in steps], [r["loss"] for r in steps])
        row[0].set(title=f"{stage}: training loss", xlabel="step", ylabel="BCE + Dice loss")
        for key in ("val_dice", "val_iou"):
            row[1].plot([r["epoch"] for r in evaluations], [r[key] for r in evaluations], marker="o", label=key)
        row[1].set(title=f"{stage}: validation", xlabel="epoch", ylim=(0, 1))
        row[1].legend()
    figure.tight_layout()
    temporary = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp.png")
    figure.savefig(temporary)
    plt.close(figure)
    os.replace(temporary, path)


def _save_png(image: PIL.Image.Image, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    image.save(temporary, format="PNG")
    os.replace(temporary, path)
