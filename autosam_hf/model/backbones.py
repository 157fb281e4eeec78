"""g's encoder: HarDNet-85 (the paper's, `hardnet.py`) or any timm backbone, each tapped at strides 4, 8 and 16, and
their ImageNet weights.

Every encoder's forward: (B, 3, H, W) → [(B, c4, H/4, W/4), (B, c8, H/8, W/8), (B, c16, H/16, W/16)], with
`feature_channels` = (c4, c8, c16).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .hardnet import HarDNet85Features, load_hardnet_weights


class TimmFeatures(nn.Module):
    """Any timm `features_only` backbone, tapped at strides 4, 8 and 16.

    forward: (B, 3, H, W) → [(B, c4, H/4, W/4), (B, c8, H/8, W/8), (B, c16, H/16, W/16)].
    """

    feature_strides = (4, 8, 16)

    def __init__(self, model_name: str, pretrained: bool = False, weights_file: str | os.PathLike | None = None):
        """`pretrained`: timm's ImageNet weights, fetched by timm, or read from `weights_file` (a checkpoint of the
        whole timm model: timm maps its keys onto the feature extractor and drops the classifier)."""
        super().__init__()
        try:
            import timm
        except ImportError as error:
            raise ImportError(
                f"backbone={model_name!r} is a timm model; install timm (`pip install autosam-hf[timm]`) "
                "or use backbone='hardnet85'."
            ) from error
        try:
            probe = timm.create_model(model_name, features_only=True, pretrained=False)
        except RuntimeError as error:  # timm's "Unknown model" error
            raise ValueError(f"backbone={model_name!r} is neither 'hardnet85' nor a timm model: {error}") from error
        reductions = list(probe.feature_info.reduction())
        missing = [stride for stride in self.feature_strides if stride not in reductions]
        if missing:
            raise ValueError(f"timm backbone {model_name!r} has no features at strides {missing} (has {reductions})")
        out_indices = tuple(reductions.index(stride) for stride in self.feature_strides)
        overlay = {"pretrained_cfg_overlay": {"file": str(weights_file)}} if weights_file is not None else {}
        try:
            self.model = timm.create_model(
                model_name, features_only=True, pretrained=pretrained, out_indices=out_indices, **overlay
            )
        except Exception as error:  # an unreadable file or another model's weights: name the file
            if weights_file is None:
                raise
            raise ValueError(f"Could not load {model_name} weights from {weights_file}: {error}") from error
        self.feature_channels = tuple(self.model.feature_info.channels())

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model(pixel_values))


def backbone_features(backbone: str) -> nn.Module:
    """A randomly initialised encoder for `config.backbone`: "hardnet85", or a timm model name (`TimmFeatures`)."""
    return HarDNet85Features() if backbone == "hardnet85" else TimmFeatures(backbone)


def load_backbone_weights(encoder: nn.Module, backbone: str, weights: str | os.PathLike | bool) -> None:
    """Load ImageNet weights into `encoder` (built by `backbone_features(backbone)`): HarDNet-85's from a path to the
    authors' `hardnet85.pth`; a timm backbone's from a checkpoint file of the whole timm model, or, for `True`,
    fetched by timm."""
    if isinstance(encoder, HarDNet85Features):
        if weights is True:
            raise ValueError("HarDNet-85 weights must be given as a path to hardnet85.pth (backbone_weights=...)")
        load_hardnet_weights(encoder, weights)
        return
    weights_file = None if weights is True else weights
    if weights_file is not None and not os.path.isfile(weights_file):
        raise ValueError(f"backbone_weights: no such file {weights_file}")
    pretrained = TimmFeatures(backbone, pretrained=True, weights_file=weights_file)
    encoder.load_state_dict(pretrained.state_dict())


__all__ = ["TimmFeatures", "backbone_features", "load_backbone_weights"]
