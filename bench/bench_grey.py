#!/usr/bin/env python
"""Black-and-white photos: does a model see a grey copy of a face as it sees the colour one?

For each face, the share of the face predicted as wrinkle on the colour image and on its grey
copy (ITU-R 601 luma in all three channels, what a black-and-white photo decodes to), and the
pooled F1 of each against the annotator's mask (256 px, masks max-pooled from 1024). The ratio
grey share / colour share should be close to 1 (the aim: within 15 %).

Either one model on the labelled faces it may have trained on (--checkpoint; the bundled model
by default: its shares say how it behaves, its F1 there is not a quality figure), or the fold
models of a cross-validation folder on the faces each one held out (--cv: out of fold).

    python bench/bench_grey.py --out runs/bench_grey_bundled.json
    python bench/bench_grey.py --cv runs/cv/grey025 --out runs/bench_grey_cv_grey025.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from bench.common import DATA, labelled_ids, run_cli, save
from utils.data.images import load_image
from utils.data.masks import read_mask, resize_mask
from utils.errors import UserError
from utils.inference.predictor import WrinklePredictor


def grey_copy(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def measure(predictor: WrinklePredictor, ids: list[str], data: Path, threshold: float | None
            ) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"colour_share": [], "grey_share": [], "tp_c": [], "fp_c": [],
                                   "fn_c": [], "tp_g": [], "fp_g": [], "fn_g": []}
    for i in ids:
        rgb = load_image(data / "images256x256" / f"{i}.jpg")
        truth = resize_mask(read_mask(data / "manual_wrinkle_masks" / f"{i}.png"), rgb.shape[:2])
        for key, image in (("c", rgb), ("g", grey_copy(rgb))):
            face = predictor.predict_aligned(image, threshold)
            out["colour_share" if key == "c" else "grey_share"].append(
                face.stats["wrinkle_share"])
            m = face.mask
            out[f"tp_{key}"].append(float((m & truth).sum()))
            out[f"fp_{key}"].append(float((m & ~truth).sum()))
            out[f"fn_{key}"].append(float((~m & truth).sum()))
    return out


def summary(m: dict[str, list[float]]) -> dict[str, float]:
    def f1(k: str) -> float:
        tp, fp, fn = (sum(m[f"{x}_{k}"]) for x in ("tp", "fp", "fn"))
        return 2 * tp / max(1.0, 2 * tp + fp + fn)

    c, g = float(np.mean(m["colour_share"])), float(np.mean(m["grey_share"]))
    return {"faces": len(m["colour_share"]), "colour_share": c, "grey_share": g,
            "grey_over_colour": g / c if c else float("nan"),
            "pooled_f1_colour": f1("c"), "pooled_f1_grey": f1("g")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help=f"data folder (default {DATA})")
    p.add_argument("--checkpoint", help="a model file (default: the bundled model)")
    p.add_argument("--cv", type=Path, help="a cross-validation folder: each fold model on the "
                   "faces it held out (fold<k>/last.pth, fold<k>/val_ids.txt)")
    p.add_argument("-t", "--threshold", type=float, help="decision threshold (default: the "
                   "model's own)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    ids = labelled_ids(args.data)
    if args.cv:
        folds = sorted(cp for cp in args.cv.glob("fold*/last.pth")
                       if (cp.parent / "oof.npz").is_file())  # finished folds only
        if not folds:
            raise UserError(f"{args.cv}: no finished fold (fold<k>/last.pth and oof.npz)")
        total: dict[str, list[float]] = {}
        for cp in folds:
            held = (cp.parent / "val_ids.txt").read_text().split()
            m = measure(WrinklePredictor(cp, face_region="auto"), held, args.data,
                        args.threshold)
            print(f"{cp.parent.name}: {summary(m)}", flush=True)
            for k, v in m.items():
                total.setdefault(k, []).extend(v)
        result = summary(total)
        what = f"out of fold, {len(folds)} fold models of {args.cv}"
    else:
        predictor = WrinklePredictor(args.checkpoint)
        result = summary(measure(predictor, ids, args.data, args.threshold))
        what = f"{predictor.description} on every labelled face (it may have trained on them)"
    print(f"{what}: colour share {100 * result['colour_share']:.2f} %, grey share "
          f"{100 * result['grey_share']:.2f} % (ratio {result['grey_over_colour']:.3f}); pooled "
          f"F1 colour {result['pooled_f1_colour']:.4f}, grey {result['pooled_f1_grey']:.4f}")
    save({"what": what, **result}, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
