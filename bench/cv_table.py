#!/usr/bin/env python
"""The results table of cross-validation folders: one markdown row per folder, from report.json.

Columns: the folder, its recipe (config, --set items, epochs, teachers), the fold seed and the
number of folds, the out-of-fold pooled F1 at the report's threshold, the folds' mean and
standard deviation, the best threshold out of fold and its F1, the folds' training minutes
(summed) and, with --time, the ms per face of the recipe's model alone on the default backend. A
folder with only some folds done shows those folds' F1 (pooled over them) and says so.

    python bench/cv_table.py runs/cv/*
    python bench/cv_table.py runs/cv/v3 runs/cv/v3_w48 --time
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import numpy as np

from utils.errors import UserError, run_cli

HEADER = ("| folder | recipe | fold seed | OOF pooled F1 | folds (mean ± sd) | best threshold (F1) "
          "| fold-minutes | ms per face |\n| --- | --- | --- | --- | --- | --- | --- | --- |")


def _recipe(folder: Path) -> str:
    path = folder / "recipe.json"
    if not path.is_file():
        return ""
    r = json.loads(path.read_text(encoding="utf-8"))
    parts = [Path(r["config"]).name, f"{r['epochs']} epochs", *r.get("set", [])]
    teachers = r.get("teachers")
    if teachers:
        names = [teachers] if isinstance(teachers, str) else teachers
        parts.append(f"teachers {' + '.join(Path(t).name for t in names)}")
    return ", ".join(parts)


def _minutes(folder: Path, k: int) -> float:
    path = folder / f"fold{k}" / "history.csv"
    if not path.is_file():
        return 0.0
    with path.open(encoding="utf-8") as f:
        return sum(float(r["seconds"]) for r in csv.DictReader(f)) / 60


def _ms(folder: Path, done: list[int], repeats: int) -> str:
    """The model alone on an aligned face, default backend: the first finished fold's model
    (every fold's model has the same architecture, so the same cost)."""
    from bench_averaging import time_model

    if not repeats or not done:
        return ""
    if not (folder / f"fold{done[0]}" / "last.pth").is_file():
        return "(no model kept)"
    t = time_model(folder / f"fold{done[0]}" / "last.pth", repeats=repeats)
    return f"{1000 * t['model_s']:.0f} ({t['backend']})"


def row(folder: Path, repeats: int = 0) -> str | None:
    """One markdown row for a cross-validation folder (with ms per face when repeats > 0)."""
    from utils.training.crossval import f1_of, has_oof, read_counts

    if not (folder / "folds.json").is_file():
        return None
    folds_json = json.loads((folder / "folds.json").read_text(encoding="utf-8"))
    k, seed = folds_json["k"], folds_json["seed"]
    done = [i for i in range(k) if has_oof(folder, i)]
    if not done:
        return None
    report = folder / "report.json"
    if report.is_file() and len(done) == k:
        r = json.loads(report.read_text(encoding="utf-8"))
        folds = r["folds"]["f1"]
        sd = statistics.stdev(folds) if len(folds) > 1 else 0.0
        t = r["thresholds"]
        return (f"| {folder.name} | {_recipe(folder)} | {seed} | {r['pooled']['f1']:.3f} | "
                f"{statistics.fmean(folds):.3f} ± {sd:.3f} | {t['best']} ({t['best_f1']:.3f}) | "
                f"{r['training_fold_minutes']:.0f} | {_ms(folder, done, repeats)} |")
    # some folds done: their figures, pooled over them, and said so
    parts = [read_counts(folder, i, 0.5)[1] for i in done]
    per = [f1_of(c) for c in parts]
    return (f"| {folder.name} (folds {', '.join(map(str, done))} of {k}) | {_recipe(folder)} | "
            f"{seed} | {f1_of(np.concatenate(parts)):.3f} | {', '.join(f'{f:.3f}' for f in per)} | "
            f"| {sum(_minutes(folder, i) for i in done):.0f} | {_ms(folder, done, repeats)} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="cross-validation folders")
    p.add_argument("--time", type=int, nargs="?", const=20, default=0, metavar="REPEATS",
                   help="also time each recipe's model alone on an aligned face on the default "
                        "backend (median of REPEATS, default 20; run it on a quiet machine)")
    args = p.parse_args(argv)
    if args.time < 0:
        p.error("--time takes a positive number of repeats")
    rows = [r for r in (row(f, args.time) for f in args.folders) if r]
    if not rows:
        raise UserError("no cross-validation folder with a finished fold among "
                        + ", ".join(map(str, args.folders)))
    print(HEADER)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    run_cli(main)
