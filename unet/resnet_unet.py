"""U-Net with a torchvision ResNet-50 encoder (the seed project's wrinkle model).

Parameter names and shapes match the seed checkpoint ``wrinkle_model.pth`` exactly, so its
``model_state_dict`` loads with ``strict=True``. ImageNet encoder weights are used only when
explicitly requested: this code never downloads anything by default.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from .unet_parts import OutConv, Up

__all__ = ["ResNetUNet"]


def _imagenet_resnet50_state_dict() -> dict[str, torch.Tensor]:
    """Load the ImageNet ResNet-50 weights from the torch hub cache, downloading if needed.

    Raises a RuntimeError that names the file and the cache folder, because training machines
    are often offline and the user then has to copy the file there by hand.
    """
    weights = ResNet50_Weights.IMAGENET1K_V2
    filename = os.path.basename(urlparse(weights.url).path)
    ckpt_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:
        raise RuntimeError(
            "could not load the ImageNet ResNet-50 encoder weights "
            f"(ResNet50_Weights.IMAGENET1K_V2): {exc}. Download {weights.url} on a machine "
            f"with internet access and place it, named '{filename}', in {ckpt_dir} "
            "(the torch hub cache 'checkpoints' folder; set TORCH_HOME to move it), or build "
            "the model with pretrained_encoder=False."
        ) from exc


class ResNetUNet(nn.Module):
    """ResNet-50 encoder + five transposed-convolution Up blocks; returns logits at input size.

    The encoder downsamples by 32, so internally the input is replicate-padded up to the next
    multiple of 32 (``size_divisor``) and the logits are cropped back; inputs that already are
    multiples of 32 take no padding. Output: ``(N, n_classes, H, W)`` raw logits.
    """

    size_divisor = 32

    def __init__(
        self,
        n_classes: int = 1,
        n_channels: int = 3,
        pretrained_encoder: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if n_channels < 1 or n_classes < 1:
            raise ValueError(
                f"n_channels and n_classes must be >= 1, got {n_channels}, {n_classes}"
            )
        self.n_classes = n_classes
        self.n_channels = n_channels
        self.dropout = dropout

        resnet = resnet50(weights=None)
        if pretrained_encoder:
            resnet.load_state_dict(_imagenet_resnet50_state_dict())
        if n_channels != 3:
            old = resnet.conv1
            new = nn.Conv2d(n_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            if pretrained_encoder:
                # Keep the pretrained filters useful: spread their RGB mean over all inputs.
                with torch.no_grad():
                    mean = old.weight.mean(dim=1, keepdim=True)
                    new.weight.copy_(mean.repeat(1, n_channels, 1, 1) * (3.0 / n_channels))
            resnet.conv1 = new

        self.input_layer = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu)  # 64, /2
        self.maxpool = resnet.maxpool  # /4
        self.encoder1 = resnet.layer1  # 256, /4
        self.encoder2 = resnet.layer2  # 512, /8
        self.encoder3 = resnet.layer3  # 1024, /16
        self.encoder4 = resnet.layer4  # 2048, /32

        self.up1 = Up(2048, 1024, bilinear=False, skip_channels=1024, dropout=dropout)
        self.up2 = Up(1024, 512, bilinear=False, skip_channels=512, dropout=dropout)
        self.up3 = Up(512, 256, bilinear=False, skip_channels=256, dropout=dropout)
        self.up4 = Up(256, 128, bilinear=False, skip_channels=64, dropout=dropout)
        self.up5 = Up(128, 64, bilinear=False, skip_channels=0, dropout=dropout)
        self.outc = OutConv(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        d = self.size_divisor
        pad_h, pad_w = (-h) % d, (-w) % d
        top, left = pad_h // 2, pad_w // 2
        if pad_h or pad_w:
            x = F.pad(x, [left, pad_w - left, top, pad_h - top], mode="replicate")

        x0 = self.input_layer(x)
        e1 = self.encoder1(self.maxpool(x0))
        e2 = self.encoder2(e1)
        e3 = self.encoder3(e2)
        e4 = self.encoder4(e3)

        y = self.up1(e4, e3)
        y = self.up2(y, e2)
        y = self.up3(y, e1)
        y = self.up4(y, x0)
        y = self.up5(y)
        y = self.outc(y)
        if pad_h or pad_w:
            y = y[..., top : top + h, left : left + w]
        return y
