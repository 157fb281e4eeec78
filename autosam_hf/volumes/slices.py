"""2D slices of a volume for the 2D model, and per-slice label maps stacked back into a label volume.

A slice along `axis` keeps the two other axes (a, b), a < b, and is shown the way nibabel's and most viewers'
convention draws it: rows = b reversed, columns = a. Axial slices of a dcm2niix-like grid (`read_dicom_series`)
are then the DICOM images as stored; sagittal and coronal ones have the patient's head at the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .intensity import apply_window, parse_window, percentile_window
from .io import Volume, VolumeError, check_same_grid, label_dtype


@dataclass(frozen=True)
class VolumeSlice:
    """One slice: its `index` along the slicing axis, the image (H, W, 3) uint8 and the label map (H, W) uint8
    (None without labels)."""

    index: int
    image: np.ndarray
    label: np.ndarray | None = None


def slice_axis(volume: Volume) -> int:
    """The axis with the coarsest spacing (the slice direction of a typical CT); among equal spacings (within
    1%), the one closest to the patient's superior direction (axial)."""
    spacing = np.asarray(volume.spacing)
    coarsest = np.flatnonzero(spacing >= spacing.max() * 0.99)
    return int(max(coarsest, key=lambda axis: abs(volume.direction[2, axis])))


def to_display(array: np.ndarray, axis: int) -> np.ndarray:
    """The (I, J, K) `array` as its (N, H, W) slices along `axis`, each in display orientation (one copy)."""
    return np.ascontiguousarray(np.flip(np.swapaxes(np.moveaxis(array, axis, 0), 1, 2), axis=1))


def from_display(slices: np.ndarray, axis: int) -> np.ndarray:
    """The inverse of `to_display`: (N, H, W) slices along `axis` -> the (I, J, K) array."""
    return np.ascontiguousarray(np.moveaxis(np.swapaxes(np.flip(slices, axis=1), 1, 2), 0, axis))


def _window_of(volume: Volume, window: str | tuple[float, float] | None) -> tuple[float, float]:
    if window is None:
        return percentile_window(volume.array)
    return parse_window(window) if isinstance(window, str) else (float(window[0]), float(window[1]))


def _label_array(volume: Volume, labels: Volume | np.ndarray) -> np.ndarray:
    if isinstance(labels, Volume):
        check_same_grid(volume, labels)
        labels, name = labels.array, str(labels.path)
    else:
        labels, name = np.asarray(labels), "labels"
        if labels.shape != volume.shape:
            raise VolumeError(f"{name}: shape {labels.shape} is not the shape of {volume.path} {volume.shape}")
    if label_dtype(labels, name) != np.uint8:
        raise VolumeError(f"{name}: label values above 255 do not fit the uint8 label maps of 2D training")
    return labels.astype(np.uint8)


def kept_slice_indices(labels: np.ndarray, axis: int, empty_slice_fraction: float, seed: int) -> list[int]:
    """Indices along `axis` of the slices kept: every slice with foreground (a value > 0) and a seeded
    `empty_slice_fraction` of the others (rounded; the same for the same labels and seed)."""
    if not 0.0 <= empty_slice_fraction <= 1.0:
        raise ValueError(f"empty_slice_fraction must be in [0, 1], got {empty_slice_fraction}")
    other_axes = tuple(a for a in range(labels.ndim) if a != axis)
    has_foreground = np.any(labels > 0, axis=other_axes)
    empty = np.flatnonzero(~has_foreground)
    kept_empty = np.random.default_rng(seed).choice(empty, round(empty_slice_fraction * len(empty)), replace=False)
    return sorted(np.flatnonzero(has_foreground).tolist() + kept_empty.tolist())


def volume_slices(
    volume: Volume,
    labels: Volume | np.ndarray | None = None,
    axis: int | None = None,
    window: str | tuple[float, float] | None = None,
    context: bool = False,
    empty_slice_fraction: float = 1.0,
    seed: int = 0,
) -> list[VolumeSlice]:
    """The slices of `volume` along `axis` as (H, W, 3) uint8 images, with their label maps.

    Args:
        volume: the image volume.
        labels: its label volume (a `Volume`, checked to be on `volume`'s grid, or an (I, J, K) array), or None.
        axis: 0, 1 or 2; default `slice_axis(volume)`.
        window: CT window in HU, as `(low, high)` or text for `parse_window` (`"abdomen"`, `"-160,240"`); None:
            the 0.5th..99.5th percentiles of this volume (MRI).
        context: 2.5D: slices z-1, z, z+1 as the three channels (the edge slices repeated); otherwise the slice
            repeated in all three.
        empty_slice_fraction: with `labels`, the fraction of slices without foreground kept (seeded by `seed`).

    Returns:
        `list[VolumeSlice]` in increasing `index`.
    """
    axis = slice_axis(volume) if axis is None else axis
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    label_array = None if labels is None else _label_array(volume, labels)
    intensities = to_display(apply_window(volume.array, _window_of(volume, window)), axis)
    label_slices = None if label_array is None else to_display(label_array, axis)
    count = volume.shape[axis]
    if label_array is None:
        indices = list(range(count))
    else:
        indices = kept_slice_indices(label_array, axis, empty_slice_fraction, seed)
    slices = []
    for index in indices:
        neighbours = [max(index - 1, 0), index, min(index + 1, count - 1)] if context else [index] * 3
        image = np.moveaxis(intensities[neighbours], 0, -1)
        label = None if label_slices is None else label_slices[index]
        slices.append(VolumeSlice(index, np.ascontiguousarray(image), label))
    return slices


def stack_label_slices(label_maps: Sequence[np.ndarray], reference: Volume, axis: int | None = None) -> np.ndarray:
    """Per-slice (H, W) label maps in display orientation, one per slice of `reference` along `axis` (default
    `slice_axis(reference)`), as the (I, J, K) label volume of `reference`'s grid."""
    axis = slice_axis(reference) if axis is None else axis
    if len(label_maps) != reference.shape[axis]:
        raise VolumeError(
            f"{reference.path}: {len(label_maps)} label maps for {reference.shape[axis]} slices along axis {axis}"
        )
    expected = tuple(size for a, size in enumerate(reference.shape) if a != axis)[::-1]
    for index, label_map in enumerate(label_maps):
        if np.shape(label_map) != expected:
            raise VolumeError(
                f"{reference.path}: label map {index} has shape {np.shape(label_map)}, expected {expected} (H, W)"
            )
    return from_display(np.stack([np.asarray(label_map) for label_map in label_maps]), axis)


__all__ = [
    "VolumeSlice",
    "from_display",
    "kept_slice_indices",
    "slice_axis",
    "stack_label_slices",
    "to_display",
    "volume_slices",
]
