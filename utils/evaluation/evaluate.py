"""Evaluation behind evaluate.py: a checkpoint on a split -> metrics.json, a per-image CSV,
overlays of the worst and best images, and a precision-recall curve.

It runs the same dataset code and the same metric collection as training validation, so the
numbers of evaluate.py and of the training log agree on the same weights and ids.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from utils.checkpoints import load_checkpoint, model_from_checkpoint, with_tta
from utils.data.dataset import WrinkleDataset, normalize_input
from utils.data.masks import MASK_RULE, RESIZE_RULE
from utils.data.pairs import find_pairs, min_image_side, resolve_pairs
from utils.data.splits import read_ids
from utils.errors import UserError
from utils.evaluation.validation import validate
from utils.io import csv_text, write_json, write_text
from utils.runtime import amp_dtype, autocast, logits_to_probs, resolve_device
from utils.visualize import overlay, plot_pr_curve, write_png

SPLITS = ("val", "train", "test", "all")
CSV_FIELDS = ["id", "f1", "jaccard", "precision", "recall", "true_pixels", "predicted_pixels",
              "tp", "fp", "fn"]


def select_ids(ckpt: dict[str, Any], split: str) -> list[str] | None:
    """Ids to evaluate: a split stored in the checkpoint, an id-list file, or None for all."""
    if split == "all":
        return None
    if split in ("val", "train", "test"):
        ids = ckpt.get("split", {}).get(split)
        if ids is None:
            raise UserError(f"the checkpoint stores no '{split}' split; pass an id-list file "
                            "or --split all with --image-dir/--mask-dir")
        if not ids:
            raise UserError(f"the checkpoint's '{split}' split is empty")
        return list(ids)
    path = Path(split)
    if not path.exists():
        raise UserError(f"--split {split}: neither one of {', '.join(SPLITS)} nor an id-list file")
    return read_ids(path)


def evaluate(checkpoint: str | Path | None, out: str | Path, split: str = "val",
             image_dir: str | None = None, mask_dir: str | None = None,
             threshold: float | None = None, batch_size: int = 8, device: str = "auto",
             amp: str = "auto", overlays: int = 4, workers: int = 0, strict: bool = False,
             progress: bool = True, log: Any = print, tta: str | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint (None: the texture-map baseline) on a split; write the reports to
    `out`; return metrics.json's dict. tta: "none" or "flip" instead of the checkpoint's own
    test-time augmentation."""
    if checkpoint is None:
        from utils.inference.loading import BASELINE_RECIPE, BASELINE_THRESHOLD, TextureBaseline

        ckpt = {"preprocess": dict(BASELINE_RECIPE), "threshold": BASELINE_THRESHOLD,
                "config": {}, "split": {}}
        if split in ("val", "train", "test"):
            raise UserError("the texture-map baseline has no stored split: give --split with an "
                            "id-list file (e.g. a run's val_ids.txt) or all")
    else:
        ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.get("config", {})
    data_cfg = cfg.get("data", {})
    image_dir = image_dir or data_cfg.get("image_dir")
    mask_dir = mask_dir or data_cfg.get("mask_dir")
    if image_dir is None or mask_dir is None:
        raise UserError("give --image-dir and --mask-dir (the checkpoint names no data folders)")
    ids = select_ids(ckpt, split)
    recipe = ckpt["preprocess"]
    labels_dir = data_cfg.get("face_labels_dir") if recipe.get("face_masking") else None
    report = find_pairs(image_dir, mask_dir, labels_dir, ids=ids, progress=progress,
                        min_side=min_image_side(recipe.get("image_size")))
    if ids is not None:  # images without masks outside the split are not a problem here
        report.images_without_masks = [i for i in report.images_without_masks if i in set(ids)]
    else:
        report.images_without_masks = []
    pairs = resolve_pairs(report, strict, f"{image_dir} + {mask_dir}", log)
    thr = float(ckpt.get("threshold", 0.5) if threshold is None else threshold)
    if not 0 < thr < 1:
        raise UserError(f"threshold must be between 0 and 1, got {thr}")

    dev = resolve_device(device)
    dtype = amp_dtype(dev, amp)
    if tta is not None and checkpoint is not None:
        ckpt["model"] = dict(ckpt["model"], tta=tta)
    model = (with_tta(TextureBaseline(), tta) if checkpoint is None
             else model_from_checkpoint(ckpt, str(checkpoint))).to(dev)
    model.to(memory_format=torch.channels_last)
    dataset = WrinkleDataset(pairs, recipe)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    res, metrics = validate(model, loader, dev, dtype, None, thr, curve=True, progress=progress,
                            desc="evaluate")
    pool = res.pop("pool")
    rows = metrics.image_rows()

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curve = res.pop("pr_curve")
    res.pop("val_loss", None)
    summary = {
        "checkpoint": str(checkpoint) if checkpoint else "texture-map baseline",
        "split": split, "images": len(rows),
        "resolution": recipe.get("image_size") or _native_size(dataset),
        "scored_at": (f"{recipe['image_size'] // pool} px (the images' own size: probabilities "
                      f"and masks max-pooled by {pool})" if pool > 1 else "the model's size"),
        "mask_rule": MASK_RULE, "mask_resize_rule": RESIZE_RULE,
        "threshold": thr, "decision": "wrinkle where probability > threshold",
        "precision_mode": str(dtype).replace("torch.", "") if dtype else "fp32",
        "micro": {k: res[k] for k in ("f1", "jaccard", "precision", "recall", "auroc",
                                      "average_precision", "f1_tol1")},
        "macro": {"f1": res["macro_f1"], "jaccard": res["macro_jaccard"],
                  "images_left_out": res["images_without_any_wrinkle"]},
        "auc_binning": f"{len(curve['thresholds'])} thresholds",
        "best_f1_threshold": best_f1_threshold(curve),
    }
    write_json(out / "metrics.json", summary)
    write_text(out / "per_image.csv", csv_text(rows, CSV_FIELDS, ".6f"))
    op = (res["recall"], res["precision"], thr)
    plot_pr_curve(out / "pr_curve.png", curve["precision"], curve["recall"], curve["thresholds"],
                  op, title=f"{Path(checkpoint).name if checkpoint else 'texture baseline'} on "
                            f"{Path(split).name} ({len(rows)} images)")
    if overlays:
        _write_overlays(model, dataset, rows, out / "overlays", overlays, thr, dev, dtype)
    log(f"{len(rows)} images: micro F1 {res['f1']:.4f}  Jaccard {res['jaccard']:.4f}  "
        f"precision {res['precision']:.4f}  recall {res['recall']:.4f}  AUROC {res['auroc']:.4f}  "
        f"AP {res['average_precision']:.4f}  macro F1 {res['macro_f1']:.4f}  "
        f"F1 (1 px tolerance) {res['f1_tol1']:.4f}")
    best = summary["best_f1_threshold"]
    log(f"best pooled F1 over thresholds: {best['f1']:.4f} at {best['threshold']:.3f} "
        "(chosen on these ids: optimistic)")
    log(f"reports written to {out}/ (metrics.json, per_image.csv, pr_curve.png, overlays/)")
    return summary


def best_f1_threshold(curve: dict[str, list[float]]) -> dict[str, float]:
    """The binned threshold with the highest pooled F1 (to choose a threshold on validation
    ids; an F1 reported at a threshold chosen on the same ids is optimistic)."""
    p = np.asarray(curve["precision"][:-1], dtype=np.float64)
    r = np.asarray(curve["recall"][:-1], dtype=np.float64)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    i = int(np.argmax(f1))
    return {"threshold": float(curve["thresholds"][i]), "f1": float(f1[i]),
            "precision": float(p[i]), "recall": float(r[i])}


def _native_size(dataset: WrinkleDataset) -> str:
    h, w = dataset.load(0)[0].shape[:2]
    return f"{w}x{h} (native)"


@torch.no_grad()
def _write_overlays(model: torch.nn.Module, dataset: WrinkleDataset, rows: list[dict[str, Any]],
                    folder: Path, count: int, thr: float, dev: torch.device,
                    dtype: torch.dtype | None) -> None:
    scored = [(r["f1"], i) for i, r in enumerate(rows) if not math.isnan(r["f1"])]
    scored.sort()
    picks = [("worst", n, i) for n, (_, i) in enumerate(scored[:count], 1)]
    picks += [("best", n, i) for n, (_, i) in enumerate(reversed(scored[-count:]), 1)]
    for tag, rank, index in picks:
        rgb, truth, _ = dataset.load(index)
        planes = dataset[index]["image"][None].to(dev).contiguous(memory_format=torch.channels_last)
        x = normalize_input(planes, dataset.recipe)
        with autocast(dev, dtype):
            probs = logits_to_probs(model(x))[0].cpu().numpy()
        img = overlay(rgb, probs > thr, truth)
        row = rows[index]
        write_png(folder / f"{tag}{rank}_{row['id']}_f1-{row['f1']:.3f}.png",
                  np.concatenate([rgb, img], axis=1))
