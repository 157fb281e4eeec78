"""The predictions an evaluation saves (`autosam-eval --save_predictions`): each mode's binary masks and overlays at
the original size, and an overlay grid of its first images."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np
import PIL.Image

from ..visualization import GROUND_TRUTH_COLOR, overlay_mask, save_overlay_grid, write_png


def file_part(image_id: str) -> Path:
    """An image id as a relative path (video ids are `case/stem`); never escapes its folder (no root, no `..`)."""
    parts = PurePosixPath(image_id.replace("\\", "/")).parts
    parts = [part if part != ".." else "_" for part in parts if part.strip("/")]  # drops the root, "/" or "//"
    return Path(*parts) if parts else Path("_")


class PredictionWriter:
    """Writes `<dir>/<mode>/masks/<id>.png` (0/255, original size), `<dir>/<mode>/overlays/<id>.png` (ground truth
    contour in green, prediction in red) and, on `close`, `<dir>/<mode>/overlay_grid.png` (the first
    `num_overlays` images: image | ground truth | prediction). Every file is written atomically."""

    def __init__(self, directory: str | os.PathLike, num_overlays: int):
        self.directory, self.num_overlays = Path(directory), num_overlays
        self.grid: dict[str, list[tuple]] = {}

    def add(self, mode: str, image_id: str, image: np.ndarray, target: np.ndarray, prediction: np.ndarray) -> None:
        """image (H, W, 3) uint8; target and prediction (H, W) binary."""
        name = file_part(image_id)
        # The prediction tinted, then the ground truth's boundary on top (alpha 0: boundary only).
        overlay = overlay_mask(
            overlay_mask(image, prediction), target, GROUND_TRUTH_COLOR, alpha=0.0, contour_color=None
        )
        for kind, array in (("masks", prediction.astype(np.uint8) * 255), ("overlays", np.asarray(overlay))):
            path = self.directory / mode / kind / name.with_name(name.name + ".png")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_png(array, path)
        examples = self.grid.setdefault(mode, [])
        if len(examples) < self.num_overlays:
            examples.append((PIL.Image.fromarray(image), target, prediction))

    def close(self) -> None:
        for mode, examples in self.grid.items():
            if examples:
                images, targets, predictions = zip(*examples, strict=True)
                grid_path = self.directory / mode / "overlay_grid.png"
                save_overlay_grid(list(images), list(targets), list(predictions), grid_path)


__all__ = ["PredictionWriter", "file_part"]
