"""The one image loader: any file, any mode, to an RGB uint8 array; plus the image resizer.

OpenCV decodes (it is several times faster than PIL on large PNGs, which matters for the data
loader); PIL is the fallback for modes OpenCV does not read. Grey, RGBA, palette, 16-bit and CMYK
files all come back as H x W x 3 uint8 RGB. Truncated files are errors, not silently grey images.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from utils.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

# Guard against decompression bombs: a larger image is refused from its header, before decoding
# (200 megapixels is about 600 MB as RGB; a 20000x20000 file is refused with a clear message).
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = None  # this module checks every header against MAX_PIXELS itself


class ImageReadError(UserError):
    """A file that is missing, not an image, or truncated."""


def to_rgb_uint8(arr: np.ndarray, from_bgr: bool) -> np.ndarray:
    """Any decoded array (grey, grey+alpha, RGB(A), BGR(A), 16-bit, float) as RGB uint8."""
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype in (np.float32, np.float64):
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if arr.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(arr, 3, axis=2))
    if arr.shape[2] == 2:  # grey + alpha
        return np.ascontiguousarray(np.repeat(arr[:, :, :1], 3, axis=2))
    if from_bgr:  # cvtColor: one pass, no strided copy (20 % of a 1024 PNG decode)
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
    return np.ascontiguousarray(arr[:, :, :3])


def _jpeg_truncated(data: bytes) -> bool:
    """A JPEG is whole when an end-of-image marker follows its last start-of-scan marker."""
    if data[:2] != b"\xff\xd8":
        return False
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def _check_header_size(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse an image whose header claims more than `max_pixels`, without decoding it."""
    import io

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except (OSError, SyntaxError, ValueError):
        return  # PIL cannot read the header; the decoders below say what is wrong
    if w * h > max_pixels:
        raise ImageReadError(f"{name}: {w}x{h} px is too large (at most "
                             f"{max_pixels // 1_000_000} megapixels); scale it down first")


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to RGB uint8 (H, W, 3); raise ImageReadError naming `name` on failure.

    An image whose header claims more than `max_pixels` is refused before it is decoded."""
    if not data:
        raise ImageReadError(f"{name}: the file is empty")
    if _jpeg_truncated(data):
        raise ImageReadError(f"{name}: the JPEG file is truncated (no end-of-image marker)")
    _check_header_size(data, name, max_pixels)
    buf = np.frombuffer(data, dtype=np.uint8)
    # JPEG: IMREAD_COLOR applies the EXIF orientation (phone photos) and converts CMYK and grey;
    # other formats: IMREAD_UNCHANGED keeps 16-bit and alpha for the conversion below.
    flag = cv2.IMREAD_COLOR if data[:2] == b"\xff\xd8" else cv2.IMREAD_UNCHANGED
    arr = cv2.imdecode(buf, flag)
    if arr is not None and arr.size > 0:
        return to_rgb_uint8(arr, from_bgr=arr.ndim == 3)
    # OpenCV could not decode it: let PIL try (palette GIFs, unusual TIFFs), and explain failures.
    import io

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.uint32)
                return to_rgb_uint8((arr >> 8).clip(0, 255).astype(np.uint8), from_bgr=False)
            return to_rgb_uint8(np.asarray(img.convert("RGB")), from_bgr=False)
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image file (no known image format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{name}: cannot decode the image ({exc})") from None


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), whatever its mode or bit depth."""
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path}: a folder, not an image file")
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror})") from None
    return decode_image(data, str(path))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image to (height, width): area averaging when shrinking, bicubic when enlarging."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    shrink = h < image.shape[0] or w < image.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return cv2.resize(image, (w, h), interpolation=interp)
