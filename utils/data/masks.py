"""The one mask binariser and the one mask resizer.

Binarisation rule (applied to every mask file, whatever its format):

1. Palette images are read as their palette indices, not their colours; colour images (RGB, RGBA)
   as the largest of their colour channels (alpha ignored); grey and 16-bit images as they are.
2. If the largest value in the mask is at most 2, it is a label map: wrinkle = value 1
   (0 or 2 are background, so both 0/1 masks and 1/2 masks with a background of 2 work).
3. Otherwise it is an intensity mask: wrinkle = value >= 128 (8-bit range) or >= 32768 when the
   values exceed 255 (16-bit range). Anti-aliased or JPEG-compressed 0/255 masks split at mid-grey.

Resizing rule: wrinkle lines are 1-3 px wide at 1024, so shrinking a mask by nearest neighbour
erases many of them. When a mask is shrunk, an output pixel is wrinkle if ANY input pixel it covers
is wrinkle (max-pooling for integer factors, area coverage > 0 otherwise). Enlarging uses nearest.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from utils.errors import UserError

MASK_RULE = (
    "palette -> indices, colour -> max channel; max <= 2: wrinkle = 1; "
    "else wrinkle = value >= 128 (>= 32768 for 16-bit values)"
)
RESIZE_RULE = "shrink: any-coverage (max-pool); enlarge: nearest"


class MaskReadError(UserError):
    """A mask file that is missing, unreadable or not a 2-D mask."""


def mask_values(path: str | Path) -> np.ndarray:
    """Read a mask file's raw values as a 2-D integer array (step 1 of the rule)."""
    path = Path(path)
    if not path.is_file():
        raise MaskReadError(f"{path}: no such mask file")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "P":
                arr = np.asarray(img)  # palette indices
            elif mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
                arr = np.asarray(img.convert("RGB")).max(axis=2)
            elif mode in ("LA", "PA"):
                arr = np.asarray(img)[:, :, 0]
            elif mode == "1":
                arr = np.asarray(img).astype(np.uint8)
            else:  # L, I;16*, I, F
                arr = np.asarray(img)
    except UnidentifiedImageError:
        raise MaskReadError(f"{path}: not an image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MaskReadError(f"{path}: cannot read the mask ({exc})") from None
    if arr.ndim != 2:
        raise MaskReadError(f"{path}: expected a 2-D mask, got shape {arr.shape}")
    return arr


def binarize_mask(values: np.ndarray) -> np.ndarray:
    """Apply steps 2-3 of the rule to raw mask values; returns a bool array."""
    vmax = float(values.max()) if values.size else 0.0
    if vmax <= 2:
        return values == 1
    threshold = 128 if vmax <= 255 else 32768
    return values >= threshold


def read_mask(path: str | Path) -> np.ndarray:
    """Read any mask file into a bool array (True = wrinkle) by the module's documented rule."""
    return binarize_mask(mask_values(path))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to (height, width) so that thin lines survive shrinking."""
    h, w = size
    mh, mw = mask.shape[:2]
    if (mh, mw) == (h, w):
        return mask.astype(bool, copy=False)
    if h <= mh and w <= mw:
        # Area coverage > 0 is max-pooling for integer factors (and any-coverage otherwise);
        # OpenCV's area resize is ~30x faster than a numpy block reduction at 1024 -> 512.
        cover = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        return cover > 1e-6
    if h >= mh and w >= mw:
        return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    # Shrinks one axis and enlarges the other: do the shrinking axis first, keeping lines.
    inter = resize_mask(mask, (min(h, mh), min(w, mw)))
    return resize_mask(inter, (h, w))


def nearest_resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize, for comparison only: it loses thin lines when shrinking."""
    h, w = size
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0


def mask_to_png(mask: np.ndarray) -> np.ndarray:
    """A bool mask as an 8-bit 0/255 array for writing (the data set's own mask format)."""
    return mask.astype(np.uint8) * 255
