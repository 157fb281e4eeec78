"""HarDNet-85 (Chao et al., "HarDNet: A Low Memory Traffic Network", ICCV 2019), as a feature extractor.

Written from the paper and its public description. Module names (`base.N.conv`, `base.N.layers.M.norm`, ...)
follow the authors' released checkpoints so ImageNet weights (`hardnet85.pth`) load with
`load_hardnet_weights`. AutoSAM's decoder reads only the stride-4, stride-8 and stride-16 features, so the
stride-32 stage (and the classifier) are not built: they would cost compute and ~20M unused parameters.
"""

from __future__ import annotations

import os

import torch
from torch import nn


class ConvLayer(nn.Sequential):
    """Conv → BatchNorm → ReLU6, "same" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.add_module(
            "conv",
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        )
        self.add_module("norm", nn.BatchNorm2d(out_channels))
        self.add_module("relu", nn.ReLU6(inplace=True))


def harmonic_links(layer: int, base_channels: int, growth_rate: int, growth_multiplier: float):
    """Channels and input links of layer `layer` of a harmonic dense block (paper, Sec. 3.1).

    Layer k connects to layer k - 2^n for every n with 2^n dividing k; its width grows by `growth_multiplier` for
    every link beyond the first. Returns (out_channels, in_channels, links).
    """
    if layer == 0:
        return base_channels, 0, []
    out_channels = growth_rate
    links = []
    for n in range(10):
        step = 2**n
        if layer % step == 0:
            links.append(layer - step)
            if n > 0:
                out_channels *= growth_multiplier
    out_channels = int(int(out_channels + 1) / 2) * 2
    in_channels = sum(harmonic_links(link, base_channels, growth_rate, growth_multiplier)[0] for link in links)
    return out_channels, in_channels, links


class HarDBlock(nn.Module):
    """Harmonic dense block: sparse (power-of-two) skip connections; outputs the odd layers and the last one."""

    def __init__(self, in_channels: int, growth_rate: int, growth_multiplier: float, num_layers: int):
        super().__init__()
        self.links = []
        layers = []
        self.out_channels = 0
        for i in range(num_layers):
            out_ch, in_ch, links = harmonic_links(i + 1, in_channels, growth_rate, growth_multiplier)
            self.links.append(links)
            layers.append(ConvLayer(in_ch, out_ch))
            if i % 2 == 0 or i == num_layers - 1:
                self.out_channels += out_ch
        self.layers = nn.ModuleList(layers)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        outputs = [hidden_states]
        for layer, links in zip(self.layers, self.links, strict=True):
            inputs = [outputs[i] for i in links]
            outputs.append(layer(torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]))
        last = len(outputs) - 1
        return torch.cat([out for i, out in enumerate(outputs) if i == last or i % 2 == 1], 1)


class HarDNet85Features(nn.Module):
    """HarDNet-85 trunk up to stride 16.

    forward: (B, 3, H, W) → [(B, 192, H/4, W/4), (B, 320, H/8, W/8), (B, 720, H/16, W/16)].
    """

    first_channels = (48, 96)
    # The four blocks of HarDNet-85 that precede the (unused) stride-32 stage.
    transition_channels = (192, 256, 320, 480, 720)
    growth_rates = (24, 24, 28, 36, 48)
    block_layers = (8, 16, 16, 16, 16)
    downsample_after = (1, 0, 1, 0, 1)
    growth_multiplier = 1.7
    feature_channels = (192, 320, 720)
    feature_strides = (4, 8, 16)

    def __init__(self):
        super().__init__()
        base = [
            ConvLayer(3, self.first_channels[0], kernel_size=3, stride=2),
            ConvLayer(self.first_channels[0], self.first_channels[1], kernel_size=3),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ]
        channels = self.first_channels[1]
        self.feature_indices = []
        for i, out_channels in enumerate(self.transition_channels):
            block = HarDBlock(channels, self.growth_rates[i], self.growth_multiplier, self.block_layers[i])
            base.append(block)
            base.append(ConvLayer(block.out_channels, out_channels, kernel_size=1))
            channels = out_channels
            if out_channels in self.feature_channels:
                self.feature_indices.append(len(base) - 1)
            if self.downsample_after[i] and i < len(self.transition_channels) - 1:
                base.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.base = nn.ModuleList(base)

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        features = []
        hidden_states = pixel_values
        for index, module in enumerate(self.base):
            hidden_states = module(hidden_states)
            if index in self.feature_indices:
                features.append(hidden_states)
        return features


def load_hardnet_weights(features: HarDNet85Features, checkpoint_path: str | os.PathLike) -> None:
    """Load ImageNet HarDNet-85 weights (the authors' `hardnet85.pth` state dict) into the truncated trunk.

    Keys of the stride-32 stage and the classifier are expected to be left over; any other mismatch is an error.
    """
    try:
        state_dict = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and weights_only errors all mean "not a usable checkpoint"
        raise ValueError(f"Could not read HarDNet-85 checkpoint {checkpoint_path}: {error}") from error
    if not isinstance(state_dict, dict):
        raise ValueError(f"{checkpoint_path} is not a HarDNet-85 checkpoint: it holds a {type(state_dict).__name__}")
    if "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    own_state_dict = features.state_dict()
    missing = set(own_state_dict) - set(state_dict)
    if missing:
        raise ValueError(
            f"{checkpoint_path} is not a HarDNet-85 checkpoint: {len(missing)} trunk weights are missing, "
            f"e.g. {sorted(missing)[:3]}"
        )
    mismatched = [key for key, value in own_state_dict.items() if tuple(state_dict[key].shape) != tuple(value.shape)]
    if mismatched:
        raise ValueError(
            f"{checkpoint_path} is not a HarDNet-85 checkpoint: {len(mismatched)} weights have other shapes, "
            f"e.g. {mismatched[0]} is {tuple(state_dict[mismatched[0]].shape)}, expected "
            f"{tuple(own_state_dict[mismatched[0]].shape)}"
        )
    features.load_state_dict({key: state_dict[key] for key in own_state_dict})
