"""Overlays and plots: truth green, prediction red, overlap yellow; precision-recall curves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from utils.io import write_with

GREEN = np.array([0, 220, 0], dtype=np.float32)
RED = np.array([235, 30, 30], dtype=np.float32)
YELLOW = np.array([255, 230, 0], dtype=np.float32)


def overlay(rgb: np.ndarray, pred: np.ndarray | None = None, truth: np.ndarray | None = None,
            alpha: float = 0.75) -> np.ndarray:
    """Blend masks onto an RGB uint8 image: truth only green, prediction only red, both yellow."""
    out = rgb.astype(np.float32).copy()
    pred = np.zeros(rgb.shape[:2], bool) if pred is None else pred.astype(bool)
    truth = np.zeros(rgb.shape[:2], bool) if truth is None else truth.astype(bool)
    for region, colour in ((truth & ~pred, GREEN), (pred & ~truth, RED), (pred & truth, YELLOW)):
        out[region] = (1 - alpha) * out[region] + alpha * colour
    return out.round().astype(np.uint8)


# A face whose FFHQ square spans more than this many model pixels per model pixel shows its
# wrinkles as traced lines, not the pasted mask (a 256 px mask on a 760 px face draws lines
# 6-9 px wide and merges the lines under the eyes into patches).
LINES_ABOVE = 2.0


def drawn_as_lines(face: Any) -> bool:
    """True when wrinkle_view draws a face's traced lines (a face more than LINES_ABOVE times
    the model's frame, with lines), False when it pastes the face's mask back."""
    return bool(face.lines) and face.alignment is not None and \
        face.alignment.side > LINES_ABOVE * face.frame


def wrinkle_view(rgb: np.ndarray, mask: np.ndarray, faces: list[Any]) -> np.ndarray:
    """The photo with its wrinkles in red: the pasted mask on faces near the model's size, the
    traced centre lines (thin, anti-aliased, at the photo's own resolution) on faces more than
    LINES_ABOVE times larger, whose pasted mask would draw blobs."""
    large = [f for f in faces if drawn_as_lines(f)]
    if not large:
        return overlay(rgb, mask)
    keep = np.asarray(mask, dtype=bool).copy()
    for f in large:  # the mask stays where the traced faces are not
        (x0, y0, x1, y1), _, inside = f.alignment.paste_back(
            np.ones((f.frame, f.frame), bool), keep.shape, "mask")
        keep[y0:y1, x0:x1] &= ~inside
    out = overlay(rgb, keep)
    colour = tuple(int(c) for c in RED)
    for f in large:
        thick = max(1, round(f.alignment.side / 500))
        lines = [np.round(f.alignment.to_photo(ln.points, f.frame) * 16).astype(np.int32)
                 for ln in f.lines]
        cv2.polylines(out, lines, False, colour, thick, cv2.LINE_AA, 4)
    return out


def heatmap(rgb: np.ndarray, probs: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A probability map in a perceptual colour map, blended onto the image."""
    colour = cv2.applyColorMap((np.clip(probs, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB).astype(np.float32)
    weight = (alpha * np.clip(probs, 0, 1) ** 0.5)[:, :, None]
    return ((1 - weight) * rgb.astype(np.float32) + weight * colour).round().astype(np.uint8)


def write_png(path: str | Path, rgb_or_grey: np.ndarray) -> None:
    """Write an RGB (or grey) uint8 array as PNG, atomically."""
    arr = rgb_or_grey
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)

    def writer(tmp: Path) -> None:
        ok, buf = cv2.imencode(".png", arr)
        if not ok:
            raise OSError(f"cannot encode {path}")
        tmp.write_bytes(buf.tobytes())

    write_with(path, writer)


def plot_pr_curve(path: str | Path, precision: list[float], recall: list[float],
                  thresholds: list[float], operating: tuple[float, float, float] | None = None,
                  title: str = "") -> None:
    """Save a precision-recall curve PNG, marking the operating point (recall, precision, thr)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot(recall, precision, color="tab:blue", lw=2, label="model")
    if operating is not None:
        r, p, t = operating
        ax.scatter([r], [p], color="tab:red", zorder=3, label=f"threshold {t:g}")
    for f1 in (0.2, 0.4, 0.6, 0.8):  # iso-F1 guides
        r = np.linspace(f1 / (2 - f1) + 1e-3, 1, 100)
        ax.plot(r, f1 * r / (2 * r - f1), color="grey", lw=0.6, alpha=0.5)
        ax.annotate(f"F1 {f1}", (0.98, f1 / (2 - f1 / 0.98) + 0.01), fontsize=7, color="grey",
                    ha="right")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="recall", ylabel="precision", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


REGION_COLOURS = [(80, 200, 255), (255, 170, 0), (120, 255, 120), (120, 255, 120),
                  (255, 110, 200), (255, 110, 200), (255, 255, 90), (255, 255, 90),
                  (190, 140, 255), (0, 220, 220)]


def _marks(out: np.ndarray, face: Any, to_image: Callable[[np.ndarray], np.ndarray],
           thick: int, regions: bool, landmarks: bool) -> None:
    """Draw one face's region outlines and landmarks (aligned-frame points sent by to_image)."""
    from utils.faces.regions import outlines

    if regions and face.regions:
        for polys, colour in zip(outlines(face.regions).values(), REGION_COLOURS, strict=False):
            pts = [np.round(to_image(p) * 16).astype(np.int32) for p in polys]
            cv2.polylines(out, pts, True, colour, thick, cv2.LINE_AA, 4)
    if landmarks and face.aligned_landmarks is not None:
        for x, y in to_image(face.aligned_landmarks):
            cv2.circle(out, (round(x), round(y)), thick, (0, 255, 255), -1, cv2.LINE_AA)


def draw_faces(rgb: np.ndarray, faces: list[Any], regions: bool = False,
               landmarks: bool = False, labels: list[str] | None = None) -> np.ndarray:
    """Draw on a photo, for each analysed face (utils.inference.FaceResult), its number (when
    there are several: 0 the largest, as in wrinkles.csv and compare.py's --face; `labels`
    instead names every face, as a video's track ids do) and, on
    request, its region outlines and 68 landmarks."""
    out = rgb.copy()
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 700))
    if labels is None:
        labels = [str(f.index) for f in faces] if len(faces) > 1 else [""] * len(faces)
    for f, label in zip(faces, labels, strict=True):
        _marks(out, f, lambda p, f=f: f.alignment.to_photo(p, f.frame), thick, regions,
               landmarks)
        if f.box is not None and label:
            scale = max(0.5, f.alignment.side / 500)
            org = (max(0, f.box[0]), max(int(20 * scale), f.box[1] - 4))
            for colour, t in (((0, 0, 0), thick + 2), ((255, 255, 255), thick)):
                cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                            t, cv2.LINE_AA)
    return out


def caption(rgb: np.ndarray, text: str) -> np.ndarray:
    """`text` in small white letters outlined in black at the bottom left of an image, in place:
    a video's overlay names the model that made each frame."""
    h, w = rgb.shape[:2]
    scale = max(0.35, min(h, w) / 1000)
    thick = max(1, round(scale * 1.5))
    org = (round(6 * scale / 0.35), h - round(8 * scale / 0.35))
    for colour, t in (((0, 0, 0), thick + 2), ((255, 255, 255), thick)):
        cv2.putText(rgb, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, t, cv2.LINE_AA)
    return rgb


def draw_aligned(face: Any, regions: bool = False, landmarks: bool = False) -> np.ndarray:
    """One face in its aligned frame with its wrinkles (and outlines), as the model saw it."""
    out = overlay(face.aligned, face.mask)
    _marks(out, face, lambda p: np.asarray(p, dtype=np.float64), 1, regions, landmarks)
    return out


def with_colour_scale(image: np.ndarray) -> np.ndarray:
    """The heatmap with its colour scale (0 to 1, the inferno map) drawn as a bar on the right."""
    h, w = image.shape[:2]
    bar_w = max(12, w // 40)
    pad = max(4, bar_w // 2)
    text_w = max(28, bar_w * 2)
    panel = np.full((h, bar_w + 2 * pad + text_w, 3), 255, np.uint8)
    top, bottom = pad * 3, h - pad * 3
    ramp = np.linspace(1, 0, max(2, bottom - top))
    colours = cv2.applyColorMap((ramp * 255).astype(np.uint8)[:, None], cv2.COLORMAP_INFERNO)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
    panel[top:bottom, pad:pad + bar_w] = colours
    font = max(0.3, h / 1600)
    for value, y in ((1.0, top), (0.5, (top + bottom) // 2), (0.0, bottom)):
        cv2.putText(panel, f"{value:.1f}", (pad + bar_w + 3, y + 4), cv2.FONT_HERSHEY_SIMPLEX,
                    font, (0, 0, 0), 1, cv2.LINE_AA)
    return np.hstack([image, panel])
