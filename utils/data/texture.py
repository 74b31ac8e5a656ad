"""The texture map, the weak wrinkle label of the FFHQ-Wrinkle paper.

Grey image I, Gaussian-blurred I_G (21x21 kernel, sigma 5 at 1024 px, both scaled with the image
size), T = clip(1 - I / (1 + I_G), 0, 1) scaled to 0..255 and set to 0 outside the face. Lines
darker than their surroundings (wrinkles, creases) get high values.
"""

from __future__ import annotations

import cv2
import numpy as np

REFERENCE_SIZE = 1024
REFERENCE_KERNEL = 21
REFERENCE_SIGMA = 5.0


def texture_params(size: int) -> tuple[int, float]:
    """Kernel size (odd, >= 3) and sigma for an image whose longer side is `size` px."""
    scale = size / REFERENCE_SIZE
    k = max(3, round(REFERENCE_KERNEL * scale))
    if k % 2 == 0:
        k += 1
    return k, max(0.5, REFERENCE_SIGMA * scale)


def texture_map(rgb: np.ndarray, face_mask: np.ndarray | None = None) -> np.ndarray:
    """Texture map (H, W) uint8 of an RGB uint8 image; zero outside `face_mask` when given."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    k, sigma = texture_params(max(rgb.shape[:2]))
    blurred = cv2.GaussianBlur(grey, (k, k), sigma)
    tex = np.clip(1.0 - grey / (1.0 + blurred), 0.0, 1.0)
    out = np.round(tex * 255.0).astype(np.uint8)
    if face_mask is not None:
        out[~face_mask.astype(bool)] = 0
    return out
