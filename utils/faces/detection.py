"""Faces in a photo: detection, 68 landmarks, FFHQ alignment, and the way back.

FFHQ was made by aligning photos with dlib's 68 facial landmarks: the eye centres and the mouth
corners give an oriented square (the "quad"), which was resampled to 1024 px. The models here learn
on such faces, so every photo goes through the same steps before a model sees it:

    photo -> faces (dlib's HOG detector) -> 68 landmarks (dlib's shape predictor, the model file
    the face_recognition_models package ships) -> FFHQ quad -> aligned face at the model's size

and maps made in the aligned frame (probabilities, masks, region outlines) go back through the
inverse transform (`Alignment.paste_back`). Alignment is decided by the landmarks alone, never by
the image's shape: an FFHQ image aligns to itself (tests/test_faces.py).

Nothing here downloads: dlib (`dlib-bin`) and the landmark model (`face_recognition_models`) are
pip packages; without them `detect_faces` raises a UserError that says what to install.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from utils.errors import UserError
from utils.masks import resize_mask

LANDMARK_FILE = "shape_predictor_68_face_landmarks.dat"
# Detection runs on a copy whose long side is at most this (HOG costs grow with the pixel count);
# small photos are upsampled so that faces down to ~40 px are found.
DETECT_SIDE = 1024
UPSAMPLE_BELOW = (320, 160)  # work copies shorter than these get 1, 2 upsampling steps
# Landmarks are fitted on a crop in which the face box is at most this wide (precision is
# relative to the face, the cost is not).
LANDMARK_BOX = 320
MIN_FACE_PX = 32  # an FFHQ square smaller than this in the photo is not analysed
ROLL_REFIT = 8.0  # degrees: landmarks of a face rolled more than this are refitted upright


class FaceModelMissing(UserError):
    """dlib or the 68-point landmark model is not installed."""


# ---------------------------------------------------------------- dlib models


def landmark_model_path() -> Path:
    """The 68-point landmark model that the face_recognition_models package ships.

    Found through the package's location only: importing the package needs pkg_resources,
    which a fresh virtual environment does not have.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelMissing("the face landmark model is not installed: "
                               "pip install face_recognition_models (see requirements.txt)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / LANDMARK_FILE
        if path.is_file():
            return path
    raise FaceModelMissing(f"face_recognition_models is installed but has no models/{LANDMARK_FILE}"
                           "; reinstall it: pip install --force-reinstall face_recognition_models")


@functools.cache
def _dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise FaceModelMissing("dlib is not installed: pip install dlib-bin "
                               "(see requirements.txt)") from None
    return dlib


@functools.cache
def _detector() -> Any:
    return _dlib().get_frontal_face_detector()


@functools.cache
def _shape_predictor() -> Any:
    return _dlib().shape_predictor(str(landmark_model_path()))


def faces_available() -> bool:
    """True when dlib and the landmark model are installed."""
    try:
        _shape_predictor()
    except UserError:
        return False
    return True


# ---------------------------------------------------------------- warping


def _scale_of(matrix: np.ndarray) -> float:
    """Destination pixels per source pixel of a similarity (or near-similarity) 2x3 matrix."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def _prescale(src: np.ndarray, matrix: np.ndarray, factor: float, kind: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """Shrink `src` by `factor` (< 1) with the project's resizers and fix the matrix to match."""
    h, w = src.shape[:2]
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    if kind == "mask":
        small = resize_mask(src, (nh, nw)).astype(np.float32)
    else:
        small = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA)
    fx, fy = nw / w, nh / h
    # A pixel centre x in src sits at (x + 0.5) * fx - 0.5 in the shrunk copy.
    back = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
    return small, matrix @ back


def _needed(src: np.ndarray, matrix: np.ndarray, dsize: tuple[int, int], margin: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Only the part of `src` that the warp reads (plus a margin for the kernels), with the
    matrix moved to match: a face in a large photo costs what the face costs."""
    h, w = src.shape[:2]
    dw, dh = dsize
    inv = cv2.invertAffineTransform(matrix)
    corners = _apply(inv, np.array([[0, 0], [dw - 1, 0], [0, dh - 1], [dw - 1, dh - 1]]))
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + margin + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0 or (x0, y0, x1, y1) == (0, 0, w, h):
        return src, matrix
    moved = matrix.copy()
    moved[:, 2] += matrix[:, :2] @ [x0, y0]
    return src[y0:y1, x0:x1], moved


def warp(src: np.ndarray, matrix: np.ndarray, dsize: tuple[int, int], kind: str = "image",
         border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """Resample `src` through a 2x3 matrix (source pixel -> destination pixel) into dsize (w, h).

    kind "image" (uint8): Lanczos (area-shrunk first to twice the output scale when the warp
    shrinks more than 2x): of bilinear, bicubic, area + bicubic and Lanczos, it kept the most of
    the model's F1 on rotated, rescaled photos (bench/bench_wild.py). kind "map" (float):
    area-shrunk first, then bilinear.
    kind "mask" (bool): shrunk first by the mask rule (a line survives), then bilinear coverage
    >= 0.5. `border` applies outside the source (constant 0, or e.g. cv2.BORDER_REFLECT_101).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = _scale_of(matrix)
    src, matrix = _needed(src, matrix, dsize, int(np.ceil(8 / min(scale, 1.0))) + 2)
    src_m = src.astype(np.float32) if kind == "mask" else src
    # Lanczos resamples a shrink down to one half well by itself; below that, area-shrink first
    limit = 0.5 if kind == "image" else 0.999
    if scale < limit:
        src_m, matrix = _prescale(src_m, matrix, scale * (2 if kind == "image" else 1), kind)
    w, h = dsize
    if kind == "image":
        if np.allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-6) and src_m.shape[:2] == (h, w):
            return src_m.copy()
        return cv2.warpAffine(src_m, matrix, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=border)
    out = cv2.warpAffine(src_m, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
    return out >= 0.5 if kind == "mask" else out


# ---------------------------------------------------------------- alignment


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """FFHQ's oriented square from 68 landmarks: corners top-left, bottom-left, bottom-right,
    top-right, in the photo's coordinates.

    The rule of FFHQ's alignment: eye centres (points 36-41, 42-47) and mouth corners (48, 54);
    the square is centred a tenth of the way from the eyes' midpoint to the mouth's; its axis is
    the eye line turned towards the eye-to-mouth direction; its half side is the larger of twice
    the eye distance and 1.8 times the eye-to-mouth distance.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 (x, y) landmarks, got shape {lm.shape}")
    eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


@dataclass
class Alignment:
    """The FFHQ square of one face in a photo, and the transforms to and from its aligned frame.

    `quad` is read as FFHQ's resampler read it (corner positions on the pixel grid's edges), so
    an aligned face of any size is FFHQ's aligned face at that size.
    """

    quad: np.ndarray  # (4, 2): top-left, bottom-left, bottom-right, top-right

    @property
    def side(self) -> float:
        """The square's side in photo pixels (how much detail the photo holds of the face)."""
        q = self.quad
        return float((np.hypot(*(q[3] - q[0])) + np.hypot(*(q[1] - q[0]))) / 2)

    @property
    def angle(self) -> float:
        """The face's roll in the photo, in degrees (0 = upright, positive = turned clockwise)."""
        d = self.quad[3] - self.quad[0]
        return float(np.degrees(np.arctan2(d[1], d[0])))

    def to_photo_matrix(self, size: int) -> np.ndarray:
        """2x3 matrix from aligned-frame pixels (size x size) to photo pixels."""
        tl, bl, _, tr = self.quad
        ex, ey = (tr - tl) / size, (bl - tl) / size
        # aligned pixel centre a sits at a + 0.5 on the edge grid; the photo's centre at p - 0.5
        offset = tl + 0.5 * (ex + ey) - 0.5
        return np.array([[ex[0], ey[0], offset[0]], [ex[1], ey[1], offset[1]]])

    def to_aligned_matrix(self, size: int) -> np.ndarray:
        """2x3 matrix from photo pixels to aligned-frame pixels (size x size)."""
        return cv2.invertAffineTransform(self.to_photo_matrix(size))

    def to_aligned(self, points: np.ndarray, size: int) -> np.ndarray:
        """Map (N, 2) photo points (x, y) into the aligned frame of side `size`."""
        return _apply(self.to_aligned_matrix(size), points)

    def to_photo(self, points: np.ndarray, size: int) -> np.ndarray:
        """Map (N, 2) aligned-frame points back into the photo."""
        return _apply(self.to_photo_matrix(size), points)

    def align(self, photo: np.ndarray, size: int) -> np.ndarray:
        """The aligned face, size x size. Parts of the square outside the photo are filled as
        FFHQ filled them: reflected, blurred, and faded towards the median colour with the
        distance from the photo's edge (so no mirrored second face shows)."""
        m = self.to_aligned_matrix(size)
        out = warp(photo, m, (size, size), "image", border=cv2.BORDER_REFLECT_101)
        h, w = photo.shape[:2]
        inside = warp(np.ones((h, w), bool), m, (size, size), "mask")
        if inside.all():
            return out
        dist = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 3)
        fade = np.clip(dist / (0.1 * size), 0, 1)[..., None]
        blur = cv2.GaussianBlur(out, (0, 0), max(1.0, 0.02 * size)).astype(np.float32)
        median = np.median(out[inside], axis=0) if inside.any() else blur.mean(axis=(0, 1))
        filled = blur + (median - blur) * fade
        return np.where(inside[..., None], out, np.round(filled)).astype(np.uint8)

    def bounds(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """The square's bounding box clipped to the photo: x0, y0, x1, y1 (x1, y1 exclusive)."""
        h, w = shape[:2]
        x0, y0 = np.floor(self.quad.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(self.quad.max(axis=0)).astype(int) + 2
        return max(0, x0), max(0, y0), min(w, x1), min(h, y1)

    def paste_back(self, aligned: np.ndarray, shape: tuple[int, ...], kind: str = "map"
                   ) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
        """A map of the aligned frame (square) in the photo: (box, values, inside) where box is
        x0, y0, x1, y1 in the photo, values the map over that box (0 outside the square) and
        inside a bool mask of the square over the box. kind: "map" (float) or "mask" (bool)."""
        size = aligned.shape[0]
        if aligned.shape[:2] != (size, size):
            raise ValueError(f"aligned maps are square, got {aligned.shape[1]}x{aligned.shape[0]}")
        x0, y0, x1, y1 = self.bounds(shape)
        if x1 <= x0 or y1 <= y0:
            empty = np.zeros((0, 0), bool)
            return (x0, y0, x0, y0), empty.astype(aligned.dtype), empty
        m = self.to_photo_matrix(size)
        m[:, 2] -= (x0, y0)
        values = warp(aligned, m, (x1 - x0, y1 - y0), kind)
        inside = warp(np.ones((size, size), bool), m, (x1 - x0, y1 - y0), "mask")
        return (x0, y0, x1, y1), values, inside


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


# ---------------------------------------------------------------- detection


@dataclass
class Face:
    """One face found in a photo."""

    box: tuple[int, int, int, int]  # detector box in the photo: x0, y0, x1, y1
    score: float  # the HOG detector's confidence (higher is surer; about 0 at its threshold)
    landmarks: np.ndarray  # (68, 2) float, photo pixels
    alignment: Alignment
    notes: list[str] = field(default_factory=list)

    @property
    def side(self) -> float:
        return self.alignment.side


def _work_copy(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo shrunk to at most DETECT_SIDE and padded by an eighth on each side (HOG only
    scans windows inside the image, so a face touching the edge is found only with a margin);
    returns the copy and the 2x3 matrix from photo to copy."""
    h, w = rgb.shape[:2]
    s = min(1.0, DETECT_SIDE / max(h, w))
    if s < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA)
    pad = max(rgb.shape[:2]) // 8
    work = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    sx, sy = rgb.shape[1] / w, rgb.shape[0] / h
    return work, np.array([[sx, 0, 0.5 * sx - 0.5 + pad], [0, sy, 0.5 * sy - 0.5 + pad]])


def _rotation(centre: np.ndarray, angle: float, scale: float, to: np.ndarray) -> np.ndarray:
    """2x3 matrix turning by -angle degrees and scaling about `centre`, which lands on `to`."""
    t = np.radians(angle)
    r = scale * np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    return np.hstack([r, (to - r @ centre)[:, None]])


def _fit_landmarks(rgb: np.ndarray, centre: np.ndarray, width: float, angle: float
                   ) -> np.ndarray:
    """68 landmarks of the face of `width` px at `centre`, rolled by `angle` degrees, fitted on
    an upright crop in which the face is at most LANDMARK_BOX px wide."""
    dlib = _dlib()
    k = min(1.0, LANDMARK_BOX / max(width, 1.0))
    side = int(np.ceil(3 * width * k))
    m = _rotation(centre, angle, k, np.array([side / 2, side / 2]))
    if angle == 0 and k == 1:  # a plain crop: keep the pixels as they are
        m[:, 2] = np.round(m[:, 2])
    crop = warp(rgb, m, (side, side), "image", border=cv2.BORDER_REPLICATE)
    half = width * k / 2
    rect = dlib.rectangle(round(side / 2 - half), round(side / 2 - half),
                          round(side / 2 + half), round(side / 2 + half))
    shape = _shape_predictor()(np.ascontiguousarray(crop), rect)
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return _apply(cv2.invertAffineTransform(m), pts)


def _roll(landmarks: np.ndarray) -> float:
    d = landmarks[42:48].mean(axis=0) - landmarks[36:42].mean(axis=0)
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _landmarks(rgb: np.ndarray, centre: np.ndarray, width: float, angle: float) -> np.ndarray:
    """Fit, then refit upright when the face turned out to be rolled (the shape predictor was
    trained on mostly upright faces; its points drift on tilted ones)."""
    lm = _fit_landmarks(rgb, centre, width, angle)
    roll = _roll(lm)
    if abs(roll - angle) > ROLL_REFIT:
        lm = _fit_landmarks(rgb, centre, width, roll)
    return lm


def detect_faces(rgb: np.ndarray) -> list[Face]:
    """Every frontal face in an RGB uint8 photo, largest FFHQ square first.

    Detection runs on a copy of at most DETECT_SIDE px with a margin, upsampled when small so
    that faces down to about 40 px are found. When nothing is found it tries again: upsampled
    once more, then turned by +-30 degrees (HOG finds faces rolled up to about 20 degrees), then
    turned on its side and upside down. Landmarks are fitted at the photo's own resolution, on
    an upright crop of each face.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise UserError(f"expected an RGB uint8 image, got shape {rgb.shape} {rgb.dtype}")
    detector = _detector()
    _shape_predictor()  # fail early, with the install hint, when the model is missing
    work, to_work = _work_copy(rgb)
    side = round(max(rgb.shape[:2]) * to_work[0, 0])  # the copy's side without its margin
    upsample = sum(side < u for u in UPSAMPLE_BELOW)
    from_work = cv2.invertAffineTransform(to_work)
    centre = np.array([work.shape[1] / 2, work.shape[0] / 2])
    found: list[tuple[np.ndarray, float, float, float]] = []  # centre, width, angle, score
    for angle, up in [(0, upsample), (0, upsample + 1), (30, upsample), (-30, upsample),
                      (90, upsample), (-90, upsample), (180, upsample)]:
        if up > 2:  # a 4x-upsampled copy costs more than it finds
            continue
        if angle:
            m = _rotation(centre, angle, 1.0, centre)
            img = cv2.warpAffine(work, m, (work.shape[1], work.shape[0]),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            back = cv2.invertAffineTransform(m)
        else:
            img, back = work, np.array([[1.0, 0, 0], [0, 1.0, 0]])
        rects, scores, _ = detector.run(np.ascontiguousarray(img), up, 0.0)
        for r, score in zip(rects, scores, strict=True):
            c = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
            c_photo = _apply(from_work, _apply(back, c))[0]
            width = (r.right() - r.left() + 1) / to_work[0, 0]
            found.append((c_photo, width, float(angle), float(score)))
        if found:
            break
    faces = []
    for c, width, angle, score in found:
        lm = _landmarks(rgb, c, width, angle)
        half = width / 2
        box = (round(c[0] - half), round(c[1] - half), round(c[0] + half), round(c[1] + half))
        faces.append(Face(box, score, lm, Alignment(ffhq_quad(lm))))
    faces.sort(key=lambda f: -f.side)
    return faces
