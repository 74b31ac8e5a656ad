#!/usr/bin/env python
"""The results table of cross-validation folders: one markdown row per folder, from report.json.

Columns: the folder, its recipe (config, --set items, epochs, teachers), the fold seed and the
number of folds, the out-of-fold pooled F1 at the report's threshold, the folds' mean and
standard deviation, the best threshold out of fold and its F1, and the folds' training minutes
(summed). A folder with only some folds done shows those folds' F1 (pooled over them) and says so.

    python bench/cv_table.py runs/cv/*
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from utils.errors import UserError, run_cli  # noqa: E402

HEADER = ("| folder | recipe | fold seed | OOF pooled F1 | folds (mean ± sd) | best threshold (F1) "
          "| fold-minutes |\n| --- | --- | --- | --- | --- | --- | --- |")


def _recipe(folder: Path) -> str:
    path = folder / "recipe.json"
    if not path.is_file():
        return ""
    r = json.loads(path.read_text(encoding="utf-8"))
    parts = [Path(r["config"]).name, f"{r['epochs']} epochs", *r.get("set", [])]
    if r.get("teachers"):
        parts.append(f"teachers {r['teachers']}")
    return ", ".join(parts)


def _partial(folder: Path, k: int) -> str | None:
    """A row from the finished folds alone (pooled over them), or None when none is done."""
    from utils.training.crossval import pooled_f1, read_oof

    done = [i for i in range(k) if (folder / f"fold{i}" / "oof.npz").is_file()]
    if not done:
        return None
    parts = [read_oof(folder, i) for i in done]
    per = [pooled_f1([p], [0.5])[0] for p in parts]
    minutes = 0.0
    for i in done:
        s = folder / f"fold{i}" / "history.csv"
        if s.is_file():
            import csv

            with s.open(encoding="utf-8") as f:
                minutes += sum(float(r["seconds"]) for r in csv.DictReader(f)) / 60
    return (f"| {folder.name} (folds {', '.join(map(str, done))} of {k}) | {_recipe(folder)} | "
            f"{json.loads((folder / 'folds.json').read_text())['seed']} | "
            f"{pooled_f1(parts, [0.5])[0]:.3f} | {', '.join(f'{f:.3f}' for f in per)} | | "
            f"{minutes:.0f} |")


def row(folder: Path) -> str | None:
    """One markdown row for a cross-validation folder."""
    if not (folder / "folds.json").is_file():
        return None
    k = json.loads((folder / "folds.json").read_text(encoding="utf-8"))["k"]
    report = folder / "report.json"
    complete = all((folder / f"fold{i}" / "oof.npz").is_file() for i in range(k))
    if not report.is_file() or not complete:
        return _partial(folder, k)
    r = json.loads(report.read_text(encoding="utf-8"))
    folds = r["folds"]["f1"]
    sd = statistics.stdev(folds) if len(folds) > 1 else 0.0
    t = r["thresholds"]
    return (f"| {folder.name} | {_recipe(folder)} | {r['seed']} | {r['pooled']['f1']:.3f} | "
            f"{statistics.fmean(folds):.3f} ± {sd:.3f} | {t['best']} ({t['best_f1']:.3f}) | "
            f"{r['training_fold_minutes']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="cross-validation folders")
    args = p.parse_args(argv)
    rows = [r for r in map(row, args.folders) if r]
    if not rows:
        raise UserError("no cross-validation folder with a finished fold among "
                        + ", ".join(map(str, args.folders)))
    print(HEADER)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    run_cli(main)
