"""The face-parsing BiSeNet (ResNet-18 context path, 19 CelebAMask-HQ classes) and its parser.

`BiSeNet` (bisenet.model) loads the published `79999_iter.pth` strictly; `FaceParser`
(bisenet.parser) turns RGB images of any size into label maps. Both are imported on first use, so
that `from bisenet.labels import FACE_LABELS` does not pull in torch.
"""

from __future__ import annotations

from typing import Any

from bisenet.labels import FACE_LABELS, LABEL_NAMES, N_CLASSES, NOSE, SKIN

__all__ = ["FACE_LABELS", "LABEL_NAMES", "NOSE", "N_CLASSES", "SKIN", "BiSeNet", "FaceParser"]


def __getattr__(name: str) -> Any:
    if name == "BiSeNet":
        from bisenet.model import BiSeNet

        return BiSeNet
    if name == "FaceParser":
        from bisenet.parser import FaceParser

        return FaceParser
    raise AttributeError(f"module 'bisenet' has no attribute {name!r}")
