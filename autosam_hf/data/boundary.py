"""Nucleus boundary classes from instance or binary masks: {0 background, 1 nucleus interior, 2 nucleus boundary}.

A binary mask merges touching nuclei into one blob, so a model trained on it cannot count cells; a model that also
predicts each nucleus's boundary can, because removing the boundary splits the interior into instances
(`autosam_hf.metrics.instances`). The ring is derived per instance:

- from instance masks (MoNuSeg's `masks_instance`: 16-bit ids, or `instance_labels` masks such as GlaS's), each
  instance's own boundary, so nuclei that touch are separated by their two rings;
- from binary masks (MoNuSeg's training masks), the instances are the connected components (4-connectivity) of
  the mask: the inner boundary of each component (touching nuclei stay one component there).

Boundary pixels of an instance are its pixels within `width` pixels (chessboard distance, at the mask's original
resolution) of a pixel outside it — another instance or the background. The image border is not a boundary (a
nucleus cut by the tile's edge goes on beyond it).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
from scipy import ndimage

from ..metrics.instances import BOUNDARY_LABEL, INTERIOR_LABEL
from ..model.image_processing_autosam import _WIDE_INTEGER_MODES, ImageLike, binarize_mask, mask_array

BOUNDARY_ID2LABEL = {0: "background", INTERIOR_LABEL: "interior", BOUNDARY_LABEL: "boundary"}
DEFAULT_BOUNDARY_WIDTH = 2


def instances_from_mask(mask: ImageLike, name: str = "mask", instance_labels: bool = False) -> np.ndarray:
    """Instance ids (H, W) int32 (0 background) of a mask: 16/32-bit masks and `instance_labels=True` masks hold
    instance ids already; any other mask is binarised (`binarize_mask`) and split into connected components."""
    wide = isinstance(mask, PIL.Image.Image) and mask.mode in _WIDE_INTEGER_MODES
    array = mask_array(mask, name)
    if instance_labels or wide or (np.issubdtype(array.dtype, np.integer) and array.dtype.itemsize > 1):
        if array.min() < 0:
            raise ValueError(f"{name}: negative instance ids")
        return array.astype(np.int32)
    components, _ = ndimage.label(binarize_mask(array, name=name))
    return components.astype(np.int32)


def boundary_label_map(instances: np.ndarray, width: int = DEFAULT_BOUNDARY_WIDTH) -> np.ndarray:
    """{0 background, 1 interior, 2 boundary} label map (H, W) uint8 of instance ids (H, W) (module docstring).

    A pixel of instance i is interior when every pixel of the (2·width + 1)² square around it belongs to i."""
    if width < 1:
        raise ValueError(f"boundary width must be >= 1 pixel, got {width}")
    size = 2 * width + 1
    low = ndimage.minimum_filter(instances, size=size, mode="nearest")
    high = ndimage.maximum_filter(instances, size=size, mode="nearest")
    interior = (low == instances) & (high == instances)
    label_map = np.where(interior, INTERIOR_LABEL, BOUNDARY_LABEL).astype(np.uint8)
    label_map[instances == 0] = 0
    return label_map


__all__ = [
    "BOUNDARY_ID2LABEL",
    "DEFAULT_BOUNDARY_WIDTH",
    "boundary_label_map",
    "instances_from_mask",
]
