"""`FaceParser`: BiSeNet label maps for RGB images of any size, weights loaded once.

Images are resized to 512x512 (the size the published weights were trained at), normalised with
the ImageNet mean/std, run in batches (inference mode, channels_last; bf16 autocast on a CPU that
has native bf16 unless precision="fp32"), and the label maps are scaled back to each image's own
size by nearest neighbour. The weights are the face-parsing.PyTorch release `79999_iter.pth`,
read with torch.load(weights_only=True) and loaded strictly: a wrong file is an error, not a
silently half-loaded model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from bisenet.labels import FACE_LABELS
from bisenet.model import BiSeNet
from utils.data.images import load_image, resize_image, to_rgb_uint8
from utils.errors import UserError
from utils.runtime import amp_dtype, autocast, resolve_device

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO / "res" / "cp" / "79999_iter.pth"
WEIGHTS_NAME = "79999_iter.pth"
PARSE_SIZE = 512
# The statistics the published weights were trained with.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PRECISIONS = ("auto", "bf16", "fp32")

ImageLike = np.ndarray | str | Path


def weights_hint(path: str | Path | None = None) -> str:
    """Where to get the face-parsing weights and where to put them (shown when they are missing)."""
    where = f"{path}" if path is not None else f"{DEFAULT_WEIGHTS}"
    return (f"face-parsing weights not found at {where}. Download {WEIGHTS_NAME} (the pretrained "
            "BiSeNet of the face-parsing.PyTorch project, github.com/zllrunning/face-parsing.PyTorch: "
            "its README links the file on Google Drive) and put it at "
            f"{DEFAULT_WEIGHTS.relative_to(REPO)} in this repository, or pass --weights PATH")


def load_bisenet_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a BiSeNet state dict safely (weights_only); a bare dict, or under "state_dict"/"model"."""
    path = Path(path)
    if not path.is_file():
        raise UserError(weights_hint(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and format errors all mean "not a weights file"
        raise UserError(f"{path}: not a readable PyTorch weights file ({exc})") from None
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{path}: expected a state dict of the face-parsing BiSeNet")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def build_bisenet(path: str | Path) -> BiSeNet:
    """A BiSeNet with the weights of `path`, loaded strictly; mismatches are named."""
    state = load_bisenet_state(path)
    model = BiSeNet()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape or key mismatch"
        raise UserError(f"{path}: not the face-parsing BiSeNet weights ({WEIGHTS_NAME}): "
                        f"{first}") from None
    return model.eval()


def _as_rgb(image: ImageLike) -> np.ndarray:
    """Any image (a path, or an array of any mode) as RGB uint8, by the project's one loader."""
    if isinstance(image, str | Path):
        return load_image(image)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        return arr
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise UserError(f"expected an image array (H, W) or (H, W, C), got shape {arr.shape}")
    return to_rgb_uint8(arr, from_bgr=False)


class FaceParser:
    """Face parsing with the published BiSeNet: label maps (uint8, ids 0..18) at the input size."""

    def __init__(self, weights: str | Path | None = None, device: str = "auto",
                 precision: str = "auto", batch_size: int = 8) -> None:
        if precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
        if batch_size < 1:
            raise UserError("batch size must be at least 1")
        self.weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        if not self.weights.is_file():
            raise UserError(weights_hint(self.weights))
        self.device = resolve_device(device)
        model = build_bisenet(self.weights)
        self.model = model.to(self.device, memory_format=torch.channels_last)
        if precision == "fp32":
            self.dtype = None
        elif precision == "bf16":
            self.dtype = amp_dtype(self.device, "bf16")
        else:
            self.dtype = amp_dtype(self.device, "auto")
        self.batch_size = batch_size
        prec = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        self.description = f"BiSeNet face parser ({self.weights.name}, {self.device.type}, {prec})"

    def _batch_512(self, rgbs: Sequence[np.ndarray]) -> np.ndarray:
        x = np.stack([resize_image(im, (PARSE_SIZE, PARSE_SIZE)) for im in rgbs]).astype(np.float32)
        x = (x / 255.0 - MEAN) / STD
        t = torch.from_numpy(x).permute(0, 3, 1, 2).to(self.device)
        t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            logits = self.model.forward_main(t)
        return logits.float().argmax(dim=1).to(torch.uint8).cpu().numpy()

    def parse_512(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Label maps (N, 512, 512) uint8: the format of the data set's face_parsed_labels."""
        rgbs = [_as_rgb(im) for im in images]
        out = np.zeros((len(rgbs), PARSE_SIZE, PARSE_SIZE), dtype=np.uint8)
        for start in range(0, len(rgbs), self.batch_size):
            chunk = rgbs[start:start + self.batch_size]
            out[start:start + len(chunk)] = self._batch_512(chunk)
        return out

    def parse(self, images: Sequence[ImageLike]) -> list[np.ndarray]:
        """Label maps (H, W) uint8 at each image's own size (nearest neighbour from 512)."""
        rgbs = [_as_rgb(im) for im in images]
        maps = self.parse_512(rgbs)
        return [labels_to_size(m, im.shape[:2]) for m, im in zip(maps, rgbs, strict=True)]

    def __call__(self, image: ImageLike) -> np.ndarray:
        """The label map of one image at its own size."""
        return self.parse([image])[0]

    def face_mask(self, image: ImageLike, keep: Sequence[int] = FACE_LABELS) -> np.ndarray:
        """Bool (H, W): pixels whose label is in `keep` (default skin and nose)."""
        return np.isin(self(image), list(keep))


def labels_to_size(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale a label map to (height, width) by nearest neighbour (labels are ids, not values)."""
    h, w = size
    if labels.shape[:2] == (h, w):
        return labels
    return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)


@functools.lru_cache(maxsize=1)
def default_parser() -> FaceParser | None:
    """The face parser with the default weights (res/cp/79999_iter.pth), loaded once; None when
    the file is absent (the landmark face region is used then)."""
    if not DEFAULT_WEIGHTS.is_file():
        return None
    return FaceParser(DEFAULT_WEIGHTS)
