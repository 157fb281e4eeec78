"""Volume intensities -> uint8 for the 2D image processor: CT windows in HU, per-volume percentiles for MRI."""

from __future__ import annotations

import argparse

import numpy as np

# (level, width) in HU of the standard CT display windows, as Radiopaedia's "Windowing (CT)" article lists them
# (https://radiopaedia.org/articles/windowing-ct): abdomen = its soft-tissue window W 400 L 40 (-160..240 HU),
# lung W 1500 L -600, bone W 1800 L 400, brain W 80 L 40.
CT_WINDOWS = {"abdomen": (40.0, 400.0), "lung": (-600.0, 1500.0), "bone": (400.0, 1800.0), "brain": (40.0, 80.0)}
# nnU-Net clips CT to the 0.5th and 99.5th percentiles of the training set's foreground; with no physical unit
# (MRI), the same percentiles of each volume are used here.
PERCENTILES = (0.5, 99.5)


def parse_window(text: str, name: str = "window") -> tuple[float, float]:
    """A CT window as (lowest, highest) HU, from a name of `CT_WINDOWS` or `"low,high"` (e.g. `"-160,240"`)."""
    key = text.strip().lower()
    if key in CT_WINDOWS:
        level, width = CT_WINDOWS[key]
        return level - width / 2, level + width / 2
    try:
        low, high = (float(part) for part in key.split(","))
    except ValueError:
        raise ValueError(
            f"{name}: {text!r} is neither a window name ({', '.join(CT_WINDOWS)}) nor 'low,high' in HU (e.g. -160,240)"
        ) from None
    if not low < high:
        raise ValueError(f"{name}: {text!r}: the low end must be below the high end")
    return low, high


def ct_window_argument(text: str) -> str:
    """argparse `type` of the commands' `--ct_window` (`autosam-train`, `autosam-predict`): `text` as given (a YAML
    file of options records it so), checked by `parse_window`."""
    try:
        parse_window(text, "--ct_window")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--ct_window: ")) from None
    return text


def percentile_window(array: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> tuple[float, float]:
    """(lowest, highest) intensity kept: the `percentiles` of all voxels of `array` (one volume)."""
    low, high = np.percentile(array, percentiles)
    return float(low), float(max(high, low + np.finfo(np.float32).eps))  # a constant volume still maps to 0


def apply_window(array: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """`array` clipped to `window` = (low, high) and scaled to uint8 0..255 (low -> 0, high -> 255)."""
    low, high = window
    scaled = (np.asarray(array, dtype=np.float32) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


__all__ = ["CT_WINDOWS", "PERCENTILES", "apply_window", "ct_window_argument", "parse_window", "percentile_window"]
