"""The face region and the named wrinkle regions of an aligned face, and their statistics.

Everything here lives in the aligned (FFHQ) frame and is drawn from the 68 landmarks mapped into
that frame (utils/faces/), so a region follows the face whatever its pose in the photo.

The face region (where wrinkles are measured) is the BiSeNet face parser's skin + nose when its
weights are present, else a landmark polygon: the jaw line pushed a little outward and down, a
forehead reaching above the brows (their convex hull), the eyes and the lips cut out. Its constants were chosen on
the 165 real wrinkle masks of ../shared (bench/bench_face_region.py): it keeps 98.2 % of the
annotated wrinkle pixels (pooled) and covers 36.5 % of the aligned frame. Cutting the brows as
well cost half a point of kept wrinkles (annotated lines cross them), so they stay in.

The named regions (`REGION_NAMES`) are polygons on the same landmarks. "Left" and "right" are the
person's own (the dlib points 36-41 are the person's right eye, on the image's left). A region
claims its pixels in the order of REGION_NAMES, so no pixel counts twice; every region is cut to
the face region. Face pixels in no named region (nose, chin, jaw) count for the face as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# Face region constants, in units of the eye-to-mouth distance (see the module docstring).
FOREHEAD = 0.8   # the forehead reaches this far above the brows
JAW_DOWN = 0.10  # the lower jaw line is pushed this far outward (lines on the jowls and chin)
REGION_NAMES = ("between_brows", "forehead", "crows_feet_right", "crows_feet_left",
                "under_eye_right", "under_eye_left", "nasolabial_right", "nasolabial_left",
                "around_mouth", "cheeks")
REGION_LABELS = {
    "between_brows": "between the brows", "forehead": "forehead",
    "crows_feet_right": "crow's feet (right)", "crows_feet_left": "crow's feet (left)",
    "under_eye_right": "under the eye (right)", "under_eye_left": "under the eye (left)",
    "nasolabial_right": "nasolabial fold (right)", "nasolabial_left": "nasolabial fold (left)",
    "around_mouth": "around the mouth", "cheeks": "cheeks",
}
SUBPIXEL = 4  # polygons are filled with 4 bits of sub-pixel precision
# The paired regions compared side against side, and the face's upper and lower parts.
PAIRED = ("crows_feet", "under_eye", "nasolabial")
UPPER = ("forehead", "between_brows", "crows_feet_right", "crows_feet_left", "under_eye_right",
         "under_eye_left")
LOWER = ("nasolabial_right", "nasolabial_left", "around_mouth", "cheeks")


@dataclass
class Geometry:
    """Landmark-derived directions of one face: its scale `unit` (eye-to-mouth distance) and
    its up direction, so that every polygon scales and turns with the face."""

    lm: np.ndarray
    unit: float
    up: np.ndarray

    @classmethod
    def of(cls, landmarks: np.ndarray) -> Geometry:
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.shape != (68, 2):
            raise ValueError(f"expected 68 (x, y) landmarks, got shape {lm.shape}")
        eyes = (lm[36:42].mean(axis=0) + lm[42:48].mean(axis=0)) / 2
        mouth = (lm[48] + lm[54]) / 2
        unit = float(np.hypot(*(eyes - mouth))) or 1.0
        return cls(lm, unit, (eyes - mouth) / unit)

    @property
    def centre(self) -> np.ndarray:
        eyes = (self.lm[36:42].mean(axis=0) + self.lm[42:48].mean(axis=0)) / 2
        return (eyes + (self.lm[48] + self.lm[54]) / 2) / 2

    def outward(self, a: int, b: int) -> np.ndarray:
        """Unit vector from landmark b to landmark a."""
        d = self.lm[a] - self.lm[b]
        return d / (np.hypot(*d) or 1.0)


def _fill(shape: tuple[int, int], polygons: list[np.ndarray], value: int = 1,
          into: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros(shape, np.uint8) if into is None else into
    pts = [np.round(np.asarray(p) * (1 << SUBPIXEL)).astype(np.int32) for p in polygons]
    cv2.fillPoly(out, pts, value, cv2.LINE_8, SUBPIXEL)
    return out


def face_polygon(landmarks: np.ndarray) -> np.ndarray:
    """The outline of the landmark face region before the cuts: the convex hull of the jaw line
    (its lower part pushed outward) and the brows raised by FOREHEAD."""
    g = Geometry.of(landmarks)
    jaw = g.lm[0:17].copy()
    dirs = jaw - g.centre
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    down = np.clip(-(dirs @ g.up), 0, 1)  # 1 where the jaw point lies straight below the centre
    jaw += dirs * (JAW_DOWN * down * g.unit)[:, None]
    forehead = g.lm[17:27] + g.up * FOREHEAD * g.unit
    outline = np.vstack([jaw, forehead[::-1]]).astype(np.float32)
    return cv2.convexHull(outline).reshape(-1, 2).astype(np.float64)


def landmark_face_region(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The face region (bool, `shape`) from landmarks in that frame: the face polygon minus the
    eyes (their landmark outlines) and the lips (the outer lip line)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    mask = _fill(shape, [face_polygon(lm)])
    _fill(shape, [lm[36:42], lm[42:48], lm[48:60]], 0, into=mask)
    return mask.astype(bool)


def parser_face_region(labels: np.ndarray) -> np.ndarray:
    """The face region from a BiSeNet label map: skin and nose, the FFHQ-Wrinkle face set."""
    from bisenet.labels import FACE_LABELS

    return np.isin(labels, FACE_LABELS)


def region_polygons(landmarks: np.ndarray) -> dict[str, list[np.ndarray]]:
    """The named regions as polygons (each a list of (N, 2) arrays) in the landmarks' frame."""
    g = Geometry.of(landmarks)
    lm, u, up = g.lm, g.unit, g.up
    top = lm[17:27] + up * FOREHEAD * u
    polys: dict[str, list[np.ndarray]] = {
        "between_brows": [np.array([lm[21] + up * 0.45 * u, lm[22] + up * 0.45 * u, lm[22],
                                    lm[42], lm[28], lm[39], lm[21]])],
        "forehead": [np.vstack([lm[17:27], top[::-1]])],
    }
    for side, (outer, inner, lower, wing, corner, jaw) in {
            "right": (36, 39, [41, 40], 31, 48, [1, 2, 3, 4, 5]),
            "left": (45, 42, [46, 47], 35, 54, [15, 14, 13, 12, 11])}.items():
        lat = g.outward(outer, inner)
        o = lm[outer]
        polys[f"crows_feet_{side}"] = [np.array([
            o - lat * 0.05 * u + up * 0.35 * u, o + lat * 0.6 * u + up * 0.35 * u,
            o + lat * 0.6 * u - up * 0.45 * u, o - lat * 0.05 * u - up * 0.45 * u])]
        lid = np.array([lm[outer], *lm[lower], lm[inner]])
        polys[f"under_eye_{side}"] = [np.vstack([lid, (lid - up * 0.45 * u)[::-1]])]
        nose_lat = g.outward(wing, 33)
        w0 = lm[wing] + up * 0.1 * u
        c1 = lm[corner] - up * 0.3 * u
        polys[f"nasolabial_{side}"] = [np.array([
            w0 - nose_lat * 0.05 * u, w0 + nose_lat * 0.45 * u, c1 + lat * 0.4 * u,
            c1 - lat * 0.05 * u])]
        polys.setdefault("cheeks", []).append(np.array([
            lm[outer] - up * 0.45 * u, *lm[jaw], lm[corner], lm[wing], lm[lower[1]]]))
    mouth = lm[48:60]
    mc = mouth.mean(axis=0)
    d = mouth - mc
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    polys["around_mouth"] = [mouth + d * 0.35 * u]
    return {name: polys[name] for name in REGION_NAMES}


def region_masks(landmarks: np.ndarray, shape: tuple[int, int],
                 face: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Bool masks of the named regions, each pixel claimed by the first region in REGION_NAMES
    that contains it, cut to the face region `face` where given."""
    taken = np.zeros(shape, bool) if face is None else ~face
    out = {}
    for name, polys in region_polygons(landmarks).items():
        m = _fill(shape, polys).astype(bool) & ~taken
        taken |= m
        out[name] = m
    return out


def skeleton_length(mask: np.ndarray) -> int:
    """Pixel length of a mask's centre lines (morphological skeleton), an estimate of line length."""
    img = mask.astype(np.uint8)
    skel = np.zeros_like(img)
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    while img.any():
        # outside the image counts as background, or a mask touching the border never erodes
        eroded = cv2.erode(img, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        skel |= img & ~cv2.dilate(eroded, kernel) & 1
        img = eroded
    return int(skel.sum())


def _lines(mask: np.ndarray, min_px: int) -> int:
    n, _, st, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return int((st[1:, cv2.CC_STAT_AREA] >= min_px).sum()) if n > 1 else 0


def wrinkle_stats(mask: np.ndarray, face: np.ndarray | None,
                  regions: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Wrinkle share of the face, and per named region its area, wrinkle pixels, share, line
    count and line length; all in pixels of the frame the masks are in (the aligned frame)."""
    h, w = mask.shape
    face = np.ones_like(mask, dtype=bool) if face is None else face
    inside = mask & face
    min_px = max(3, round(6 * (h * w) / (512 * 512)))  # ignore specks (scaled with size)
    rows = []
    for name, region in (regions or {}).items():
        m = inside & region
        area = int(region.sum())
        rows.append({"region": name, "label": REGION_LABELS.get(name, name), "region_px": area,
                     "wrinkle_px": int(m.sum()), "share": float(m.sum() / area) if area else 0.0,
                     "lines": _lines(m, min_px), "length_px": skeleton_length(m)})
    face_px = int(face.sum())
    return {"frame_px": int(h), "face_px": face_px, "wrinkle_px": int(inside.sum()),
            "wrinkle_share": float(inside.sum() / face_px) if face_px else 0.0,
            "lines": _lines(inside, min_px), "length_px": skeleton_length(inside),
            "regions": rows, "asymmetry": asymmetry(rows)}


PAIR_LABELS = {"crows_feet": "crow's feet", "under_eye": "under the eyes",
               "nasolabial": "nasolabial folds", "upper_vs_lower": "upper vs lower face"}


def asymmetry_text(asym: dict[str, float | None]) -> str:
    """One line a person can read: each index signed, "-" where there is nothing to compare."""
    def said(k: str) -> str:
        v = asym.get(k)
        return f"{PAIR_LABELS[k]} {'-' if v is None else f'{round(v, 2) + 0.0:+.2f}'}"  # no -0.00

    return ("asymmetry of the wrinkle share, (a - b) / (a + b): right vs left "
            + ", ".join(said(k) for k in PAIRED) + "; " + said("upper_vs_lower"))


def _index(a: float, b: float) -> float | None:
    return (a - b) / (a + b) if a + b > 0 else None


def asymmetry(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Side against side and upper against lower face, as (a - b) / (a + b) of the wrinkle
    share: -1 (all on the second) .. 0 (even) .. +1 (all on the first); None where neither has
    a wrinkle pixel. `<pair>` is the person's right against left for crow's feet, under the eyes
    and the nasolabial folds; `upper_vs_lower` is the forehead, brows, crow's feet and under-eye
    regions against the nasolabial folds, the mouth and the cheeks."""
    by = {r["region"]: r for r in rows}

    def share(names: tuple[str, ...]) -> float:
        px = sum(by[n]["region_px"] for n in names if n in by)
        return sum(by[n]["wrinkle_px"] for n in names if n in by) / px if px else 0.0

    out: dict[str, float | None] = {}
    if not by:
        return out
    for pair in PAIRED:
        out[pair] = _index(share((f"{pair}_right",)), share((f"{pair}_left",)))
    out["upper_vs_lower"] = _index(share(UPPER), share(LOWER))
    return out


def outlines(masks: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The outer contours of region masks as (N, 2) float point arrays, to draw anywhere."""
    out = {}
    for name, m in masks.items():
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        out[name] = [c.reshape(-1, 2).astype(np.float64) for c in contours if len(c) >= 3]
    return out
