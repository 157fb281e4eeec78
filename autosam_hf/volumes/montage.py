"""A montage PNG of a volume's slices with its labels drawn in colour (the colours and overlay of
`autosam_hf.visualization`)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import PIL.Image

from ..visualization import add_legend, class_colors, overlay_label_map, write_png
from .io import Volume
from .slices import slice_axis, volume_slices


def volume_montage(
    volume: Volume,
    labels: Volume | np.ndarray | None = None,
    axis: int | None = None,
    window: str | tuple[float, float] | None = None,
    id2label: Mapping[int, str] | None = None,
    max_slices: int = 16,
    tile: int = 256,
) -> np.ndarray:
    """Up to `max_slices` evenly spaced slices (of those with foreground when `labels` are given) in a grid of
    tiles whose longer side is `tile` pixels, in the slices' physical aspect ratio; each class present drawn in
    its colour of `class_colors(id2label)`, with a legend of those classes below.

    Returns:
        `np.ndarray` (H, W, 3) uint8.
    """
    axis = slice_axis(volume) if axis is None else axis
    slices = volume_slices(
        volume, labels, axis=axis, window=window, empty_slice_fraction=0.0 if labels is not None else 1.0
    )
    if not slices:  # labels without any foreground
        slices = volume_slices(volume, axis=axis, window=window)
    chosen = sorted({round(i) for i in np.linspace(0, len(slices) - 1, min(max_slices, len(slices)))})
    slices = [slices[i] for i in chosen]
    columns_axis, rows_axis = (a for a in range(3) if a != axis)
    height_mm = volume.shape[rows_axis] * volume.spacing[rows_axis]
    width_mm = volume.shape[columns_axis] * volume.spacing[columns_axis]
    scale = tile / max(height_mm, width_mm)
    size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))  # PIL's (width, height)

    present = sorted(set().union(*(np.unique(s.label).tolist() for s in slices if s.label is not None)) - {0})
    largest = max([*present, *(id2label or {})], default=0)
    names = {value: (id2label or {}).get(value, str(value)) for value in range(largest + 1)}
    colors_by_value = dict(zip(range(1, largest + 1), class_colors(names).values(), strict=True))
    tiles = []
    for piece in slices:
        image = np.asarray(PIL.Image.fromarray(piece.image).resize(size, PIL.Image.BILINEAR))
        if piece.label is not None:
            # The classes of this slice numbered 1..m, so that the overlay draws only those.
            values = [value for value in np.unique(piece.label).tolist() if value != 0]
            renumber = np.zeros(256, dtype=np.uint8)
            renumber[values] = np.arange(1, len(values) + 1)
            label = np.asarray(PIL.Image.fromarray(renumber[piece.label]).resize(size, PIL.Image.NEAREST))
            image = overlay_label_map(image, label, [colors_by_value[value] for value in values])
        tiles.append(image)
    columns = math.ceil(math.sqrt(len(tiles)))
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    grid = np.concatenate(
        [np.concatenate(tiles[row : row + columns], axis=1) for row in range(0, len(tiles), columns)], axis=0
    )
    if not present:
        return grid
    return add_legend(grid, {names[value]: colors_by_value[value] for value in present})


def write_montage(path: str | os.PathLike, volume: Volume, labels: Volume | np.ndarray | None = None, **kwargs) -> None:
    """`volume_montage(volume, labels, **kwargs)` written as a PNG at `path`, atomically."""
    write_png(volume_montage(volume, labels, **kwargs), path)


__all__ = ["volume_montage", "write_montage"]
