"""The face-parsing BiSeNet of face-parsing.PyTorch, laid out so `79999_iter.pth` loads strictly.

Context path only (ResNet-18 with attention refinement at strides 16 and 32 and a global-context
branch), a feature-fusion module, and three heads. Module names and shapes match the published
checkpoint exactly (the compat manifest `zll_bisenet_c19`), so the weights load with strict=True.
The forward returns (main, aux16, aux32) logits, each (N, 19, H, W) at the input size; index [0]
is the one to use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bisenet.labels import N_CLASSES
from bisenet.resnet import ResNet18


class ConvBNReLU(nn.Module):
    """Convolution (no bias), BatchNorm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, ks: int = 3, stride: int = 1,
                 padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=ks, stride=stride, padding=padding,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class OutputHead(nn.Module):
    """A 3x3 ConvBNReLU, then a 1x1 convolution to the class logits."""

    def __init__(self, in_ch: int, mid_ch: int, n_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch)
        self.conv_out = nn.Conv2d(mid_ch, n_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


def _global_pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3), keepdim=True)


class AttentionRefinement(nn.Module):
    """Reweights the channels of a feature map by a gate computed from its global average."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, kernel_size=1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        gate = torch.sigmoid(self.bn_atten(self.conv_atten(_global_pool(feat))))
        return feat * gate


class ContextPath(nn.Module):
    """ResNet-18 features refined and merged top-down; returns (feat8, up16->8, up32->16)."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(_global_pool(feat32))  # broadcasts over feat32's grid
        sum32 = self.arm32(feat32) + context
        up32 = self.conv_head32(F.interpolate(sum32, size=feat16.shape[2:], mode="nearest"))
        sum16 = self.arm16(feat16) + up32
        up16 = self.conv_head16(F.interpolate(sum16, size=feat8.shape[2:], mode="nearest"))
        return feat8, up16, up32


class FeatureFusion(nn.Module):
    """Concatenates two feature maps, mixes them, and adds a channel-attention-weighted copy."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, ks=1, padding=0)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, kernel_size=1, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([a, b], dim=1))
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_pool(feat)), inplace=True)))
        return feat * gate + feat


class BiSeNet(nn.Module):
    """Face-parsing BiSeNet; forward -> (main, aux16, aux32) logits at the input size."""

    def __init__(self, n_classes: int = N_CLASSES) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, n_classes)
        self.conv_out16 = OutputHead(128, 64, n_classes)
        self.conv_out32 = OutputHead(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = x.shape[2:]
        feat8, cp8, cp16 = self.cp(x)
        fused = self.ffm(feat8, cp8)
        outs = (self.conv_out(fused), self.conv_out16(cp8), self.conv_out32(cp16))
        return tuple(  # type: ignore[return-value]
            F.interpolate(o, size=size, mode="bilinear", align_corners=True) for o in outs)

    def forward_main(self, x: torch.Tensor) -> torch.Tensor:
        """Only the main head (skips the two auxiliary heads): what inference needs."""
        size = x.shape[2:]
        feat8, cp8, _ = self.cp(x)
        out = self.conv_out(self.ffm(feat8, cp8))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=True)
