#!/usr/bin/env python
"""Two recipes on the same held-out faces: the paired difference, per fold and per face.

A and B are cross-validation folders made with the same folds (same --fold-seed, --folds and
--limit), or one folder's stored variants (FOLDER:oof_flip for its flip-averaged predictions,
bench/bench_averaging.py). Over the folds both have finished: each fold's pooled F1 at
--threshold for A and B and the difference B - A (mean and standard deviation over folds, the
spread a recipe change is judged against), the pooled F1 over all those faces, and a 95 %
bootstrap interval of the pooled difference from resampling faces (the only spread one fold has).
A folder whose probabilities are gone (bench/results/cv keeps only per-face counts) is compared
at one of its candidate thresholds.

Several pairs (A1 B1 A2 B2 ..., one pair per fold seed: repeated k-fold) confirm a choice: each
pair as above, then every fold difference of every pair together, how many folds B wins, and each
pair's pooled gain against A's fold spread (the standard deviation of A's folds' F1, the figure a
change must beat to be more than the luck of a split).

    python bench/paired.py runs/cv/v3 runs/cv/v3_e40
    python bench/paired.py bench/results/cv/v3 bench/results/cv/v3_e40 \
        bench/results/cv/v3_seed1 bench/results/cv/v3_e40_seed1
    python bench/paired.py runs/cv/v3 runs/cv/v3:oof_flip --out runs/paired_flip.json
    python bench/paired.py bench/results/cv/v3 bench/results/cv/v3_e40 -t 0.85
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import run_cli, save
from utils.errors import UserError
from utils.training.crossval import f1_of, has_oof, read_counts


def _split(spec: str) -> tuple[Path, str]:
    folder, _, name = spec.partition(":")
    return Path(folder), name or "oof"


def _mean_sd(values: list[float]) -> dict:
    """Mean and standard deviation over folds (sd None for one fold: it has no spread)."""
    return {"mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None}


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
    common = [k for k in range(len(folds[0])) if has_oof(fa, k, na) and has_oof(fb, k, nb)]
    if not common:
        raise UserError(f"{a} and {b} have no finished fold in common")
    ca, cb, per_fold = [], [], []
    for k in common:
        ids_a, xa = read_counts(fa, k, threshold, na)
        ids_b, xb = read_counts(fb, k, threshold, nb)
        where = {i: n for n, i in enumerate(ids_b)}
        if set(where) != set(ids_a):
            raise UserError(f"fold {k}: {a} and {b} hold different faces")
        xb = xb[[where[i] for i in ids_a]]  # B's rows in A's order
        fa1, fb1 = f1_of(xa), f1_of(xb)
        per_fold.append({"fold": k, "a": fa1, "b": fb1, "b_minus_a": fb1 - fa1})
        ca.append(xa)
        cb.append(xb)
    ca, cb = np.concatenate(ca), np.concatenate(cb)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(draws):
        pick = rng.integers(0, len(ca), len(ca))
        boot.append(f1_of(cb[pick]) - f1_of(ca[pick]))
    return {"a": a, "b": b, "threshold": threshold, "faces": len(ca), "folds": per_fold,
            "fold_difference": _mean_sd([f["b_minus_a"] for f in per_fold]),
            "a_fold_spread": _mean_sd([f["a"] for f in per_fold])["sd"],
            "pooled": {"a": f1_of(ca), "b": f1_of(cb), "b_minus_a": f1_of(cb) - f1_of(ca),
                       "bootstrap_95": [float(np.percentile(boot, 2.5)),
                                        float(np.percentile(boot, 97.5))],
                       "share_of_draws_b_better": float(np.mean(np.array(boot) > 0))}}


def repeated(pairs: list[tuple[str, str]], threshold: float = 0.5) -> dict:
    """Paired figures of several (A, B) pairs, one per fold seed, and all their folds together."""
    runs = [compare(a, b, threshold) for a, b in pairs]
    diffs = [f["b_minus_a"] for r in runs for f in r["folds"]]
    return {"threshold": threshold, "pairs": runs,
            "fold_difference": {**_mean_sd(diffs), "folds": len(diffs),
                                "b_better": sum(d > 0 for d in diffs)},
            "pooled_gain_over_a_spread": [
                None if not r["a_fold_spread"]  # one fold, or folds that all scored alike
                else r["pooled"]["b_minus_a"] / r["a_fold_spread"] for r in runs]}


def _print_pair(r: dict) -> None:
    for f in r["folds"]:
        print(f"fold {f['fold']}: A {f['a']:.4f}  B {f['b']:.4f}  B - A {f['b_minus_a']:+.4f}")
    d, q = r["fold_difference"], r["pooled"]
    sd = f" +- {d['sd']:.4f}" if d["sd"] is not None else " (one fold: no fold spread)"
    print(f"per fold B - A: {d['mean']:+.4f}{sd}")
    print(f"pooled over {r['faces']} faces at {r['threshold']}: A {q['a']:.4f}  B {q['b']:.4f}  "
          f"B - A {q['b_minus_a']:+.4f}, 95 % bootstrap over faces [{q['bootstrap_95'][0]:+.4f}, "
          f"{q['bootstrap_95'][1]:+.4f}]")
    if r["a_fold_spread"] is not None:
        print(f"A's fold spread (sd of its folds' F1): {r['a_fold_spread']:.4f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", metavar="A B",
                   help="pairs of cross-validation folders (or FOLDER:variant): the reference A, "
                        "then B compared with it; more pairs (other fold seeds) to confirm")
    p.add_argument("-t", "--threshold", type=float, default=0.5, help="default 0.5")
    p.add_argument("--out", type=Path, help="JSON file for the figures")
    args = p.parse_args(argv)
    if not 0 < args.threshold < 1:
        p.error("--threshold must be between 0 and 1")
    if len(args.folders) % 2:
        p.error(f"folders come in pairs (A B), got {len(args.folders)}")
    pairs = list(zip(args.folders[::2], args.folders[1::2], strict=True))
    if len(pairs) == 1:
        r = compare(*pairs[0], args.threshold)
        _print_pair(r)
    else:
        r = repeated(pairs, args.threshold)
        for (a, b), one in zip(pairs, r["pairs"], strict=True):
            print(f"== A {a}  B {b}")
            _print_pair(one)
        d = r["fold_difference"]
        sd = f" +- {d['sd']:.4f}" if d["sd"] is not None else ""
        gains = ", ".join("n/a" if g is None else f"{g:.2f}" for g in r["pooled_gain_over_a_spread"])
        print(f"== all {d['folds']} folds of {len(pairs)} pairs: B - A {d['mean']:+.4f}{sd} per "
              f"fold, B better on {d['b_better']} of {d['folds']}; each pair's pooled gain in "
              f"units of A's fold spread: {gains}")
    save(r, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
