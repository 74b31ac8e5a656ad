"""The one metric collection, used by training validation and by evaluate.py.

Pooled (micro) metrics count true/false positives over every pixel of every image before dividing,
so a large face does not weigh the same as a small one and nothing is an average of batch averages.
Per-image (macro) F1 and Jaccard are means over images; an image with neither a true nor a predicted
wrinkle pixel has no defined F1 and is left out of the macro means (its count is reported).
AUROC and average precision use binned thresholds, so memory stays constant on large test sets.
`f1_tol1` is a pooled F1 that forgives a one-pixel offset (TolerantF1).
Under torch.distributed, torchmetrics sums the states over ranks before computing.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryPrecisionRecallCurve,
    BinaryRecall,
    BinaryStatScores,
)

from utils.distributed import gather_lists


class TolerantF1(Metric):
    """Pooled F1 where a pixel counts as matched when the other mask has a pixel within
    `tolerance` px (8-neighbourhood): annotators and models disagree by a pixel on thin lines.

    precision = predicted pixels near a true pixel / predicted pixels;
    recall = true pixels near a predicted pixel / true pixels. Counts are summed over images
    (and over ranks under torch.distributed) before dividing.
    """

    full_state_update = False

    def __init__(self, threshold: float = 0.5, tolerance: int = 1) -> None:
        super().__init__()
        self.threshold, self.tolerance = threshold, tolerance
        for name in ("pred_near", "pred_total", "true_near", "true_total"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64),
                           dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        """probs, target: (N, H, W)."""
        pred = (probs > self.threshold).float()[:, None]
        truth = target.float()[:, None]
        k = 2 * self.tolerance + 1
        near_truth = F.max_pool2d(truth, k, stride=1, padding=self.tolerance)
        near_pred = F.max_pool2d(pred, k, stride=1, padding=self.tolerance)
        self.pred_near += (pred * near_truth).sum().double()
        self.pred_total += pred.sum().double()
        self.true_near += (truth * near_pred).sum().double()
        self.true_total += truth.sum().double()

    def compute(self) -> torch.Tensor:
        p = self.pred_near / self.pred_total if self.pred_total > 0 else self.pred_total * 0
        r = self.true_near / self.true_total if self.true_total > 0 else self.true_total * 0
        return 2 * p * r / (p + r) if p + r > 0 else p * 0


class SegmentationMetrics:
    """Accumulate wrinkle-probability maps against true masks; compute micro and macro metrics."""

    def __init__(self, threshold: float = 0.5, bins: int = 200, curve: bool = False,
                 device: torch.device | str = "cpu") -> None:
        self.threshold = threshold
        pooled: dict[str, Any] = {
            "f1": BinaryF1Score(threshold=threshold),
            "jaccard": BinaryJaccardIndex(threshold=threshold),
            "precision": BinaryPrecision(threshold=threshold),
            "recall": BinaryRecall(threshold=threshold),
            "auroc": BinaryAUROC(thresholds=bins),
            "average_precision": BinaryAveragePrecision(thresholds=bins),
        }
        if curve:
            pooled["pr_curve"] = BinaryPrecisionRecallCurve(thresholds=bins)
        self.pooled = MetricCollection(pooled).to(device)
        self.per_image = BinaryStatScores(threshold=threshold, multidim_average="samplewise").to(device)
        self.tolerant = TolerantF1(threshold=threshold, tolerance=1).to(device)
        self.ids: list[str] = []

    @torch.no_grad()
    def update(self, probs: torch.Tensor, target: torch.Tensor, ids: list[str] | None = None) -> None:
        """probs: (N, H, W) or (N, 1, H, W) in [0, 1]; target: same shape, 0/1 or bool."""
        if probs.ndim == 4:
            probs, target = probs[:, 0], target[:, 0]
        self.tolerant.update(probs.float(), target)
        probs = probs.reshape(probs.shape[0], -1).float().clamp(0, 1)
        target = target.reshape(target.shape[0], -1).long()
        self.pooled.update(probs.flatten(), target.flatten())
        self.per_image.update(probs, target)
        self.ids.extend(ids if ids is not None else [str(len(self.ids) + i)
                                                       for i in range(probs.shape[0])])

    def compute(self) -> dict[str, Any]:
        """Micro metrics, macro F1/Jaccard, counts; plus `pr_curve` when asked for."""
        out: dict[str, Any] = {}
        for name, value in self.pooled.compute().items():
            if name == "pr_curve":
                precision, recall, thresholds = value
                out["pr_curve"] = {"precision": precision.tolist(), "recall": recall.tolist(),
                                   "thresholds": thresholds.tolist()}
            else:
                out[name] = float(value)
        out["f1_tol1"] = float(self.tolerant.compute())
        rows = self.image_rows()
        f1s = [r["f1"] for r in rows if not math.isnan(r["f1"])]
        jis = [r["jaccard"] for r in rows if not math.isnan(r["jaccard"])]
        out["macro_f1"] = sum(f1s) / len(f1s) if f1s else float("nan")
        out["macro_jaccard"] = sum(jis) / len(jis) if jis else float("nan")
        out["images"] = len(rows)
        out["images_without_any_wrinkle"] = len(rows) - len(f1s)
        return out

    def image_rows(self) -> list[dict[str, Any]]:
        """Per-image counts and scores (F1/Jaccard NaN where truth and prediction are both empty)."""
        stats = self.per_image.compute()  # gathered over ranks, in rank order
        if stats.ndim == 1:
            stats = stats[None]
        rows = []
        ids = gather_lists(self.ids)  # the same rank order
        for image_id, (tp, fp, tn, fn, _support) in zip(ids, stats.tolist(), strict=True):
            denom = tp + fp + fn
            rows.append({
                "id": image_id, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                "true_pixels": tp + fn, "predicted_pixels": tp + fp,
                "f1": 2 * tp / (denom + tp) if denom else float("nan"),
                "jaccard": tp / denom if denom else float("nan"),
                "precision": tp / (tp + fp) if tp + fp else float("nan"),
                "recall": tp / (tp + fn) if tp + fn else float("nan"),
            })
        return rows

    def reset(self) -> None:
        self.pooled.reset()
        self.per_image.reset()
        self.tolerant.reset()
        self.ids = []
