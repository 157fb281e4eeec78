"""The storage format of ground-truth masks.

Every loader in this package stores masks as 8-bit ``L`` PNG images with values **0 (background) and 1
(foreground)**, so ``np.array(example["mask"])`` is directly the label map (``id2label = {0: background,
1: foreground}``) and matches the augmentation's output. Source masks are binarised with the package's one rule,
`autosam_hf.model.binarize_mask` (0/255 and JPEG masks ``> 127``, 0/1 and 16-bit instance masks ``> 0``, GlaS
instance labels with ``instance_labels=True``); it lives in the model package because the image processor, which
travels with the weights as remote code, applies it too.
"""

import io

import numpy as np
from PIL import Image


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Encode a binary (H, W) mask as an 8-bit ``L`` PNG with values 0/1 (the storage format of the ``mask`` column)."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
