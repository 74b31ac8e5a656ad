#!/usr/bin/env python
"""Faces found in photos as people take them, by detector: HOG alone, and HOG with the second
detector (dlib's CNN, called only where HOG finds nothing).

From each labelled face of ../shared/data/ffhq-wrinkle-256 (or the first --limit), photos are made
with a known transform (utils/faces/photos.py, fixed seeds: rolled up to +-25 degrees, a 4:3
canvas of blurred backdrop, an exposure change), in variants that detectors find hard:

    photo         the plain photo
    dark          low light: exposure cut to about a quarter and contrast to 30 %
    grey          a black-and-white photo (grey in all three channels)
    yaw35         the face turned 30-40 degrees away (a perspective warp of the face)
    hand_mouth    a hand-sized, skin-coloured patch over the mouth
    hand_eye      the same over one eye
    glasses       dark, thick spectacle rims around both eyes
    small         a face of 60-90 px (its FFHQ square) in a 640x480 photo

A face counts as found when the first face returned lies where the source face is (its square's
centre within a quarter of a side). Printed and saved (JSON): per variant, the share found by HOG
alone and by both, the second detector's calls, and seconds per photo of each.

    python bench/bench_faces.py --out runs/bench_faces.json
    python bench/bench_faces.py --limit 20 --variant dark --variant glasses
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
from tqdm import tqdm

from bench.common import DATA, run_cli, save
from utils.data.images import load_image
from utils.faces import detection
from utils.faces.photos import SyntheticPhoto, make_photo
from utils.runtime import machine_facts

DARK_CONTRAST, DARK_GAIN = 0.3, 0.25  # low light: a quarter of the exposure, 30 % contrast
VARIANTS = ("photo", "dark", "grey", "yaw35", "hand_mouth", "hand_eye", "glasses", "small")


def _skin(face: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The median colour of the cheeks (between the eye corners and the mouth corners)."""
    pts = np.vstack([lm[[1, 2, 3, 31, 39]], lm[[13, 14, 15, 35, 42]]]).astype(np.int32)
    m = np.zeros(face.shape[:2], np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(pts[:5]), 1)
    cv2.fillConvexPoly(m, cv2.convexHull(pts[5:]), 1)
    return np.median(face[m > 0], axis=0) if m.any() else face.reshape(-1, 3).mean(axis=0)


def _patch(face: np.ndarray, centre: np.ndarray, radius: float, colour: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """A hand-like blob: an ellipse of skin colour with soft shading, feathered at its edge."""
    h, w = face.shape[:2]
    mask = np.zeros((h, w), np.float32)
    axes = (round(radius * 1.2), round(radius * 0.8))
    cv2.ellipse(mask, tuple(np.round(centre).astype(int)), axes, float(rng.uniform(-20, 20)),
                0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, radius / 10))[..., None]
    shade = cv2.GaussianBlur(rng.normal(0, 12, (h, w)).astype(np.float32), (0, 0), radius / 4)
    hand = np.clip(colour[None, None] * 0.92 + shade[..., None], 0, 255)
    return np.round(face * (1 - mask) + hand * mask).astype(np.uint8)


def _glasses(face: np.ndarray, lm: np.ndarray) -> np.ndarray:
    out = face.copy()
    t = max(3, round(face.shape[0] / 50))
    for eye in (lm[36:42], lm[42:48]):
        c = eye.mean(axis=0)
        rx = 0.95 * (eye[:, 0].max() - eye[:, 0].min())
        cv2.ellipse(out, tuple(np.round(c).astype(int)), (round(rx), round(rx * 0.75)), 0, 0,
                    360, (20, 20, 22), t, cv2.LINE_AA)
    bridge = [lm[39] + (0, -2), lm[42] + (0, -2)]
    cv2.line(out, tuple(np.round(bridge[0]).astype(int)), tuple(np.round(bridge[1]).astype(int)),
             (20, 20, 22), t, cv2.LINE_AA)
    return out


def _yaw(face: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The face turned 30-40 degrees: one side foreshortened and nearer (a homography)."""
    s = face.shape[0]
    deg = float(rng.uniform(30, 40)) * (1 if rng.integers(2) else -1)
    c = np.cos(np.radians(abs(deg)))
    near, far = 1.0, 0.82
    src = np.float32([[0, 0], [s, 0], [s, s], [0, s]])
    x0, x1 = s * (1 - c) / 2, s * (1 + c) / 2
    dst = np.float32([[x0, s * (1 - near) / 2], [x1, s * (1 - far) / 2],
                      [x1, s * (1 + far) / 2], [x0, s * (1 + near) / 2]])
    if deg < 0:
        dst[:, 0] = s - dst[:, 0]
        dst = dst[[1, 0, 3, 2]]
    h = cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(face, h, (s, s), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REFLECT_101)
    return out, h


def make_variant(face: np.ndarray, lm: np.ndarray, variant: str, seed: int
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """(photo, where the face's centre is in it, its FFHQ square's side in px)."""
    rng = np.random.default_rng(seed)
    centre = np.array([face.shape[1] / 2 - 0.5, face.shape[0] / 2 - 0.5])
    src = face
    if variant == "yaw35":
        src, h = _yaw(face, rng)
        p = cv2.perspectiveTransform(centre.reshape(1, 1, 2).astype(np.float64), h)
        centre = p.reshape(2)
    elif variant == "hand_mouth":
        mouth = lm[48:68]
        src = _patch(face, mouth.mean(axis=0) - (0, 0.1 * np.ptp(mouth[:, 0])),
                     0.8 * np.ptp(mouth[:, 0]) + 4, _skin(face, lm), rng)
    elif variant == "hand_eye":
        eye = lm[36:42] if rng.integers(2) else lm[42:48]
        src = _patch(face, eye.mean(axis=0), 1.1 * np.ptp(eye[:, 0]), _skin(face, lm), rng)
    elif variant == "glasses":
        src = _glasses(face, lm)
    small = variant == "small"
    photo: SyntheticPhoto = make_photo(src, seed, "4:3",
                                       face_px=(60, 90) if small else (320, 520))
    rgb = photo.rgb
    where = photo.matrix[:, :2] @ centre + photo.matrix[:, 2]
    if small:  # the small face in an ordinary 640x480 photo
        canvas = cv2.resize(cv2.GaussianBlur(rgb, (0, 0), 6), (640, 480),
                            interpolation=cv2.INTER_LINEAR)
        y, x = int(rng.integers(0, 480 - rgb.shape[0])), int(rng.integers(0, 640 - rgb.shape[1]))
        canvas[y:y + rgb.shape[0], x:x + rgb.shape[1]] = rgb
        rgb, where = canvas, where + np.array([x, y])
    elif variant == "dark":
        f = rgb.astype(np.float32) / 255
        f = 0.5 + DARK_CONTRAST * (f - f.mean())
        rgb = np.round(255 * np.clip(DARK_GAIN * np.clip(f, 0, 1) ** 1.6, 0, 1)).astype(np.uint8)
    elif variant == "grey":
        rgb = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return rgb, where, photo.face_px


def _right(faces: list, where: np.ndarray, side: float) -> bool:
    if not faces:
        return False
    c = faces[0].alignment.quad.mean(axis=0)
    return bool(np.hypot(*(c - where)) < 0.25 * side)


def measure(data: Path, limit: int | None, variants: list[str], seed: int,
            progress: bool = True) -> dict:
    masks = sorted((data / "manual_wrinkle_masks").glob("*.png"))[:limit]
    if not masks:
        raise SystemExit(f"error: no manual masks under {data}")
    per = {v: {"photos": 0, "hog": 0, "both": 0, "cnn_calls": 0, "hog_s": [], "both_s": []}
           for v in variants}
    skipped = []
    for k, m in enumerate(tqdm(masks, desc="faces", disable=not progress, file=sys.stderr)):
        face = load_image(data / "images256x256" / f"{m.stem}.jpg")
        clean = detection.detect_faces(face, second=False)
        if not clean:  # landmarks are needed to place hands and glasses
            skipped.append(m.stem)
            continue
        lm = clean[0].landmarks
        for v in variants:
            rgb, where, side = make_variant(face, lm, v, seed + 1000 * k)
            d = per[v]
            d["photos"] += 1
            t0 = time.perf_counter()
            hog = detection.detect_faces(rgb, second=False)
            t_hog = time.perf_counter() - t0
            d["hog_s"].append(t_hog)
            ok = _right(hog, where, side)
            d["hog"] += ok
            if hog:
                d["both_s"].append(t_hog)  # the second detector would not have run
                d["both"] += ok
                continue
            calls = detection.detector_calls["cnn"]
            t0 = time.perf_counter()
            both = detection.detect_faces(rgb, second=True)
            d["both_s"].append(time.perf_counter() - t0)
            d["cnn_calls"] += detection.detector_calls["cnn"] - calls
            d["both"] += _right(both, where, side)
    out = {}
    for v, d in per.items():
        n = max(d["photos"], 1)
        out[v] = {"photos": d["photos"], "found_hog": d["hog"] / n, "found_both": d["both"] / n,
                  "second_detector_calls": d["cnn_calls"],
                  "seconds_per_photo_hog": statistics.mean(d["hog_s"]) if d["hog_s"] else 0.0,
                  "seconds_per_photo_both": statistics.mean(d["both_s"]) if d["both_s"] else 0.0}
    return {"faces": len(masks) - len(skipped), "skipped_no_clean_landmarks": skipped,
            "seed": seed, "second_detector": "dlib CNN (mmod_human_face_detector.dat) on a "
            f"copy of at most {detection.CNN_SIDE} px, only where HOG finds no face",
            "variants": out, "machine": machine_facts()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help=f"data folder (default {DATA})")
    p.add_argument("--limit", type=int, help="only the first N labelled faces")
    p.add_argument("--variant", action="append", choices=VARIANTS,
                   help="measure only these variants (repeatable; default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the photo transforms")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if not (args.data / "manual_wrinkle_masks").is_dir():
        print(f"error: {args.data}: no manual_wrinkle_masks folder", file=sys.stderr)
        return 1
    res = measure(args.data, args.limit, args.variant or list(VARIANTS), args.seed,
                  not args.no_progress)
    print(f"{res['faces']} faces; second detector: {res['second_detector']}")
    print(f"{'variant':12} {'HOG alone':>10} {'HOG + CNN':>10} {'CNN calls':>10} "
          f"{'s/photo HOG':>12} {'s/photo both':>13}")
    for v, d in res["variants"].items():
        print(f"{v:12} {100 * d['found_hog']:9.1f}% {100 * d['found_both']:9.1f}% "
              f"{d['second_detector_calls']:10d} {d['seconds_per_photo_hog']:12.3f} "
              f"{d['seconds_per_photo_both']:13.3f}")
    save(res, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
