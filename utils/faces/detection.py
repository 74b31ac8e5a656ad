"""Faces in a photo: detection and 68 landmarks (dlib).

FFHQ was made by aligning photos with dlib's 68 facial landmarks. Every photo goes the same way
before a model sees it:

    photo -> faces (dlib's HOG detector) -> 68 landmarks (dlib's shape predictor, the model file
    the face_recognition_models package ships) -> FFHQ quad (utils/faces/alignment.py)

Nothing here downloads: dlib (`dlib-bin`) and the landmark model (`face_recognition_models`) are
pip packages; without them `detect_faces` raises a UserError that says what to install.
"""

from __future__ import annotations

import functools
import importlib.util
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from utils.errors import UserError
from utils.faces.alignment import Alignment, apply_matrix, ffhq_quad, warp
from utils.runtime import stage

LANDMARK_FILE = "shape_predictor_68_face_landmarks.dat"
CNN_FILE = "mmod_human_face_detector.dat"  # dlib's CNN face detector, shipped beside it
# The second detector (dlib's CNN) runs only when HOG finds nothing, on a copy whose long side is
# at most this: it finds faces down to about 80 px in that copy, at about 1.2 s for 480 px on two
# cores (its cost grows with the pixel count; bench/bench_faces.py).
CNN_SIDE = 480
# A CNN box, made to look like the HOG box the landmark model was fitted on: 5 % wider, its
# centre 7 % of the width lower (the median over real faces of ../shared where both fired).
CNN_TO_HOG_WIDTH, CNN_TO_HOG_SHIFT = 1.05, (0.018, 0.071)
# How often each detector ran in this process (benchmarks read it; a video tracker too).
detector_calls: Counter[str] = Counter()
# Detection runs on a copy whose long side is at most this (HOG costs grow with the pixel count);
# small photos are upsampled so that faces down to ~40 px are found.
DETECT_SIDE = 1024
UPSAMPLE_BELOW = (320, 160)  # work copies shorter than these get 1, 2 upsampling steps
# Landmarks are fitted on a crop in which the face box is at most this wide (precision is
# relative to the face, the cost is not).
LANDMARK_BOX = 320
MIN_FACE_PX = 32  # an FFHQ square smaller than this in the photo is not analysed
FAST_INTERP = cv2.INTER_CUBIC  # the followed frames' landmark crops (_fit_landmarks)
ROLL_REFIT = 8.0  # degrees: landmarks of a face rolled more than this are refitted upright


class FaceModelMissing(UserError):
    """dlib or the 68-point landmark model is not installed."""


# ---------------------------------------------------------------- dlib models


def landmark_model_path(name: str = LANDMARK_FILE) -> Path:
    """A model file of the face_recognition_models package (the 68-point landmark model, or the
    CNN face detector).

    Found through the package's location only: importing the package needs pkg_resources,
    which a fresh virtual environment does not have.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelMissing("the face landmark model is not installed: "
                               "pip install face_recognition_models (see requirements.txt)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    raise FaceModelMissing(f"face_recognition_models is installed but has no models/{name}"
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
def _cnn_detector() -> Any:
    return _dlib().cnn_face_detection_model_v1(str(landmark_model_path(CNN_FILE)))


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


# ---------------------------------------------------------------- detection


@dataclass
class Face:
    """One face found in a photo."""

    box: tuple[int, int, int, int]  # detector box in the photo: x0, y0, x1, y1
    score: float  # the detector's confidence (higher is surer; HOG: about 0 at its threshold)
    landmarks: np.ndarray  # (68, 2) float, photo pixels
    alignment: Alignment
    notes: list[str] = field(default_factory=list)
    detector: str = "hog"  # which detector found it: "hog", or "cnn" (the second)

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


def _fit_landmarks(rgb: np.ndarray, centre: np.ndarray, width: float, angle: float,
                   fast: bool = False) -> np.ndarray:
    """68 landmarks of the face of `width` px at `centre`, rolled by `angle` degrees, fitted on
    an upright crop in which the face is at most LANDMARK_BOX px wide. The crop is resampled by
    Lanczos, or bicubically when `fast` (a video's followed frames: a 660 px Lanczos crop costs
    several times the fit itself; on still and moving faces the followed points were as steady
    and kept their ids as often, bench/bench_video.py)."""
    dlib = _dlib()
    k = min(1.0, LANDMARK_BOX / max(width, 1.0))
    # three box widths: the shape predictor reads pixels well beyond the box (a crop of 2.5
    # widths moved points by up to 16 px on 800-960 px photos, bench/bench_pipeline.py)
    side = int(np.ceil(3 * width * k))
    m = _rotation(centre, angle, k, np.array([side / 2, side / 2]))
    if angle == 0 and k == 1:  # a plain crop: keep the pixels as they are
        m[:, 2] = np.round(m[:, 2])
    if fast and not (angle == 0 and k == 1):
        crop = cv2.warpAffine(rgb, m, (side, side), flags=FAST_INTERP,
                              borderMode=cv2.BORDER_REPLICATE)
    else:
        crop = warp(rgb, m, (side, side), "image", border=cv2.BORDER_REPLICATE)
    half = width * k / 2
    rect = dlib.rectangle(round(side / 2 - half), round(side / 2 - half),
                          round(side / 2 + half), round(side / 2 + half))
    shape = _shape_predictor()(np.ascontiguousarray(crop), rect)
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return apply_matrix(cv2.invertAffineTransform(m), pts)


def landmark_roll(landmarks: np.ndarray) -> float:
    """The roll of a face from its eye centres, in degrees (positive: turned clockwise)."""
    d = landmarks[42:48].mean(axis=0) - landmarks[36:42].mean(axis=0)
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _landmarks(rgb: np.ndarray, centre: np.ndarray, width: float, angle: float,
               fast: bool = False) -> np.ndarray:
    """Fit, then refit upright when the face turned out to be rolled (the shape predictor was
    trained on mostly upright faces; its points drift on tilted ones)."""
    lm = _fit_landmarks(rgb, centre, width, angle, fast)
    roll = landmark_roll(lm)
    if abs(roll - angle) > ROLL_REFIT:
        lm = _fit_landmarks(rgb, centre, width, roll, fast)
    return lm


def stretch_contrast(rgb: np.ndarray, low: float = 1, high: float = 99) -> np.ndarray:
    """The photo's levels stretched so that its `low`..`high` percentiles span 0..255 (the same
    for all channels, so colours keep their balance); the photo itself when already full."""
    lo, hi = np.percentile(rgb[::4, ::4], (low, high))
    if hi - lo >= 200:
        return rgb
    lut = np.clip((np.arange(256, dtype=np.float32) - lo) * 255 / max(hi - lo, 1), 0, 255)
    return cv2.LUT(rgb, np.round(lut).astype(np.uint8))


def _cnn_pass(work: np.ndarray, to_work: np.ndarray) -> list[tuple]:
    """The second detector: dlib's CNN on the (contrast-stretched) work copy shrunk to CNN_SIDE,
    its boxes made HOG-like (CNN_TO_HOG_*). About 10x slower than HOG, and far less fooled by a
    partly covered face; with the stretch, by low light too."""
    s = min(1.0, CNN_SIDE / max(work.shape[:2]))
    small = work if s == 1 else cv2.resize(
        work, (max(1, round(work.shape[1] * s)), max(1, round(work.shape[0] * s))),
        interpolation=cv2.INTER_AREA)
    detector_calls["cnn"] += 1
    found = []
    from_work = cv2.invertAffineTransform(to_work)
    with stage("detect_second"):
        dets = _cnn_detector()(np.ascontiguousarray(small), 0)
    for d in dets:
        r = d.rect
        width = (r.right() - r.left() + 1) / s * CNN_TO_HOG_WIDTH
        c = (np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2]) + 0.5) / s - 0.5
        c = c + np.array(CNN_TO_HOG_SHIFT) * width
        found.append((apply_matrix(from_work, c)[0], width / to_work[0, 0], 0.0,
                      float(d.confidence), "cnn"))
    return found


def detect_faces(rgb: np.ndarray, second: bool = True) -> list[Face]:
    """Every frontal face in an RGB uint8 photo, largest FFHQ square first.

    Detection runs on a copy of at most DETECT_SIDE px with a margin, upsampled when small so
    that faces down to about 40 px are found. When nothing is found it tries again: upsampled
    once more, then turned by +-30 degrees (HOG finds faces rolled up to about 20 degrees), then
    turned on its side and upside down; and last (with `second`) dlib's CNN detector on a
    contrast-stretched copy, which finds what HOG misses in low light, low contrast or behind a
    hand (`_cnn_pass`; landmarks of what it finds are fitted on the stretched copy too).
    Landmarks are fitted at the photo's own resolution, on an upright crop of each face.
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
    found: list[tuple] = []  # centre, width, angle, score, detector
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
        detector_calls["hog"] += 1
        with stage("detect"):
            rects, scores, _ = detector.run(np.ascontiguousarray(img), up, 0.0)
        for r, score in zip(rects, scores, strict=True):
            c = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
            c_photo = apply_matrix(from_work, apply_matrix(back, c))[0]
            width = (r.right() - r.left() + 1) / to_work[0, 0]
            found.append((c_photo, width, float(angle), float(score), "hog"))
        if found:
            break
    fit_on = rgb
    if not found and second:
        fit_on = stretch_contrast(rgb)  # low light is what HOG misses most; it costs the CNN too
        found = _cnn_pass(fit_on if fit_on is rgb else _work_copy(fit_on)[0], to_work)
    faces = []
    for c, width, angle, score, by in found:
        with stage("landmarks"):
            lm = _landmarks(fit_on, c, width, angle)
        half = width / 2
        box = (round(c[0] - half), round(c[1] - half), round(c[0] + half), round(c[1] + half))
        faces.append(Face(box, score, lm, Alignment(ffhq_quad(lm)), detector=by))
    faces.sort(key=lambda f: -f.side)
    return faces


def follow_face(rgb: np.ndarray, previous: Face, shift: np.ndarray | None = None) -> Face:
    """The face of `previous` (found in the frame before) in the next frame of a video, without a
    detector: its 68 landmarks fitted where it was (moved by `shift`, the motion expected since),
    then once more where they say it went when the box was off by more than a tenth. The box
    keeps its place and size relative to the landmarks (their centre and spread), so it stays
    the box the landmark model was fitted on."""
    x0, y0, x1, y1 = previous.box
    width = float(x1 - x0)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    offset = (centre - previous.landmarks.mean(axis=0)) / landmark_spread(previous.landmarks)
    if shift is not None:
        centre = centre + shift
    per_spread = width / landmark_spread(previous.landmarks)
    lm = previous.landmarks
    for _ in range(2):
        lm = _landmarks(rgb, centre, width, landmark_roll(lm), fast=True)
        s = landmark_spread(lm)
        new_centre, new_width = lm.mean(axis=0) + offset * s, per_spread * s
        settled = (np.hypot(*(new_centre - centre)) <= 0.1 * width
                   and abs(new_width / width - 1) <= 0.1)
        centre, width = new_centre, new_width
        if settled:
            break
    half = width / 2
    box = (round(centre[0] - half), round(centre[1] - half), round(centre[0] + half),
           round(centre[1] + half))
    return Face(box, previous.score, lm, Alignment(ffhq_quad(lm)), detector="track")


def landmark_spread(landmarks: np.ndarray) -> float:
    """The size of a landmark set (root mean square distance from its centre), in pixels."""
    return float(np.sqrt(((landmarks - landmarks.mean(axis=0)) ** 2).sum(axis=1).mean()))
