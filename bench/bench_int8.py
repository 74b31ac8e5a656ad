#!/usr/bin/env python
"""int8 against float32, out of fold: each fold model of finished cross-validation folders
(bench/cross_validate.py, fold<k>/last.pth) predicts the faces it held out, through the
predictor as it serves them (OpenVINO, aligned faces, whole frame), in float32 and in int8
quantised two ways: on the example faces (what predict.py and app.py do on first use) and on
300 unlabelled faces of ../shared (none of them has a mask, so no figure is measured on them),
and int8 with test-time flips (each face averaged with its mirror image: what a photo could
carry at about the float32 model's cost). Pooled F1 at several thresholds, each fold's F1, the paired difference int8 - fp32 per fold
and pooled, and the pixel agreement of the masks.

    python bench/bench_int8.py --cv runs/cv/v5_s0 runs/cv/v5_s1 --out runs/bench_int8.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import DATA, run_cli, save
from utils.data.images import load_image
from utils.data.masks import read_mask, resize_mask
from utils.errors import UserError
from utils.runtime import machine_facts

THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cv", type=Path, nargs="+", required=True,
                   help="cross-validation folders; every fold with last.pth is scored")
    p.add_argument("--calibration-faces", type=int, default=300,
                   help="unlabelled faces for the second int8 calibration (default 300)")
    p.add_argument("--out", type=Path, help="JSON file for the figures")
    return p.parse_args(argv)


def unlabelled_folder(n: int, tmp: Path) -> Path:
    """A folder of links to the first n faces of ../shared that have no mask."""
    labelled = {p.stem for p in (DATA / "manual_wrinkle_masks").glob("*.png")}
    faces = [p for p in sorted((DATA / "images256x256").glob("*.jpg"))
             if p.stem not in labelled][:n]
    folder = tmp / "unlabelled"
    folder.mkdir()
    for f in faces:
        (folder / f.name).symlink_to(f)
    return folder


def counts(probs: np.ndarray, truth: np.ndarray, thr: float) -> tuple[int, int, int]:
    pred = probs > thr
    return int((pred & truth).sum()), int(pred.sum()), int(truth.sum())


def f1(parts: list[tuple[int, int, int]]) -> float:
    tp, p, t = (sum(x) for x in zip(*parts, strict=True))
    return 2 * tp / (p + t) if p + t else float("nan")


def score_fold(checkpoint: Path, ids: list[str], calibrated: Path) -> dict:
    """Held-out probabilities of one fold model in each precision, and their figures."""
    from utils.inference.predictor import WrinklePredictor

    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "int8_unlabelled.xml"
        from utils.inference.export import export_deployable

        export_deployable(checkpoint, xml, "openvino", int8=True, calibration=calibrated)
        predictors = {
            "fp32": WrinklePredictor(checkpoint, backend="openvino", precision="fp32",
                                     face_region="none"),
            "int8_examples": WrinklePredictor(checkpoint, backend="openvino", precision="int8",
                                              face_region="none"),
            "int8_unlabelled": WrinklePredictor(xml, face_region="none"),
            "int8_flip": WrinklePredictor(checkpoint, backend="openvino", precision="int8",
                                          face_region="none", tta="flip")}
        probs = {name: [] for name in predictors}
        truth = []
        for i in ids:
            face = load_image(DATA / "images256x256" / f"{i}.jpg")
            truth.append(resize_mask(read_mask(DATA / "manual_wrinkle_masks" / f"{i}.png"),
                                     face.shape[:2]))
            for name, pred in predictors.items():
                probs[name].append(pred.predict_aligned(face).probs)
    out: dict = {"faces": len(ids)}
    for name, ps in probs.items():
        out[name] = {str(t): [counts(p, m, t) for p, m in zip(ps, truth, strict=True)]
                     for t in THRESHOLDS}
        if name != "fp32":
            out[name]["agreement_at_0.5"] = float(np.mean(
                [((p > 0.5) == (q > 0.5)).mean() for p, q in zip(ps, probs["fp32"],
                                                               strict=True)]))
    return out


def summarise(folds: list[dict]) -> dict:
    names = [n for n in folds[0] if n not in ("faces", "fold", "cv")]
    out: dict = {"folds": [f"{f['cv']}/fold{f['fold']}" for f in folds],
                 "faces": sum(f["faces"] for f in folds)}
    for name in names:
        out[name] = {"pooled_f1": {str(t): f1([c for f in folds for c in f[name][str(t)]])
                                   for t in THRESHOLDS},
                     "fold_f1_at_0.5": [f1(f[name]["0.5"]) for f in folds]}
        if name != "fp32":
            diff = [a - b for a, b in zip(out[name]["fold_f1_at_0.5"],
                                          out["fp32"]["fold_f1_at_0.5"], strict=True)]
            out[name]["minus_fp32_per_fold"] = diff
            out[name]["minus_fp32_mean"] = statistics.fmean(diff)
            out[name]["minus_fp32_pooled"] = {
                t: out[name]["pooled_f1"][t] - out["fp32"]["pooled_f1"][t]
                for t in out[name]["pooled_f1"]}
            out[name]["agreement_at_0.5"] = statistics.fmean(f[name]["agreement_at_0.5"]
                                                              for f in folds)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (DATA / "manual_wrinkle_masks").is_dir():
        raise UserError(f"{DATA}: the labelled faces are needed (the shared/ folder)")
    folds = []
    with tempfile.TemporaryDirectory() as tmp:
        calibrated = unlabelled_folder(args.calibration_faces, Path(tmp))
        for cv in args.cv:
            spec = cv / "folds.json"
            if not spec.is_file():
                raise UserError(f"{cv}: not a cross-validation folder (no folds.json)")
            for k, ids in enumerate(json.loads(spec.read_text(encoding="utf-8"))["folds"]):
                ckpt = cv / f"fold{k}" / "last.pth"
                if not (cv / f"fold{k}" / "summary.json").is_file():
                    continue
                print(f"{cv} fold {k}: {len(ids)} held-out faces")
                folds.append({"cv": str(cv), "fold": k, **score_fold(ckpt, ids, calibrated)})
    if not folds:
        raise UserError("no finished fold in " + ", ".join(map(str, args.cv)))
    report = {"machine": machine_facts(), "summary": summarise(folds), "per_fold": folds}
    s = report["summary"]
    print(f"{len(folds)} folds, {s['faces']} held-out faces; CPU class "
          f"{report['machine']['cpu_class']}")
    for name in [n for n in s if n not in ("folds", "faces")]:
        row = "  ".join(f"{t}: {v:.4f}" for t, v in s[name]["pooled_f1"].items())
        extra = ("" if name == "fp32" else f"  int8 - fp32 at 0.5: "
                 f"{s[name]['minus_fp32_pooled']['0.5']:+.4f} pooled, per fold "
                 f"{', '.join(f'{d:+.4f}' for d in s[name]['minus_fp32_per_fold'])}; masks "
                 f"agree on {100 * s[name]['agreement_at_0.5']:.2f} % of pixels")
        print(f"{name:16s} pooled F1  {row}{extra}")
    save(report, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
