"""evaluate.py: its numbers agree with scikit-learn on the same predictions; its reports exist."""

from __future__ import annotations

import csv
import json
import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    jaccard_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from utils.checkpoints import load_checkpoint, model_from_checkpoint
from utils.data.dataset import WrinkleDataset, normalize_input
from utils.data.pairs import find_pairs
from utils.evaluation.evaluate import evaluate
from utils.runtime import logits_to_probs


def _predictions(run):
    ckpt = load_checkpoint(run / "best.pth")
    model = model_from_checkpoint(ckpt)
    cfg = ckpt["config"]["data"]
    rep = find_pairs(cfg["image_dir"], cfg["mask_dir"], ids=ckpt["split"]["val"], progress=False)
    ds = WrinkleDataset(rep.pairs, ckpt["preprocess"])
    probs, truths = [], []
    with torch.no_grad():
        for i in range(len(ds)):
            s = ds[i]
            x = normalize_input(s["image"][None], ds.recipe)
            probs.append(logits_to_probs(model(x))[0].numpy())
            truths.append(s["mask"][0].numpy().astype(bool))
    return probs, truths, [p.id for p in rep.pairs]


def test_metrics_agree_with_sklearn(trained_run, tmp_path):
    out = tmp_path / "eval"
    res = evaluate(trained_run / "best.pth", out, split="val", amp="off", progress=False,
                   log=lambda s: None)
    probs, truths, ids = _predictions(trained_run)
    p = np.concatenate([x.ravel() for x in probs])
    t = np.concatenate([x.ravel() for x in truths])
    pred = p > 0.5
    micro = res["micro"]
    assert micro["f1"] == pytest.approx(f1_score(t, pred, zero_division=0), abs=1e-4)
    assert micro["jaccard"] == pytest.approx(jaccard_score(t, pred, zero_division=0), abs=1e-4)
    assert micro["precision"] == pytest.approx(precision_score(t, pred, zero_division=0), abs=1e-4)
    assert micro["recall"] == pytest.approx(recall_score(t, pred), abs=1e-4)
    # AUROC and AP use 200 thresholds k/199: they equal the exact values on scores quantised to
    # those thresholds (an undertrained model's scores crowd into a few bins, so the exact
    # values on raw scores can differ by more).
    q = np.floor(p.astype(np.float64) * 199 + 1e-6)
    assert micro["auroc"] == pytest.approx(roc_auc_score(t, q), abs=2e-3)
    assert micro["average_precision"] == pytest.approx(average_precision_score(t, q), abs=0.02)
    per_image = [f1_score(tr.ravel(), pr.ravel() > 0.5, zero_division=0)
                 for tr, pr in zip(truths, probs, strict=True)]
    assert res["macro"]["f1"] == pytest.approx(float(np.mean(per_image)), abs=1e-4)

    # 1-px tolerant F1 against an OpenCV dilation of each mask.
    k = np.ones((3, 3), np.uint8)
    near_p = sum(int(((pr > 0.5) & (cv2.dilate(tr.astype(np.uint8), k) > 0)).sum())
                 for tr, pr in zip(truths, probs, strict=True))
    near_t = sum(int((tr & (cv2.dilate((pr > 0.5).astype(np.uint8), k) > 0)).sum())
                 for tr, pr in zip(truths, probs, strict=True))
    prec_t, rec_t = near_p / max(1, pred.sum()), near_t / max(1, t.sum())
    expected = 2 * prec_t * rec_t / (prec_t + rec_t) if prec_t + rec_t else 0.0
    assert micro["f1_tol1"] == pytest.approx(expected, abs=1e-6)
    assert micro["f1_tol1"] >= micro["f1"]

    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert [r["id"] for r in rows] == ids
    for r, f in zip(rows, per_image, strict=True):
        assert float(r["f1"]) == pytest.approx(f, abs=1e-5)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["resolution"] == 64 and "max-pool" in saved["mask_resize_rule"]
    assert saved["images"] == len(ids) == 4
    assert Image.open(out / "pr_curve.png").size[0] > 100
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert any(n.startswith("worst1_") for n in overlays) and \
        any(n.startswith("best1_") for n in overlays)


def test_same_numbers_as_training_validation(trained_run, tmp_path):
    """Training validation and evaluate.py share data and metric code: same weights, same F1."""
    best = load_checkpoint(trained_run / "best.pth")
    res = evaluate(trained_run / "best.pth", tmp_path / "e", amp="off", overlays=0,
                   progress=False, log=lambda s: None)
    assert res["micro"]["f1"] == pytest.approx(best["metrics"]["f1"], abs=1e-6)
    assert res["micro"]["jaccard"] == pytest.approx(best["metrics"]["jaccard"], abs=1e-6)
    assert not math.isnan(res["macro"]["jaccard"])


def test_split_from_id_file_and_all(trained_run, tmp_path):
    ckpt = load_checkpoint(trained_run / "best.pth")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ckpt["split"]["train"][:3]) + "\n")
    res = evaluate(trained_run / "best.pth", tmp_path / "f", split=str(ids_file), amp="off",
                   overlays=0, progress=False, log=lambda s: None)
    assert res["images"] == 3
    res = evaluate(trained_run / "best.pth", tmp_path / "g", split="all", amp="off", overlays=0,
                   progress=False, log=lambda s: None)
    assert res["images"] == 16


def test_texture_baseline_is_evaluated_by_the_same_code(trained_run, tmp_path):
    ckpt = load_checkpoint(trained_run / "best.pth")
    data = ckpt["config"]["data"]
    ids = tmp_path / "val_ids.txt"
    ids.write_text("\n".join(ckpt["split"]["val"]) + "\n")
    res = evaluate(None, tmp_path / "b", split=str(ids), image_dir=data["image_dir"],
                   mask_dir=data["mask_dir"], overlays=1, progress=False, log=lambda s: None)
    assert res["checkpoint"] == "texture-map baseline" and res["images"] == 4
    assert res["resolution"] == 256 and 0 < res["micro"]["recall"] <= 1
    assert (tmp_path / "b" / "per_image.csv").is_file()
