"""3D metrics of label volumes, per volume and per class, in millimetres: Dice, HD95 and normalised surface
distance (NSD), computed by MONAI (`monai.metrics`), not re-derived.

- Dice: 2|P∩R| / (|P| + |R|) over the class's voxels.
- HD95: MONAI's symmetric 95th-percentile Hausdorff distance between the surfaces (surface voxels: the mask minus
  its erosion), the larger of the two directed 95th percentiles, in mm through the voxel spacing.
- NSD at a tolerance τ mm (Nikolov et al. 2021): the fraction of both surfaces lying within τ of the other.

Empty classes (a class absent from the prediction, the reference or both):

- both empty: Dice = 1, HD95 = 0, NSD = 1 (perfect agreement, this package's 2D convention; nnU-Net reports NaN
  for Dice there);
- exactly one empty: Dice = 0, HD95 = inf (no surface to measure to), NSD = 0.

Needs MONAI (`pip install 'autosam-hf[volumes]'`), imported when first used.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch

METRIC_NAMES = ("dice", "hd95", "nsd")
DEFAULT_NSD_TOLERANCE_MM = 1.0


def _check_volumes(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]) -> None:
    if prediction.ndim != 3 or prediction.shape != reference.shape:
        raise ValueError(
            f"prediction and reference must be label volumes of one (I, J, K) shape, got {prediction.shape} and "
            f"{reference.shape}"
        )
    if len(spacing) != 3 or not all(float(s) > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive voxel sizes in mm, got {tuple(spacing)}")


def _monai_metrics():
    # A plain ImportError: the package's MissingDependencyError lives in autosam_hf.export, a layer above metrics.
    try:
        import monai.metrics
    except ImportError as error:
        raise ImportError("3D metrics need the package 'monai': pip install 'autosam-hf[volumes]'") from error
    return monai.metrics


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The slices of `mask`'s bounding box grown by one voxel on each side, clipped to the volume."""
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(present[0]) - 1, 0), min(int(present[-1]) + 2, mask.shape[axis])))
    return tuple(box)


def class_metrics(
    prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float], nsd_tolerance_mm: float
) -> dict[str, float]:
    """Dice, HD95 (mm) and NSD at `nsd_tolerance_mm` of two binary (I, J, K) masks on a grid of voxel size
    `spacing` (mm along i, j, k), with the empty-mask rules of the module docstring."""
    prediction, reference = np.asarray(prediction, dtype=bool), np.asarray(reference, dtype=bool)
    _check_volumes(prediction, reference, spacing)
    predicted, present = bool(prediction.any()), bool(reference.any())
    if not predicted and not present:
        return {"dice": 1.0, "hd95": 0.0, "nsd": 1.0}
    if not predicted or not present:
        return {"dice": 0.0, "hd95": float("inf"), "nsd": 0.0}
    metrics = _monai_metrics()
    # Only the box around both masks (one voxel more, within the volume) is scored: the same surfaces and
    # distances as the whole volume, much less work for small organs in a large CT.
    box = _bounding_box(prediction | reference)
    # MONAI takes one-hot (batch, class, I, J, K) tensors.
    y_pred = torch.from_numpy(np.ascontiguousarray(prediction[box]))[None, None]
    y = torch.from_numpy(np.ascontiguousarray(reference[box]))[None, None]
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():
        # MONAI >= 1.5 warns about an argument its own surface-distance code passes; nothing a caller can change.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        dice = metrics.compute_dice(y_pred, y, include_background=True)
        hd95 = metrics.compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=spacing)
        nsd = metrics.compute_surface_dice(
            y_pred, y, class_thresholds=[float(nsd_tolerance_mm)], include_background=True, spacing=spacing
        )
    return {"dice": float(dice.item()), "hd95": float(hd95.item()), "nsd": float(nsd.item())}


def volume_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float],
    labels: Iterable[int] | None = None,
    nsd_tolerance_mm: float | dict[int, float] = DEFAULT_NSD_TOLERANCE_MM,
) -> dict[int, dict[str, float]]:
    """Per class, the 3D metrics of the (I, J, K) label volume `prediction` against `reference`.

    Args:
        prediction, reference: label volumes of one shape (values 0 = background, 1..K).
        spacing: the voxel size in mm along i, j, k (`Volume.spacing`).
        labels: the classes scored (default: every value > 0 found in either volume).
        nsd_tolerance_mm: the NSD tolerance in mm, one for all classes or {class: tolerance}.

    Returns:
        `{class: {"dice": ..., "hd95": ..., "nsd": ...}}` in increasing class order.
    """
    prediction, reference = np.asarray(prediction), np.asarray(reference)
    _check_volumes(prediction, reference, spacing)
    if labels is None:
        labels = set(np.unique(prediction).tolist()) | set(np.unique(reference).tolist())
    labels = sorted(int(label) for label in labels if int(label) != 0)
    tolerances = nsd_tolerance_mm if isinstance(nsd_tolerance_mm, dict) else dict.fromkeys(labels, nsd_tolerance_mm)
    missing = [label for label in labels if label not in tolerances]
    if missing:
        raise ValueError(f"nsd_tolerance_mm has no tolerance for classes {missing}")
    return {
        label: class_metrics(prediction == label, reference == label, spacing, tolerances[label]) for label in labels
    }


__all__ = ["DEFAULT_NSD_TOLERANCE_MM", "METRIC_NAMES", "class_metrics", "volume_metrics"]
