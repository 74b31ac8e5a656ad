"""Photos as people take them, made from FFHQ-aligned faces with a known transform.

A user's photo differs from an FFHQ image in roll, scale, framing, canvas shape and exposure.
`make_photo` puts an aligned face into such a photo (rotated up to +-25 degrees, its FFHQ square
320-520 px, on a square or 4:3 canvas of blurred background, with an exposure change) and keeps
the transform, so that anything predicted on the photo can be mapped back to the aligned frame
and scored against the face's own mask (bench/bench_wild.py, the comparison's noise band).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from utils.faces.alignment import warp

CANVASES = ("square", "4:3")


@dataclass
class SyntheticPhoto:
    """A photo made from an aligned face: `matrix` maps aligned pixels to photo pixels."""

    rgb: np.ndarray
    matrix: np.ndarray  # 2x3, aligned frame (of the source's size) -> photo
    canvas: str
    angle: float  # degrees, positive = the face turned clockwise in the photo
    face_px: float  # the FFHQ square's side in the photo
    gain: float
    gamma: float

    source_size: int  # side of the aligned face the photo was made from

    def _from_frame(self, size: int) -> np.ndarray:
        """2x3 matrix from the aligned frame at `size` px to photo pixels."""
        r = self.source_size / size
        scale = np.array([[r, 0, 0.5 * r - 0.5], [0, r, 0.5 * r - 0.5], [0, 0, 1]])
        return self.matrix @ scale

    def to_aligned(self, photo_map: np.ndarray, size: int, kind: str = "mask") -> np.ndarray:
        """A map of the photo brought back to the aligned frame at `size` px."""
        return warp(photo_map, cv2.invertAffineTransform(self._from_frame(size)), (size, size),
                    kind)

    def from_aligned(self, aligned: np.ndarray, kind: str = "mask") -> np.ndarray:
        """A map of the aligned frame (any size) placed into the photo, as the face was."""
        h, w = self.rgb.shape[:2]
        return warp(aligned, self._from_frame(aligned.shape[0]), (w, h), kind)


def _background(source: np.ndarray, shape: tuple[int, int], rng: np.random.Generator
                ) -> np.ndarray:
    """A plausible, face-free backdrop: a corner of another FFHQ image, enlarged and blurred."""
    h, w = shape
    s = source.shape[0]
    c = s // 3
    x, y = (0, s - c)[rng.integers(2)], 0
    patch = source[y:y + c, x:x + c]
    big = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR)
    sigma = max(h, w) / 60
    return cv2.GaussianBlur(big, (0, 0), sigma)


def _place(canvas: np.ndarray, face: np.ndarray, matrix: np.ndarray, side: float) -> np.ndarray:
    """A face put onto a float canvas through `matrix` (aligned -> canvas): a camera's view of
    it, one bicubic resampling independent of the pipeline's warps, the square's edge feathered
    so that it does not show as a hard frame."""
    h, w = canvas.shape[:2]
    size = face.shape[0]
    placed = cv2.warpAffine(face, matrix, (w, h), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REFLECT_101)
    alpha = warp(np.ones((size, size), np.float32), matrix, (w, h), "map")
    alpha = np.clip(cv2.GaussianBlur(alpha, (0, 0), side / 40), 0, 1)[..., None]
    return placed.astype(np.float32) * alpha + canvas * (1 - alpha)


def make_photo(face: np.ndarray, seed: int, canvas: str = "square",
               backdrop: np.ndarray | None = None, angle_max: float = 25.0,
               face_px: tuple[float, float] = (320, 520), exposure: bool = True
               ) -> SyntheticPhoto:
    """Put an aligned face (square RGB uint8) into a phone-like photo; reproducible by `seed`."""
    if canvas not in CANVASES:
        raise ValueError(f"canvas must be one of {CANVASES}, got {canvas!r}")
    rng = np.random.default_rng(seed)
    size = face.shape[0]
    side = float(rng.uniform(*face_px))
    angle = float(rng.uniform(-angle_max, angle_max))
    if canvas == "square":
        ch = cw = round(side * rng.uniform(1.35, 1.9))
    else:
        short = side * rng.uniform(1.35, 1.7)
        long_ = short * 4 / 3
        ch, cw = (round(long_), round(short)) if rng.integers(2) else \
            (round(short), round(long_))
    # the face's centre: anywhere that keeps the central part of the square in the photo
    margin = 0.32 * side
    cx = float(rng.uniform(margin, max(margin, cw - margin)))
    cy = float(rng.uniform(margin, max(margin, ch - margin)))
    k = side / size
    t = np.radians(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) * k
    centre_src = np.array([size / 2 - 0.5, size / 2 - 0.5])
    matrix = np.hstack([rot, (np.array([cx, cy]) - rot @ centre_src)[:, None]])
    back = _background(face if backdrop is None else backdrop, (ch, cw), rng)
    rgb = _place(back.astype(np.float32), face, matrix, side)
    gain = float(rng.uniform(0.7, 1.3)) if exposure else 1.0
    gamma = float(rng.uniform(0.8, 1.25)) if exposure else 1.0
    rgb = 255.0 * np.clip(gain * np.clip(rgb / 255.0, 0, 1) ** gamma, 0, 1)
    return SyntheticPhoto(np.round(rgb).astype(np.uint8), matrix, canvas, angle, side, gain, gamma,
                          size)


@dataclass
class SyntheticClip:
    """A video made from aligned faces: frames and, per frame, each face's 2x3 matrix from its
    aligned frame (the source's size) to the frame's pixels."""

    frames: list[np.ndarray]
    matrices: list[list[np.ndarray]]
    fps: float


def _wander(rng: np.random.Generator, n: int, smooth: float) -> np.ndarray:
    """A slow random walk in [-1, 1] (hand-held drift): noise low-passed over `smooth` frames."""
    x = rng.normal(size=n + 4 * int(smooth))
    k = np.exp(-0.5 * (np.arange(-2 * int(smooth), 2 * int(smooth) + 1) / max(smooth, 1)) ** 2)
    y = np.convolve(x, k / k.sum(), mode="valid")[:n]
    return y / max(np.abs(y).max(), 1e-9)


def make_clip(faces: list[np.ndarray], n_frames: int, size: tuple[int, int] = (640, 480),
              fps: float = 25.0, face_px: float = 200.0, motion: str = "still",
              jitter_px: float = 3.0, jitter_deg: float = 1.5, flicker: float = 0.06,
              noise: float = 2.0, seed: int = 0) -> SyntheticClip:
    """Frames of a hand-held clip of aligned faces (square RGB uint8, side by side): the camera
    drifts by up to `jitter_px` px and `jitter_deg` degrees, the exposure flickers by up to
    `flicker`, each frame has sensor noise of `noise` grey levels (sd), and with motion="across"
    the faces walk together from the left of the frame to the right. Reproducible by `seed`; compression comes from the video file it is saved in."""
    if motion not in ("still", "across"):
        raise ValueError(f"motion must be 'still' or 'across', got {motion!r}")
    w, h = size
    rng = np.random.default_rng(seed)
    back = _background(faces[0], (h, w), rng).astype(np.float32)
    dx, dy, rot = (_wander(rng, n_frames, 6.0) for _ in range(3))
    gains = 1 + flicker * rng.uniform(-1, 1, n_frames)
    gap = face_px * 1.15
    frames, matrices = [], []
    for i in range(n_frames):
        if motion == "across":
            span = w - gap * len(faces)
            left = 0.5 * gap + span * (0.1 + 0.8 * i / max(1, n_frames - 1))
        else:
            left = w / 2 - gap * (len(faces) - 1) / 2
        canvas = back.copy()
        mats = []
        for k, face in enumerate(faces):
            src = face.shape[0]
            centre = np.array([left + k * gap + jitter_px * dx[i], h / 2 + jitter_px * dy[i]])
            t = np.radians(jitter_deg * rot[i])
            r = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) * (face_px / src)
            m = np.hstack([r, (centre - r @ np.array([src / 2 - 0.5, src / 2 - 0.5]))[:, None]])
            canvas = _place(canvas, face, m, face_px)
            mats.append(m)
        grain = rng.normal(0, noise, canvas.shape) if noise > 0 else 0
        frames.append(np.round(np.clip(canvas * gains[i] + grain, 0, 255)).astype(np.uint8))
        matrices.append(mats)
    return SyntheticClip(frames, matrices, fps)
