"""The classic U-Net (milesial layout), checkpoint-compatible with the FFHQ-Wrinkle weights.

With ``base_channels=64`` the parameter names and shapes are exactly those of the published
U-Net checkpoints, so they load with ``strict=True``. Smaller ``base_channels`` give a cheap
model for experiments and tests.
"""

from __future__ import annotations

import torch
from torch import nn

from .unet_parts import DoubleConv, Down, OutConv, Up

__all__ = ["UNet"]


class UNet(nn.Module):
    """Four-level U-Net returning raw logits ``(N, n_classes, H, W)`` at input resolution.

    Any ``H, W`` works (not only multiples of 16): the Up blocks pad the upsampled tensor to
    the size of the skip connection. Inputs should be at least 16 px per side.
    """

    def __init__(
        self,
        n_channels: int,
        n_classes: int,
        bilinear: bool = False,
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        if n_channels < 1 or n_classes < 1:
            raise ValueError(
                f"n_channels and n_classes must be >= 1, got {n_channels}, {n_classes}"
            )
        if base_channels < 2 or base_channels % 2:
            raise ValueError(f"base_channels must be a positive even number, got {base_channels}")
        self.n_channels = n_channels
        self.n_classes = n_classes
        self.bilinear = bilinear
        self.base_channels = base_channels

        b = base_channels
        # Bilinear upsampling keeps the channel count, so the bottleneck is halved to make the
        # concatenation at up1 the same width as with a transposed convolution.
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(n_channels, b)
        self.down1 = Down(b, 2 * b)
        self.down2 = Down(2 * b, 4 * b)
        self.down3 = Down(4 * b, 8 * b)
        self.down4 = Down(8 * b, 16 * b // factor)
        self.up1 = Up(16 * b, 8 * b // factor, bilinear)
        self.up2 = Up(8 * b, 4 * b // factor, bilinear)
        self.up3 = Up(4 * b, 2 * b // factor, bilinear)
        self.up4 = Up(2 * b, b, bilinear)
        self.outc = OutConv(b, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)
