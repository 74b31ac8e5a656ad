"""Where the face is: a skin region to measure wrinkles in, and FFHQ-like face crops.

`face_region(rgb)` returns the face as a bool mask, by the best method at hand:

1. "bisenet": the face parser (skin + nose, the FFHQ-Wrinkle face set), when a `FaceParser` is
   given or the published weights are at res/cp/79999_iter.pth.
2. "haar": OpenCV's Haar cascades (frontal face, eyes, smile), where the installed OpenCV ships
   them (OpenCV 4.x: cv2.CascadeClassifier and cv2.data.haarcascades). The face box gives an
   FFHQ-like frame; the region is an ellipse in that frame (forehead included, down to the
   nasolabial folds and chin) minus the eye openings and the lips where the cascades find them.
3. "template": no face found, but the photo looks FFHQ-aligned (square, 256..1024 px): the same
   ellipse in the image's own frame (FFHQ alignment puts every face in the same place).
4. "none": the whole image, with a note saying why.

OpenCV 5 ships no Haar cascades (the classic cascade classifier left the main modules), which is
why requirements.txt pins OpenCV 4.x; under OpenCV 5 only 1, 3 and 4 are available and the notes
say so.

The frame geometry was measured on the 772 FFHQ faces in ../shared (a Haar face box is 0.676 of
the FFHQ frame wide, its centre at 0.549 of the height; the eyes sit at 0.47), and the ellipse
was tuned on the 165 real wrinkle masks (bench/bench_face_region.py).

`crop_face(rgb)` finds the largest face and cuts a square crop framed like FFHQ (the crop is the
FFHQ frame scaled by `margin`), with a transform that maps a prediction on the crop back onto
the photo (`FaceTransform.paste_back`). No face -> `found=False`: the caller decides whether to
use the whole image or skip it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from utils.images import resize_image
from utils.masks import resize_mask

if TYPE_CHECKING:
    from bisenet.parser import FaceParser

# FFHQ frame geometry, in units of the frame side (origin top left).
HAAR_BOX_WIDTH = 0.676      # a frontal-face Haar box is this share of the frame's width
HAAR_BOX_CENTER_Y = 0.549   # and its centre sits this far down the frame
EYE_Y = 0.472               # the eyes' height in the frame
EYE_DX = 0.124              # each eye's horizontal distance from the centre line
# The skin region: an ellipse in the frame (centre x, y and radii x, y), tuned on the 165 real
# wrinkle masks to keep at least 97 % of the wrinkle pixels (pooled) while covering little.
# The fixed template fits FFHQ's alignment exactly; a frame from a Haar box jitters, so its
# ellipse is a little taller.
TEMPLATE_ELLIPSE = (0.5, 0.56, 0.285, 0.395)
HAAR_ELLIPSE = (0.5, 0.57, 0.29, 0.425)
# The eye openings and lips cut out of it (half-axes as shares of the Haar eye / smile box width
# and height). Annotators draw lines right at the lids, so the eye cut is kept small.
EYE_CUT = (0.20, 0.10)
MOUTH_CUT = (0.36, 0.26)

FFHQ_SIZES = (256, 1024)    # square images in this range are taken as FFHQ-aligned
DETECT_MAX_SIDE = 640       # Haar detection runs on a copy no larger than this


@dataclass
class FaceRegion:
    """The face as a bool mask (H, W), how it was found, and notes for the user."""

    mask: np.ndarray
    source: str  # bisenet | haar | template | none
    notes: list[str] = field(default_factory=list)
    frame: tuple[float, float, float] | None = None  # FFHQ-like frame (x0, y0, side) in pixels


@dataclass
class FaceTransform:
    """A square crop of a photo: [x0, x0 + side) x [y0, y0 + side) resized to size x size."""

    x0: int
    y0: int
    side: int
    size: int

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel."""
        return self.size / self.side

    @property
    def matrix(self) -> np.ndarray:
        """The 2x3 affine matrix from photo coordinates to crop coordinates."""
        s = self.scale
        return np.array([[s, 0.0, -self.x0 * s], [0.0, s, -self.y0 * s]])

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) photo points (x, y) into the crop."""
        return (np.asarray(points, dtype=np.float64) - [self.x0, self.y0]) * self.scale

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) crop points (x, y) back into the photo."""
        return np.asarray(points, dtype=np.float64) / self.scale + [self.x0, self.y0]

    def paste_back(self, pred: np.ndarray, original_shape: tuple[int, ...],
                   fill: float = 0) -> np.ndarray:
        """A prediction on the crop (size x size) placed on the photo; `fill` outside the crop.

        Bool masks are rescaled by the project's mask rule (shrinking keeps thin lines), float
        maps by area averaging or linear interpolation, integer label maps by nearest neighbour.
        """
        if pred.shape[:2] != (self.size, self.size):
            raise ValueError(f"prediction is {pred.shape[1]}x{pred.shape[0]}, "
                             f"the crop is {self.size}x{self.size}")
        h, w = original_shape[:2]
        if pred.dtype == bool:
            scaled = resize_mask(pred, (self.side, self.side))
        elif np.issubdtype(pred.dtype, np.floating):
            interp = cv2.INTER_AREA if self.side < self.size else cv2.INTER_LINEAR
            scaled = cv2.resize(pred, (self.side, self.side), interpolation=interp)
        else:
            scaled = cv2.resize(pred, (self.side, self.side), interpolation=cv2.INTER_NEAREST)
        out = np.full((h, w, *pred.shape[2:]), fill, dtype=pred.dtype)
        x0, y0 = max(self.x0, 0), max(self.y0, 0)
        x1, y1 = min(self.x0 + self.side, w), min(self.y0 + self.side, h)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = scaled[y0 - self.y0:y1 - self.y0, x0 - self.x0:x1 - self.x0]
        return out


@dataclass
class FaceCrop:
    """A square FFHQ-like crop of the largest face, or found=False with the reason in notes."""

    found: bool
    image: np.ndarray | None = None
    transform: FaceTransform | None = None
    source: str = "none"
    notes: list[str] = field(default_factory=list)


@dataclass
class _Face:
    """One detected face: its FFHQ-like frame and, where found, eye and mouth boxes."""

    frame: tuple[float, float, float]
    box: tuple[int, int, int, int]
    eyes: list[tuple[float, float, float, float]] = field(default_factory=list)
    mouth: tuple[float, float, float, float] | None = None


# ---------------------------------------------------------------- detectors


@functools.cache
def _cascade(name: str) -> Any:
    """An OpenCV Haar cascade by file name, or None where this OpenCV has none."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not hasattr(cv2, "CascadeClassifier") or not folder:
        return None
    path = Path(folder) / name
    if not path.is_file():
        return None
    cascade = cv2.CascadeClassifier(str(path))
    return None if cascade.empty() else cascade


def haar_available() -> bool:
    """True when the installed OpenCV has the classifier and its bundled frontal-face cascade."""
    return _cascade("haarcascade_frontalface_default.xml") is not None


NO_HAAR_NOTE = (f"OpenCV {cv2.__version__} ships no Haar cascades (OpenCV 5 dropped them), so no "
                "face detector is available without the face-parsing weights")


def _largest(boxes: Any) -> tuple[int, int, int, int] | None:
    if boxes is None or len(boxes) == 0:
        return None
    x, y, w, h = max((tuple(int(v) for v in b) for b in boxes), key=lambda b: b[2] * b[3])
    return x, y, w, h


def _haar_faces(rgb: np.ndarray) -> list[_Face]:
    """Frontal faces by Haar cascades (largest first), with eyes and mouth inside each."""
    h, w = rgb.shape[:2]
    s = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = resize_image(rgb, (max(1, round(h * s)), max(1, round(w * s)))) if s < 1 else rgb
    grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    min_face = max(24, min(grey.shape) // 10)
    boxes: Any = ()
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        cascade = _cascade(name)
        if cascade is None:
            continue
        boxes = cascade.detectMultiScale(grey, scaleFactor=1.05, minNeighbors=5,
                                         minSize=(min_face, min_face))
        if len(boxes):
            break
    faces = []
    for bx, by, bw, bh in sorted((tuple(int(v) for v in b) for b in boxes),
                                 key=lambda b: -b[2] * b[3]):
        side = bw / HAAR_BOX_WIDTH
        frame = (bx + bw / 2 - side / 2, by + bh / 2 - HAAR_BOX_CENTER_Y * side, side)
        face = _Face(frame=frame, box=(bx, by, bx + bw, by + bh))
        face.eyes, face.mouth = _haar_parts(grey, (bx, by, bw, bh))
        faces.append(_rescale_face(face, 1 / s))
    return faces


def _haar_parts(grey: np.ndarray, box: tuple[int, int, int, int]
                ) -> tuple[list[tuple[float, float, float, float]],
                           tuple[float, float, float, float] | None]:
    """Eye boxes in the upper part of a face box and the lips box in its lower part."""
    bx, by, bw, bh = box
    eyes: list[tuple[float, float, float, float]] = []
    eye_cascade = _cascade("haarcascade_eye.xml")
    if eye_cascade is not None:
        upper = grey[by:by + int(bh * 0.6), bx:bx + bw]
        found = eye_cascade.detectMultiScale(upper, scaleFactor=1.1, minNeighbors=5,
                                             minSize=(max(6, bw // 10),) * 2,
                                             maxSize=(bw // 3,) * 2)
        # At most one eye per half of the face, the largest on each side.
        for half in (0, 1):
            side = [b for b in found if (b[0] + b[2] / 2 >= bw / 2) == bool(half)]
            best = _largest(side)
            if best is not None:
                ex, ey, ew, eh = best
                eyes.append((bx + ex, by + ey, ew, eh))
    mouth = None
    smile_cascade = _cascade("haarcascade_smile.xml")
    if smile_cascade is not None:
        top = by + int(bh * 0.6)
        lower = grey[top:by + bh, bx:bx + bw]
        found = smile_cascade.detectMultiScale(lower, scaleFactor=1.1, minNeighbors=20,
                                               minSize=(max(8, bw // 5), max(4, bw // 10)),
                                               maxSize=(int(bw * 0.7), int(bh * 0.4)))
        best = _largest(found)
        if best is not None:
            mx, my, mw, mh = best
            if abs(mx + mw / 2 - bw / 2) < bw * 0.15:  # centred under the nose, else a false hit
                mouth = (bx + mx, top + my, mw, mh)
    return [tuple(map(float, e)) for e in eyes], (  # type: ignore[return-value]
        tuple(map(float, mouth)) if mouth else None)


def _rescale_face(face: _Face, k: float) -> _Face:
    if k == 1:
        return face
    x, y, s = face.frame
    return _Face(frame=(x * k, y * k, s * k), box=tuple(round(v * k) for v in face.box),  # type: ignore[arg-type]
                 eyes=[tuple(v * k for v in e) for e in face.eyes],  # type: ignore[misc]
                 mouth=tuple(v * k for v in face.mouth) if face.mouth else None)  # type: ignore[arg-type]


def _parser_faces(labels: np.ndarray) -> list[_Face]:
    """The face in a BiSeNet label map, framed like FFHQ from its eyes and mouth.

    FFHQ's own alignment: eye centres e_l, e_r and mouth centre m; the frame is centred at
    mean(e) + 0.1 (m - mean(e)) with side 2 * max(2 |e_r - e_l|, 1.8 |m - mean(e)|).
    """
    from bisenet import labels as L

    def centre(ids: tuple[int, ...]) -> np.ndarray | None:
        ys, xs = np.nonzero(np.isin(labels, ids))
        return None if len(xs) < 4 else np.array([xs.mean(), ys.mean()])

    face = np.isin(labels, (L.SKIN, L.NOSE, L.L_BROW, L.R_BROW, L.L_EYE, L.R_EYE,
                            L.MOUTH, L.U_LIP, L.L_LIP))
    if face.sum() < 64:
        return []
    ys, xs = np.nonzero(face)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    left, right = centre((L.L_EYE,)), centre((L.R_EYE,))
    mouth = centre((L.MOUTH, L.U_LIP, L.L_LIP))
    if left is not None and right is not None and mouth is not None:
        eye_avg = (left + right) / 2
        eye_to_mouth = mouth - eye_avg
        side = 2 * max(2 * np.hypot(*(right - left)), 1.8 * np.hypot(*eye_to_mouth))
        c = eye_avg + 0.1 * eye_to_mouth
        frame = (float(c[0] - side / 2), float(c[1] - side / 2), float(side))
    else:  # eyes or mouth hidden: the face is about half the frame wide, eyes at 0.47
        fw = box[2] - box[0]
        side = fw / 0.5
        frame = ((box[0] + box[2]) / 2 - side / 2, ys.mean() - 0.55 * side, side)
    return [_Face(frame=frame, box=box)]


@functools.lru_cache(maxsize=1)
def _default_parser() -> FaceParser | None:
    """The face parser with the default weights, loaded once; None when they are absent."""
    from bisenet.parser import DEFAULT_WEIGHTS, FaceParser

    if not DEFAULT_WEIGHTS.is_file():
        return None
    return FaceParser(DEFAULT_WEIGHTS)


def _resolve_parser(parser: FaceParser | None, use_default: bool) -> FaceParser | None:
    if parser is not None or not use_default:
        return parser
    return _default_parser()


# ---------------------------------------------------------------- regions


def is_ffhq_aligned(shape: tuple[int, ...]) -> bool:
    """Square and 256..1024 px: the shape of an FFHQ-aligned face image."""
    h, w = shape[:2]
    return abs(h - w) <= 0.01 * max(h, w) and FFHQ_SIZES[0] <= min(h, w) <= FFHQ_SIZES[1] * 1.01


def ellipse_mask(shape: tuple[int, ...], frame: tuple[float, float, float],
                 ellipse: tuple[float, float, float, float] = TEMPLATE_ELLIPSE) -> np.ndarray:
    """The region ellipse (frame units) drawn in a frame (x0, y0, side) of an image."""
    h, w = shape[:2]
    x0, y0, side = frame
    cx, cy, rx, ry = ellipse
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    return (((xx - x0 - cx * side) / (rx * side)) ** 2
            + ((yy - y0 - cy * side) / (ry * side)) ** 2) <= 1.0


def template_region(shape: tuple[int, ...]) -> np.ndarray:
    """The fixed FFHQ skin ellipse in an FFHQ-aligned image's own frame."""
    h, w = shape[:2]
    return ellipse_mask(shape, (0.0, 0.0, float(min(h, w))))


def _cut_parts(mask: np.ndarray, face: _Face) -> list[str]:
    """Remove eye openings and lips from a region; say what was removed."""
    done = []
    for ex, ey, ew, eh in face.eyes:
        axes = (max(1, round(ew * EYE_CUT[0])), max(1, round(eh * EYE_CUT[1])))
        _fill_ellipse(mask, (ex + ew / 2, ey + eh / 2), axes)
    if face.eyes:
        done.append(f"{len(face.eyes)} eye(s)")
    if face.mouth is not None:
        mx, my, mw, mh = face.mouth
        axes = (max(1, round(mw * MOUTH_CUT[0])), max(1, round(mh * MOUTH_CUT[1])))
        _fill_ellipse(mask, (mx + mw / 2, my + mh / 2), axes)
        done.append("the mouth")
    return done


def _fill_ellipse(mask: np.ndarray, centre: tuple[float, float], axes: tuple[int, int]) -> None:
    cut = np.zeros(mask.shape, dtype=np.uint8)
    cv2.ellipse(cut, (round(centre[0]), round(centre[1])), axes, 0, 0, 360, 1, -1)
    mask[cut > 0] = False


def face_region(rgb: np.ndarray, parser: FaceParser | None = None,
                use_default_parser: bool = True, allow_template: bool = True) -> FaceRegion:
    """The face (skin) region of an RGB uint8 photo, by the best method available (see module)."""
    shape = rgb.shape[:2]
    notes: list[str] = []
    parser = _resolve_parser(parser, use_default_parser)
    if parser is not None:
        from bisenet.labels import FACE_LABELS

        labels = parser(rgb)
        mask = np.isin(labels, FACE_LABELS)
        if mask.any():
            faces = _parser_faces(labels)
            return FaceRegion(mask, "bisenet", [f"face region from {parser.description}"],
                              faces[0].frame if faces else None)
        notes.append("the face parser found no skin")
    if haar_available():
        faces = _haar_faces(rgb)
        if faces:
            face = faces[0]
            mask = ellipse_mask(shape, face.frame, HAAR_ELLIPSE)
            removed = _cut_parts(mask, face)
            extra = f", minus {' and '.join(removed)}" if removed else ""
            more = f" ({len(faces)} faces found, the largest used)" if len(faces) > 1 else ""
            notes.append(f"face region: an ellipse from the Haar face box{extra}{more}")
            return FaceRegion(mask, "haar", notes, face.frame)
        notes.append("the Haar cascades found no face")
    else:
        notes.append(NO_HAAR_NOTE)
    if allow_template and is_ffhq_aligned(shape):
        notes.append("used the fixed FFHQ template ellipse (assumes an FFHQ-aligned face)")
        return FaceRegion(template_region(shape), "template", notes,
                          (0.0, 0.0, float(min(shape))))
    notes.append("no face region: the whole image is used")
    return FaceRegion(np.ones(shape, dtype=bool), "none", notes)


# ---------------------------------------------------------------- crops


def crop_frame(rgb: np.ndarray, frame: tuple[float, float, float], margin: float = 1.0,
               size: int | None = None) -> FaceCrop:
    """Cut the square `frame` (x0, y0, side), scaled by `margin` about its centre, out of a photo.

    Parts outside the photo are filled by reflection (as FFHQ's alignment pads). The crop is
    resized to `size` (default: its own side in photo pixels).
    """
    x0, y0, side = frame
    side_px = max(2, round(side * margin))
    cx, cy = x0 + side / 2, y0 + side / 2
    ix0, iy0 = round(cx - side_px / 2), round(cy - side_px / 2)
    h, w = rgb.shape[:2]
    pad = max(0, -ix0, -iy0, ix0 + side_px - w, iy0 + side_px - h)
    src = rgb
    if pad:
        mode = cv2.BORDER_REFLECT_101 if pad < min(h, w) else cv2.BORDER_REPLICATE
        src = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, mode)
    crop = src[iy0 + pad:iy0 + pad + side_px, ix0 + pad:ix0 + pad + side_px]
    out_size = size or side_px
    image = resize_image(np.ascontiguousarray(crop), (out_size, out_size))
    notes = [] if not pad else ["the crop reaches past the photo's edge: filled by reflection"]
    return FaceCrop(True, image, FaceTransform(ix0, iy0, side_px, out_size), notes=notes)


def crop_face(rgb: np.ndarray, margin: float = 1.0, size: int | None = None,
              parser: FaceParser | None = None, use_default_parser: bool = True) -> FaceCrop:
    """A square crop of the largest face framed like FFHQ (margin 1.0), or found=False.

    In an FFHQ frame the face (cheek to cheek) is about half the crop wide, a Haar face box about
    two thirds, and the eyes sit at 47 % of the height. `margin` > 1 widens the crop.
    """
    if margin <= 0:
        raise ValueError("margin must be positive")
    notes: list[str] = []
    faces: list[_Face] = []
    source = "none"
    parser = _resolve_parser(parser, use_default_parser)
    if parser is not None:
        faces = _parser_faces(parser(rgb))
        source = "bisenet"
        if not faces:
            notes.append("the face parser found no face")
    if not faces:
        if haar_available():
            faces = _haar_faces(rgb)
            source = "haar"
            if not faces:
                notes.append("the Haar cascades found no face")
        else:
            notes.append(NO_HAAR_NOTE)
    if not faces:
        return FaceCrop(False, source="none", notes=[*notes, "no face found"])
    crop = crop_frame(rgb, faces[0].frame, margin, size)
    crop.source = source
    if len(faces) > 1:
        notes.append(f"{len(faces)} faces found, the largest cropped")
    crop.notes = notes + crop.notes
    return crop


def frame_error(found: tuple[float, float, float], truth: tuple[float, float, float]) -> float:
    """How far a found frame is from the true one: largest corner offset over the true side."""
    fx, fy, fs = found
    tx, ty, ts = truth
    return max(abs(fx - tx), abs(fy - ty), abs(fx + fs - tx - ts), abs(fy + fs - ty - ts)) / ts
