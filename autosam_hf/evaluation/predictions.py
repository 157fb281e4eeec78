"""The predictions an evaluation saves (`autosam-eval --save_predictions`): each mode's masks (binary 0/255, or label
maps of class ids) and overlays at the original size, and an overlay grid of its first images."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import numpy as np
import PIL.Image

from ..visualization import GROUND_TRUTH_COLOR, overlay_mask, prediction_pictures, save_overlay_grid, write_png


def file_part(image_id: str) -> Path:
    """An image id as a relative path (video ids are `case/stem`); never escapes its folder (no root, no `..`)."""
    parts = PurePosixPath(image_id.replace("\\", "/")).parts
    parts = [part if part != ".." else "_" for part in parts if part.strip("/")]  # drops the root, "/" or "//"
    return Path(*parts) if parts else Path("_")


class PredictionWriter:
    """Writes `<dir>/<mode>/masks/<id>.png` (original size: 0/255 for binary models, the label map 0..K otherwise),
    `<dir>/<mode>/overlays/<id>.png` (ground truth contour in green over the prediction: red, or each class in its
    colour with a legend) and, on `close`, `<dir>/<mode>/overlay_grid.png` (the first `num_overlays` images:
    image | ground truth | prediction). Every file is written atomically."""

    def __init__(self, directory: str | os.PathLike, num_overlays: int, id2label: Mapping[int, str] | None = None):
        self.directory, self.num_overlays, self.id2label = Path(directory), num_overlays, id2label
        self.grid: dict[str, list[tuple]] = {}

    def add(self, mode: str, image_id: str, image: np.ndarray, target: np.ndarray, prediction: np.ndarray) -> None:
        """image (H, W, 3) uint8; target and prediction (H, W) label maps (binary: 0/1 or bool)."""
        name = file_part(image_id)
        mask, overlay = prediction_pictures(prediction, image, self.id2label)
        # The ground truth's boundary on top of the prediction (alpha 0: boundary only); below it, any legend.
        height = image.shape[0]
        overlay[:height] = overlay_mask(
            overlay[:height], np.asarray(target) > 0, GROUND_TRUTH_COLOR, alpha=0.0, contour_color=None
        )
        for kind, array in (("masks", mask), ("overlays", overlay)):
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
                save_overlay_grid(list(images), list(targets), list(predictions), grid_path, id2label=self.id2label)


__all__ = ["PredictionWriter", "file_part"]
