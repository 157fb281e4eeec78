"""Instance metrics of nucleus segmentation: the Aggregated Jaccard Index (AJI) and the object count error, with
predicted instances recovered from a {background, interior, boundary} label map.

Predicted instances (`instances_from_label_map`): the connected components (4-connectivity) of the predicted
interior, which the boundary class separates where nuclei touch. By default they are then grown back into the
predicted boundary (`grow=True`, what the reported AJI uses): each boundary pixel joins the nearest interior
component of the same connected piece of interior ∪ boundary, and a piece with no interior at all (a nucleus
predicted as boundary only) becomes an instance of its own. Ground-truth instances include their boundary, so
ungrown interiors would lose a ring of every nucleus to the union.

AJI (Kumar et al., "A Dataset and a Technique for Generalized Nuclear Segmentation for Computational Pathology",
IEEE TMI 2017), as implemented by HoVer-Net's `get_fast_aji` (the form nucleus papers report): every ground-truth
instance G_i is matched to the predicted instance S_j of highest IoU with it (a prediction may serve several ground
truths); C = Σ |G_i ∩ S_j|, U = Σ |G_i ∪ S_j| over the matched pairs; a ground truth overlapping no prediction adds
|G_i| to U, and every prediction matched to no ground truth adds |S_k| to U. AJI = C / U per image, averaged over
images. No ground truth and no prediction: AJI = 1 (perfect agreement, as for Dice here); no prediction for some
ground truth, or the reverse: 0.

Count error: |#predicted instances − #ground-truth instances| per image, averaged over images
(`count_error`), and that difference relative to the ground-truth count (`count_relative_error`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .segmentation import ArrayLike, _check_same_shape, _to_2d_numpy

INTERIOR_LABEL, BOUNDARY_LABEL = 1, 2


def _relabel_consecutive(instances: np.ndarray) -> tuple[np.ndarray, int]:
    """Instance ids as 1..N in order of first value (0 stays background); returns (ids, N)."""
    values, inverse = np.unique(instances, return_inverse=True)
    inverse = inverse.reshape(instances.shape)
    if values[0] == 0:
        return inverse.astype(np.int32), len(values) - 1
    return (inverse + 1).astype(np.int32), len(values)


def instances_from_label_map(
    label_map: ArrayLike, interior: int = INTERIOR_LABEL, boundary: int = BOUNDARY_LABEL, grow: bool = True
) -> np.ndarray:
    """Instance ids (H, W) int32 (0 background, 1..N nuclei) from a predicted label map (H, W), see the module
    docstring."""
    label_map = _to_2d_numpy(label_map, "label_map")
    seeds, num_seeds = ndimage.label(label_map == interior)
    if not grow:
        return seeds.astype(np.int32)
    foreground = (label_map == interior) | (label_map == boundary)
    pieces, _ = ndimage.label(foreground)
    grown = np.zeros_like(seeds)
    for piece, window in enumerate(ndimage.find_objects(pieces), start=1):
        in_piece = pieces[window] == piece
        piece_seeds = np.where(in_piece, seeds[window], 0)
        if piece_seeds.any():
            # The nearest seed pixel among this piece's own: a seed of a neighbouring piece may be nearer.
            rows, columns = ndimage.distance_transform_edt(
                piece_seeds == 0, return_indices=True, return_distances=False
            )
            grown[window][in_piece] = piece_seeds[rows, columns][in_piece]
        else:  # no interior: an instance of its own, numbered after the seeds
            grown[window][in_piece] = num_seeds + piece
    return _relabel_consecutive(grown)[0]


def _overlaps(ground_truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersections (G+1, P+1), ground-truth sizes (G+1,), predicted sizes (P+1,)) for consecutive ids."""
    num_gt, num_pred = int(ground_truth.max()), int(predicted.max())
    joint = np.bincount(
        (ground_truth.astype(np.int64) * (num_pred + 1) + predicted).ravel(), minlength=(num_gt + 1) * (num_pred + 1)
    ).reshape(num_gt + 1, num_pred + 1)
    return joint, joint.sum(axis=1), joint.sum(axis=0)


def aggregated_jaccard_index(ground_truth: ArrayLike, predicted: ArrayLike) -> float:
    """AJI of one image (module docstring) between instance-id maps (H, W) (0 = background, any other ids)."""
    ground_truth = _relabel_consecutive(_to_2d_numpy(ground_truth, "ground_truth"))[0]
    predicted = _relabel_consecutive(_to_2d_numpy(predicted, "predicted"))[0]
    _check_same_shape(predicted, ground_truth, "predicted")
    joint, gt_sizes, pred_sizes = _overlaps(ground_truth, predicted)
    intersections = joint[1:, 1:]  # (G, P)
    if intersections.size == 0:
        return 1.0 if intersections.shape == (0, 0) else 0.0
    unions = gt_sizes[1:, None] + pred_sizes[None, 1:] - intersections
    best = np.argmax(intersections / unions, axis=1)  # each ground truth's prediction of highest IoU
    rows = np.arange(len(best))
    paired = intersections[rows, best] > 0
    intersection = intersections[rows, best][paired].sum()
    union = unions[rows, best][paired].sum() + gt_sizes[1:][~paired].sum()
    unused = np.setdiff1d(np.arange(intersections.shape[1]), best[paired])
    union += pred_sizes[1:][unused].sum()
    return float(intersection / union)


def count_instances(instances: ArrayLike) -> int:
    """Number of distinct non-zero ids of an instance map."""
    values = np.unique(_to_2d_numpy(instances, "instances"))
    return int(np.count_nonzero(values))


class InstanceMetrics:
    """Accumulates AJI and count errors over images (module docstring)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.rows: list[dict[str, float]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def update(self, predicted: ArrayLike, ground_truth: ArrayLike) -> dict[str, float]:
        """Adds one image: instance-id maps (H, W) of the prediction and the ground truth. Returns its scores."""
        predicted_count, true_count = count_instances(predicted), count_instances(ground_truth)
        row = {
            "aji": aggregated_jaccard_index(ground_truth, predicted),
            "count_error": float(abs(predicted_count - true_count)),
            "count_relative_error": abs(predicted_count - true_count) / max(true_count, 1),
            "predicted_instances": float(predicted_count),
            "true_instances": float(true_count),
        }
        self.rows.append(row)
        return row

    def compute(self) -> dict[str, float]:
        """Each score averaged over images."""
        if not self.rows:
            raise ValueError("No image was added: call `update` at least once before `compute`.")
        return {key: float(np.mean([row[key] for row in self.rows])) for key in self.rows[0]}


__all__ = [
    "BOUNDARY_LABEL",
    "INTERIOR_LABEL",
    "InstanceMetrics",
    "aggregated_jaccard_index",
    "count_instances",
    "instances_from_label_map",
]
