"""The storage format of ground-truth masks, and what a dataset's masks hold (`MaskClasses`).

Every loader in this package stores masks as 8-bit ``L`` PNG images holding a **label map**: for binary datasets
values **0 (background) and 1 (foreground)**, so ``np.array(example["mask"])`` is directly the label map
(``id2label = {0: background, 1: foreground}``) and matches the augmentation's output; for multi-class datasets
(``num_labels = K + 1``) values 0..K. Binary source masks are binarised with the package's one rule,
`autosam_hf.model.binarize_mask` (0/255 and JPEG masks ``> 127``, 0/1 and 16-bit instance masks ``> 0``, GlaS
instance labels with ``instance_labels=True``); multi-class source masks are label maps read with
`autosam_hf.model.read_label_map` (a value above K is an error naming the file). Both live in the model package
because the image processor, which travels with the weights as remote code, applies them too.

Datasets with derived boundary classes (`MaskClasses.boundary`) also store each image's instance ids, in an
``instances`` column of 16-bit PNGs, for the instance metrics.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .boundary import BOUNDARY_ID2LABEL, DEFAULT_BOUNDARY_WIDTH


@dataclass(frozen=True)
class MaskClasses:
    """What a dataset's stored masks hold.

    Attributes:
        num_labels: 2 for binary masks (0/1); K + 1 for label maps with values 0..K.
        boundary_width: when set, the classes are derived, not read: {0 background, 1 interior, 2 boundary} from
            instance or binary masks, with a boundary ring this many pixels wide at the original resolution
            (`autosam_hf.data.boundary`).
    """

    num_labels: int = 2
    boundary_width: int | None = None

    def __post_init__(self):
        if self.num_labels < 2:
            raise ValueError(f"num_labels must be >= 2 (background + at least one class), got {self.num_labels}")
        if self.boundary_width is not None and (self.num_labels != len(BOUNDARY_ID2LABEL) or self.boundary_width < 1):
            raise ValueError(
                f"boundary classes are {len(BOUNDARY_ID2LABEL)} labels with a width >= 1 pixel, got "
                f"num_labels={self.num_labels}, boundary_width={self.boundary_width}"
            )

    @classmethod
    def boundary(cls, width: int = DEFAULT_BOUNDARY_WIDTH) -> MaskClasses:
        """{0 background, 1 interior, 2 boundary}, derived with a ring of `width` pixels."""
        return cls(num_labels=len(BOUNDARY_ID2LABEL), boundary_width=width)

    @property
    def is_binary(self) -> bool:
        return self.num_labels == 2


BINARY = MaskClasses()


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Encode an (H, W) label map (binary: 0/1; bool accepted) as an 8-bit ``L`` PNG (the ``mask`` column)."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_instances_png(instances: np.ndarray, name: str = "instances") -> bytes:
    """Encode (H, W) instance ids (0 background) as a 16-bit PNG (the ``instances`` column)."""
    if instances.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError(f"{name}: more than {np.iinfo(np.uint16).max} instances do not fit a 16-bit PNG")
    buffer = io.BytesIO()
    Image.fromarray(instances.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()
