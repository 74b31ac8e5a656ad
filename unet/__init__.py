"""Segmentation models and a by-name factory, so configs can select a model with a string."""

from __future__ import annotations

import difflib

from torch import nn

from .resnet_unet import ResNetUNet
from .unet_model import UNet

__all__ = ["MODEL_NAMES", "ResNetUNet", "UNet", "build_model", "count_parameters"]

MODEL_NAMES: tuple[str, ...] = ("unet", "resnet50_unet")

_DEFAULT_BASE_CHANNELS = 64


def build_model(
    name: str,
    n_channels: int = 3,
    n_classes: int = 1,
    base_channels: int = 64,
    bilinear: bool = True,
    pretrained_encoder: bool = False,
) -> nn.Module:
    """Build a model from its config name.

    ``"unet"``: classic U-Net (``bilinear``, ``base_channels`` apply; it has no pretrained
    encoder, so ``pretrained_encoder=True`` is an error rather than silently ignored).
    ``"resnet50_unet"``: ResNet-50 U-Net; its widths are fixed, so a non-default
    ``base_channels`` is an error and ``bilinear`` is ignored (it always uses transposed convs).
    """
    if name not in MODEL_NAMES:
        nearest = difflib.get_close_matches(str(name), MODEL_NAMES, n=1, cutoff=0.0)
        hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
        raise ValueError(
            f"unknown model name {name!r}; valid names: {', '.join(MODEL_NAMES)}{hint}"
        )
    if name == "unet":
        if pretrained_encoder:
            raise ValueError("model 'unet' has no pretrained encoder; use 'resnet50_unet'")
        return UNet(n_channels, n_classes, bilinear=bilinear, base_channels=base_channels)
    if base_channels != _DEFAULT_BASE_CHANNELS:
        raise ValueError(
            f"model 'resnet50_unet' has fixed widths; base_channels={base_channels} is not "
            f"supported (leave it at {_DEFAULT_BASE_CHANNELS})"
        )
    return ResNetUNet(
        n_classes=n_classes, n_channels=n_channels, pretrained_encoder=pretrained_encoder
    )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (for logs and sanity checks against published sizes)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
