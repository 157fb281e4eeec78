"""Binarisation of ground-truth masks and their storage format.

Every loader in this package stores masks as 8-bit ``L`` PNG images with values **0 (background) and 1
(foreground)**, so ``np.array(example["mask"])`` is directly the label map (``id2label = {0: background,
1: foreground}``) and matches the augmentation's output. Source masks are binarised with one rule:

* 16-bit or 32-bit masks (``I;16``, ``I``: instance label maps such as MoNuSeg's) → ``> 0``;
* 8-bit masks (``L``, palette indices of ``P``, or ``RGB``/``LA``/``RGBA`` converted to ``L``) whose maximum is
  above 1 → ``> 127`` (masks saved as 0/255, including JPEG masks with compression noise around the edges);
* 8-bit masks with values in {0, 1} → ``> 0``;
* bilevel (``1``) masks are used as they are;
* masks known to hold instance labels (GlaS ``*_anno.bmp``: 0 = background, 1..N = glands) are read with
  ``instance_labels=True`` → ``> 0`` whatever their bit depth.
"""

import io

import numpy as np
from PIL import Image

from ..model.image_processing_autosam import binarize_mask as binarize_processor_mask


def binarize_mask(mask: Image.Image, instance_labels: bool = False) -> np.ndarray:
    """The package's one binarisation rule (`autosam_hf.model.binarize_mask`), as a bool (H, W) array."""
    return binarize_processor_mask(mask, instance_labels=instance_labels).astype(bool)


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Encode a binary (H, W) mask as an 8-bit ``L`` PNG with values 0/1 (the storage format of the ``mask`` column)."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
