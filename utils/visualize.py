"""Overlays and plots: truth green, prediction red, overlap yellow; precision-recall curves."""

from __future__ import annotations

from pathlib import Path

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
