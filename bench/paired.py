#!/usr/bin/env python
"""Two recipes on the same held-out faces: the paired difference, per fold and per face.

A and B are cross-validation folders made with the same folds (same --fold-seed, --folds and
--limit), or one folder's stored variants (FOLDER:oof_flip for its flip-averaged predictions,
bench/bench_averaging.py). Over the folds both have finished: each fold's pooled F1 at
--threshold for A and B and the difference B - A (mean and standard deviation over folds, the
spread a recipe change is judged against), the pooled F1 over all those faces, and a 95 %
bootstrap interval of the pooled difference from resampling faces (the only spread one fold has).

    python bench/paired.py runs/cv/v3 runs/cv/v3_e40
    python bench/paired.py runs/cv/v3 runs/cv/v3:oof_flip --out runs/paired_flip.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from utils.errors import UserError, run_cli  # noqa: E402
from utils.io import write_json  # noqa: E402
from utils.training.crossval import read_oof  # noqa: E402


def _split(spec: str) -> tuple[Path, str]:
    folder, _, name = spec.partition(":")
    return Path(folder), name or "oof"


def _counts(probs: np.ndarray, truth: np.ndarray, threshold: float) -> np.ndarray:
    """Per face: true positives, predicted pixels, true pixels."""
    pred = probs.astype(np.float32) > threshold
    axes = tuple(range(1, pred.ndim))
    return np.stack([(pred & truth).sum(axes), pred.sum(axes), truth.sum(axes)], 1).astype(float)


def _f1(c: np.ndarray) -> float:
    denom = c[:, 1].sum() + c[:, 2].sum()
    return float(2 * c[:, 0].sum() / denom) if denom else float("nan")


def compare(a: str, b: str, threshold: float = 0.5, draws: int = 2000, seed: int = 0) -> dict:
    """Paired figures of B against A (see the module docstring)."""
    (fa, na), (fb, nb) = _split(a), _split(b)
    folds = []
    for folder in (fa, fb):
        path = folder / "folds.json"
        if not path.is_file():
            raise UserError(f"{folder}: not a cross-validation folder (no folds.json)")
        folds.append([sorted(f) for f in json.loads(path.read_text(encoding="utf-8"))["folds"]])
    if folds[0] != folds[1]:
        raise UserError(f"{fa} and {fb} hold out different faces (other folds): a paired "
                        "comparison needs the same --fold-seed, --folds and --limit")
    common = [k for k in range(len(folds[0]))
              if (fa / f"fold{k}" / f"{na}.npz").is_file()
              and (fb / f"fold{k}" / f"{nb}.npz").is_file()]
    if not common:
        raise UserError(f"{a} and {b} have no finished fold in common")
    ca, cb, per_fold = [], [], []
    for k in common:
        pa, pb = read_oof(fa, k, na), read_oof(fb, k, nb)
        where = {str(i): n for n, i in enumerate(pb["ids"])}
        if set(where) != {str(i) for i in pa["ids"]}:
            raise UserError(f"fold {k}: {a} and {b} hold different faces")
        order = [where[str(i)] for i in pa["ids"]]  # B's rows in A's order
        xa = _counts(pa["probs"], pa["masks"], threshold)
        xb = _counts(pb["probs"][order], pb["masks"][order], threshold)
        per_fold.append({"fold": k, "a": _f1(xa), "b": _f1(xb), "b_minus_a": _f1(xb) - _f1(xa)})
        ca.append(xa)
        cb.append(xb)
    ca, cb = np.concatenate(ca), np.concatenate(cb)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(draws):
        pick = rng.integers(0, len(ca), len(ca))
        boot.append(_f1(cb[pick]) - _f1(ca[pick]))
    diffs = [f["b_minus_a"] for f in per_fold]
    return {"a": a, "b": b, "threshold": threshold, "faces": len(ca), "folds": per_fold,
            "fold_difference": {"mean": statistics.fmean(diffs),
                                "sd": statistics.stdev(diffs) if len(diffs) > 1 else None},
            "pooled": {"a": _f1(ca), "b": _f1(cb), "b_minus_a": _f1(cb) - _f1(ca),
                       "bootstrap_95": [float(np.percentile(boot, 2.5)),
                                        float(np.percentile(boot, 97.5))],
                       "share_of_draws_b_better": float(np.mean(np.array(boot) > 0))}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="cross-validation folder (or FOLDER:variant), the reference")
    p.add_argument("b", help="cross-validation folder (or FOLDER:variant) compared with it")
    p.add_argument("-t", "--threshold", type=float, default=0.5, help="default 0.5")
    p.add_argument("--out", type=Path, help="JSON file for the figures")
    args = p.parse_args(argv)
    if not 0 < args.threshold < 1:
        p.error("--threshold must be between 0 and 1")
    r = compare(args.a, args.b, args.threshold)
    for f in r["folds"]:
        print(f"fold {f['fold']}: A {f['a']:.4f}  B {f['b']:.4f}  B - A {f['b_minus_a']:+.4f}")
    d, q = r["fold_difference"], r["pooled"]
    sd = f" +- {d['sd']:.4f}" if d["sd"] is not None else " (one fold: no fold spread)"
    print(f"per fold B - A: {d['mean']:+.4f}{sd}")
    print(f"pooled over {r['faces']} faces at {args.threshold}: A {q['a']:.4f}  B {q['b']:.4f}  "
          f"B - A {q['b_minus_a']:+.4f}, 95 % bootstrap over faces [{q['bootstrap_95'][0]:+.4f}, "
          f"{q['bootstrap_95'][1]:+.4f}]")
    if args.out:
        write_json(args.out, r)
        print(f"figures: {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
