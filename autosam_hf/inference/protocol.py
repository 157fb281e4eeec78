"""What inference asks of a model: the surface `iter_predictions`, `segment_input` and `autosam-predict` use, which
`AutoSamForSegmentation` (PyTorch) and `autosam_hf.export.OnnxRuntimeAutoSam` (an ONNX export) both have.

    model(pixel_values=..., prompt_pixel_values=..., mode="autosam").logits   # (B, K, 4E, 4E) mask logits
    model.device, model.dtype                                                  # where and in what the inputs go
    model.config.default_mode / mask_threshold / class_activation / id2label  # the mode and the class rule
    model.surrogate_decoder                                                    # None: no h, no mode "surrogate"

Both protocols are `runtime_checkable`: `isinstance` checks that the members exist, not their types or signatures.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from ..model.modeling_autosam import AutoSamSegmentationOutput


@runtime_checkable
class SegmentationConfig(Protocol):
    """The config fields inference reads: the mode run when none is asked for, and the rule turning logits into
    label maps (`autosam_hf.postprocessing`) and overlays (`id2label` names the classes)."""

    default_mode: str
    mask_threshold: float
    class_activation: str
    id2label: dict[int, str]


@runtime_checkable
class SegmentationModel(Protocol):
    """A model inference can run: called with the processor's outputs (those of `processor.model_input_names`, on
    `device`, floating-point ones in `dtype`) and a mode, it returns the mask logits."""

    @property
    def config(self) -> SegmentationConfig: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def surrogate_decoder(self) -> Any | None:
        """h, or None when the model has none (then mode "surrogate" cannot run)."""

    def __call__(self, *, mode: str | None = None, **inputs: torch.Tensor) -> AutoSamSegmentationOutput:
        """The forward pass of `mode` (default `config.default_mode`); `logits` is (B, K, 4E, 4E)."""


__all__ = ["SegmentationConfig", "SegmentationModel"]
