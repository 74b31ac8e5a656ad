"""FFHQ alignment of a face and the way back: the oriented square from 68 landmarks, the warps.

FFHQ was made by resampling each photo's oriented square (eye centres and mouth corners of the 68
landmarks give its centre, axis and side) to 1024 px. `Alignment` holds that square and maps
between the photo and the aligned frame of any size; maps made in the aligned frame
(probabilities, masks, region outlines) go back through the inverse transform
(`Alignment.paste_back`). Alignment is decided by the landmarks alone, never by the image's
shape: an FFHQ image aligns to itself (tests/test_faces.py). `warp` is the one resampler for
images, maps and masks (masks keep their thin lines).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from utils.data.images import resize_image
from utils.data.masks import resize_mask

# A face whose FFHQ square lies within these of the image's own frame is taken as aligned already
# (exactly the frame: no resampling). Measured on the 772 FFHQ faces of ../shared at 256 px, the
# landmarks' square differs from the frame by a median 0.55 px (p99 4.2 px) at its centre, 0.3
# degrees (p99 2.5) of roll and 0 % (p99 6.3 %) of side: these tolerances keep 97.0 % of them
# exactly in their frame, while the same faces shifted by 6 px (0 of 40) or turned by 3 degrees
# (1 of 40) are still re-aligned (tests/test_faces.py).
FRAME_CENTRE, FRAME_ROLL_DEG, FRAME_SIDE = 0.015, 1.8, 0.07

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
    corners = apply_matrix(inv, np.array([[0, 0], [dw - 1, 0], [0, dh - 1], [dw - 1, dh - 1]]))
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + margin + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0 or (x0, y0, x1, y1) == (0, 0, w, h):
        return src, matrix
    moved = matrix.copy()
    moved[:, 2] += matrix[:, :2] @ [x0, y0]
    return src[y0:y1, x0:x1], moved


def _shifted(src: np.ndarray, tx: int, ty: int, dsize: tuple[int, int], border: int
             ) -> np.ndarray:
    """A whole-pixel shift: a slice (padded by `border` where it leaves the source), which is
    what Lanczos gives for it, at the cost of a copy (landmark crops of upright faces)."""
    w, h = dsize
    rows, cols = src.shape[:2]
    x0, y0 = -tx, -ty
    left, top = max(0, -x0), max(0, -y0)
    right, bottom = max(0, x0 + w - cols), max(0, y0 + h - rows)
    if left or top or right or bottom:
        src = cv2.copyMakeBorder(src, top, bottom, left, right, border, value=0)
        x0, y0 = x0 + left, y0 + top
    return src[y0:y0 + h, x0:x0 + w].copy()


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
    t = matrix[:, 2]
    if kind == "image" and np.array_equal(matrix[:, :2], np.eye(2)) and \
            np.allclose(t, np.round(t), atol=1e-9):
        tx, ty = np.round(t).astype(int)
        return _shifted(src, int(tx), int(ty), dsize, border)
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
        return apply_matrix(self.to_aligned_matrix(size), points)

    def to_photo(self, points: np.ndarray, size: int) -> np.ndarray:
        """Map (N, 2) aligned-frame points back into the photo."""
        return apply_matrix(self.to_photo_matrix(size), points)

    def is_frame_of(self, shape: tuple[int, ...]) -> bool:
        """True when the square is exactly the image's own frame (see `frame_alignment`)."""
        return bool(np.array_equal(self.quad, frame_alignment(shape).quad))

    def align(self, photo: np.ndarray, size: int) -> np.ndarray:
        """The aligned face, size x size. Parts of the square outside the photo are filled as
        FFHQ filled them: reflected, blurred, and faded towards the median colour with the
        distance from the photo's edge (so no mirrored second face shows). The image's own
        frame is the image itself, resized as the training data is (`resize_image`), so that a
        face already aligned is served exactly as evaluate.py scores it."""
        if self.is_frame_of(photo.shape):
            return resize_image(photo, (size, size)).copy()
        m = self.to_aligned_matrix(size)
        out = warp(photo, m, (size, size), "image", border=cv2.BORDER_REFLECT_101)
        h, w = photo.shape[:2]
        edge = size - 0.5
        corners = apply_matrix(self.to_photo_matrix(size),
                               [[-0.5, -0.5], [edge, -0.5], [-0.5, edge], [edge, edge]])
        if corners.min() >= 1 and (corners[:, 0] <= w - 2).all() and (corners[:, 1] <= h - 2).all():
            return out  # the whole square lies in the photo: nothing to fill
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
        box, (values,), inside = self.paste_back_all([(aligned, kind)], shape)
        return box, values, inside

    def paste_back_all(self, maps: list[tuple[np.ndarray, str]], shape: tuple[int, ...]
                       ) -> tuple[tuple[int, int, int, int], list[np.ndarray], np.ndarray]:
        """`paste_back` of several maps of one face at once: (box, values per map, inside).

        The square's outline is warped once; where the photo holds the face at the frame's size
        or larger (no shrinking, so maps and masks are resampled alike) the maps also go through
        one multi-channel warp: the same values as one warp per map, at a third of the cost."""
        size = maps[0][0].shape[0]
        if any(a.shape[:2] != (size, size) for a, _ in maps):
            raise ValueError(f"aligned maps are square and of one size, got "
                             f"{[a.shape[:2] for a, _ in maps]}")
        x0, y0, x1, y1 = self.bounds(shape)
        if x1 <= x0 or y1 <= y0:
            empty = np.zeros((0, 0), bool)
            return (x0, y0, x0, y0), [empty.astype(a.dtype) for a, _ in maps], empty
        m = self.to_photo_matrix(size)
        m[:, 2] -= (x0, y0)
        dsize = (x1 - x0, y1 - y0)
        if len(maps) > 1 and _scale_of(m) >= 0.999:
            warped = warp(np.dstack([a.astype(np.float32) for a, _ in maps]), m, dsize, "map")
            values = [warped[..., k] >= 0.5 if kind == "mask" else warped[..., k]
                      for k, (_, kind) in enumerate(maps)]
        else:
            values = [warp(a, m, dsize, kind) for a, kind in maps]
        return (x0, y0, x1, y1), values, warp(np.ones((size, size), bool), m, dsize, "mask")


def frame_alignment(shape: tuple[int, ...]) -> Alignment:
    """The whole image as the frame (no face found, or an image already aligned)."""
    h, w = shape[:2]
    return Alignment(np.array([[0, 0], [0, h], [w, h], [w, 0]], dtype=np.float64))


def snap_to_frame(alignment: Alignment, shape: tuple[int, ...]) -> Alignment:
    """The image's own frame when a face's square lies within the landmarks' measured noise of
    it (FRAME_*: a square image already aligned as FFHQ was); else the face's own square.
    Decided by the landmarks, never by the image's shape alone."""
    h, w = shape[:2]
    frame = frame_alignment(shape)
    side = frame.side
    if h != w:
        return alignment
    offset = np.hypot(*(alignment.quad.mean(axis=0) - frame.quad.mean(axis=0))) / side
    if offset <= FRAME_CENTRE and abs(alignment.angle) <= FRAME_ROLL_DEG and \
            abs(alignment.side / side - 1) <= FRAME_SIDE:
        return frame
    return alignment


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points (x, y) through a 2x3 affine matrix."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]
