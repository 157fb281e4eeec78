"""A plain U-Net (Ronneberger et al., 2015) in torch: the baseline of the real-data benchmark.

forward: (B, 3, S, S) → (B, 1, out_size, out_size) logits, resized to the label canvas AutoSAM trains on, so
both models share the processor, the loss and the post-processing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    def __init__(self, base_channels: int = 32, depth: int = 4, out_size: int = 256):
        super().__init__()
        channels = [base_channels * 2**i for i in range(depth + 1)]
        self.out_size = out_size
        self.down = nn.ModuleList([DoubleConv(3, channels[0])])
        self.down.extend(DoubleConv(channels[i], channels[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(channels[i + 1], channels[i], kernel_size=2, stride=2) for i in reversed(range(depth))
        )
        self.up_convs = nn.ModuleList(DoubleConv(2 * channels[i], channels[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(channels[0], 1, kernel_size=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        skips = []
        hidden = pixel_values
        for index, block in enumerate(self.down):
            hidden = block(hidden if index == 0 else F.max_pool2d(hidden, 2))
            skips.append(hidden)
        for up, conv, skip in zip(self.up, self.up_convs, reversed(skips[:-1]), strict=True):
            hidden = up(hidden)
            hidden = conv(torch.cat([hidden, skip], dim=1))
        logits = self.head(hidden)
        return F.interpolate(logits, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)
