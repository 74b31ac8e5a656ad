"""Building blocks shared by the U-Net models.

The attribute names and the order of the layers inside each block are part of the checkpoint
format: published U-Net weights (milesial layout, and the ResNet-50 seed model) store parameters
under names such as ``up1.conv.double_conv.3.weight``. Keep indices 0..5 of ``double_conv``
stable; optional extras (dropout) are only ever appended after them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DoubleConv", "Down", "OutConv", "Up", "match_spatial"]


class DoubleConv(nn.Module):
    """(conv3x3 -> BN -> ReLU) x 2, optionally followed by channel dropout.

    Convolutions have no bias because BatchNorm immediately re-centres their output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        mid = out_channels if mid_channels is None else mid_channels
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0.0:
            # Appended last so that the parameter indices 0..5 match published checkpoints.
            layers.append(nn.Dropout2d(p=dropout))
        self.double_conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """Halve the resolution (max-pool 2x2), then DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(
            nn.MaxPool2d(2),
            DoubleConv(in_channels, out_channels, dropout=dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


def match_spatial(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Zero-pad (or crop, if larger) ``x`` so its H, W equal those of ``ref``.

    Needed because max-pooling floors odd sizes, so the upsampled tensor can be one pixel
    short of its skip connection. The difference is split evenly between both sides.
    """
    dy = ref.shape[-2] - x.shape[-2]
    dx = ref.shape[-1] - x.shape[-1]
    if dy == 0 and dx == 0:
        return x
    # F.pad accepts negative amounts, which crop instead of pad.
    return F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])


class Up(nn.Module):
    """Upsample 2x, concatenate the skip connection ``[skip, up]`` and apply DoubleConv.

    Two channel conventions are supported:

    * ``skip_channels=None`` (classic U-Net): ``in_channels`` is the channel count *after*
      concatenation. Bilinear: ``up`` keeps the channels and the DoubleConv is
      ``(in, out, mid=in // 2)``. Transposed: ``up`` maps ``in -> in // 2`` and the skip is
      assumed to bring the other ``in // 2``; DoubleConv is ``(in, out)``.
    * ``skip_channels=k`` (explicit, e.g. ResNet encoders whose skips have other widths):
      ``in_channels`` is the width of the tensor being upsampled. Transposed: ``up`` maps
      ``in -> in // 2``, the DoubleConv sees ``in // 2 + k`` channels. Bilinear: ``up`` keeps
      the channels, DoubleConv sees ``in + k`` (mid = half of that). ``k = 0`` means no skip.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bilinear: bool = True,
        skip_channels: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.bilinear = bilinear
        self.skip_channels = skip_channels
        if skip_channels is not None and skip_channels < 0:
            raise ValueError(f"skip_channels must be >= 0, got {skip_channels}")

        self.up: nn.Module
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            up_channels = in_channels
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            up_channels = in_channels // 2

        cat_channels = in_channels if skip_channels is None else up_channels + skip_channels
        mid = cat_channels // 2 if bilinear else None
        self.conv = DoubleConv(cat_channels, out_channels, mid_channels=mid, dropout=dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if skip is None:
            if self.skip_channels != 0:
                raise ValueError("this Up block expects a skip connection tensor")
            return self.conv(x)
        if self.skip_channels == 0:
            raise ValueError("this Up block was built without a skip connection")
        x = match_spatial(x, skip)
        return self.conv(torch.cat([skip, x], dim=1))


class OutConv(nn.Module):
    """1x1 convolution mapping features to per-class logits."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
