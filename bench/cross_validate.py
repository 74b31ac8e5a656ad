#!/usr/bin/env python
"""K-fold cross-validation of a training recipe over the labelled faces (out-of-fold figures).

Every labelled face is predicted by the fold model that never saw it; the report pools those
predictions: F1, Jaccard, precision, recall, F1 with a 1 px tolerance, the spread over folds, the
best threshold out of fold, and the held-out F1 by epoch (the epoch count for a final model). Fold
models train a fixed number of epochs and are scored at the last one. Folds are fixed by
--fold-seed and saved in the output folder; a rerun skips finished folds and resumes a killed one.

    python bench/cross_validate.py --config configs/cv_cpu.yaml --out runs/cv/current --jobs 2

--jobs N trains N folds at once in child processes (each with cores/N threads): on this 2-core
CPU two one-thread folds train about 10 % more images per second than one two-thread fold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from utils.errors import UserError, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", default="configs/cv_cpu.yaml",
                   help="training recipe: a YAML file over config.yaml (default: %(default)s)")
    p.add_argument("-o", "--out", required=True, help="cross-validation folder (created; reused "
                   "to resume)")
    p.add_argument("-k", "--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--fold-seed", type=int, default=0, help="seed of the fold assignment")
    p.add_argument("--limit", type=int, help="use a seeded subset of this many faces (quick runs)")
    p.add_argument("-e", "--epochs", type=int, help="epochs per fold (overrides the recipe)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key (repeatable), e.g. --set loss.gamma=3")
    p.add_argument("-j", "--jobs", type=int, default=1, help="folds trained at once (processes)")
    p.add_argument("--threads", type=int, help="torch threads per fold (default: cores / jobs)")
    p.add_argument("--device", help="where folds train: cpu, cuda or cuda:N (default: the "
                   "recipe's train.device; its 'auto' means the CPU when --jobs > 1). With a GPU, "
                   "--jobs N folds share it, and recipe.json records 'cuda' so that GPU folds "
                   "are never pooled or reused with CPU ones")
    p.add_argument("--teachers", type=Path, nargs="+", metavar="CV_FOLDER",
                   help="self-training: fold k's model in this finished cross-validation folder "
                        "(same folds) labels the unlabelled faces for fold k's student "
                        "(flip-averaged soft labels in <out>/pseudo<k>/; set "
                        "data.pseudo_per_epoch with --set); several folders (same folds, other "
                        "recipes or seeds): their fold-k models' average is the teacher, an "
                        "ensemble that never saw fold k's faces")
    p.add_argument("--fold", type=int, action="append",
                   help="run only this fold (repeatable); the report needs every fold")
    p.add_argument("--report-only", action="store_true", help="only summarise finished folds")
    p.add_argument("--overlay", nargs="+", metavar="ID", default=[],
                   help="also write <out>/overlays/<id>.png: the face beside its out-of-fold "
                        "prediction (at the best threshold out of fold) and its mask")
    p.add_argument("--reuse-kept", type=Path, metavar="FOLDER",
                   help="count the folds finished in FOLDER (this recipe's copy in "
                        "bench/results/cv, made by bench/keep_cv.sh) as done: their held-out "
                        "counts are copied, not retrained (a folder that does not exist yet is "
                        "ignored). Such folds have no model: no flips, ensembles or teachers")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from utils.config import load_config
    from utils.io import write_json
    from utils.runtime import resolve_device
    from utils.training.crossval import (
        check_teachers,
        fold_done,
        format_report,
        labelled_ids,
        load_or_make_folds,
        reuse_kept,
        run_fold,
        summarize,
    )

    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if not Path(args.config).is_file():
        raise UserError(f"{args.config}: config file not found")
    overrides = {"train.epochs": args.epochs}
    cfg = load_config(args.config, overrides, args.set)
    if args.device:
        cfg["train"]["device"] = args.device
    elif cfg["train"]["device"] == "auto" and args.jobs > 1:
        cfg["train"]["device"] = "cpu"  # child processes share the CPU unless told otherwise
    device = cfg["train"]["device"]
    if not args.report_only:
        resolve_device(device)  # an unknown device or a missing GPU is named before any work
    out = Path(args.out)
    folds = load_or_make_folds(out, labelled_ids(cfg), args.folds, args.fold_seed, args.limit)
    recipe = {"config": args.config, "set": args.set, "epochs": cfg["train"]["epochs"]}
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        recipe["device"] = "cuda"  # bf16 on a GPU sums in another order: a rerun, kept apart
    if args.teachers:
        names = [str(t) for t in args.teachers]
        if len(set(names)) < len(names):
            raise UserError(f"--teachers: {names} names a folder twice")
        recipe["teachers"] = names[0] if len(names) == 1 else names
        for t in args.teachers:
            check_teachers(t, folds)
    if not (out / "recipe.json").exists():
        write_json(out / "recipe.json", recipe)
    elif json.loads((out / "recipe.json").read_text(encoding="utf-8")) != recipe:
        raise UserError(f"{out / 'recipe.json'}: this folder holds another recipe "
                        f"({(out / 'recipe.json').read_text(encoding='utf-8').strip()}); use "
                        "another --out folder")
    if args.reuse_kept:
        reuse_kept(out, args.reuse_kept, recipe, folds)
    wanted = args.fold if args.fold else list(range(len(folds)))
    bad = [k for k in wanted if not 0 <= k < len(folds)]
    if bad:
        raise UserError(f"--fold {bad[0]}: there are folds 0..{len(folds) - 1}")
    threads = args.threads or os.cpu_count() or 1  # one fold at a time here: every core
    if not args.report_only:
        if args.jobs == 1 or len(wanted) == 1:
            import cv2

            torch.set_num_threads(threads)
            cv2.setNumThreads(threads)  # augmentation too keeps to the fold's share of cores
            for k in wanted:
                print(f"fold {k + 1}/{len(folds)} ({len(folds[k])} held-out faces)", flush=True)
                run_fold(cfg, out, k, folds, progress=not args.no_progress,
                         teachers=args.teachers)
        else:  # a child per fold still to train (kept or finished folds start none)
            todo = [k for k in wanted if not fold_done(out, k)]
            if todo:
                _run_children(args, argv, todo, out)
    if args.fold and len(wanted) < len(folds):
        return 0
    report = summarize(out, threshold=cfg["eval"]["threshold"], bins=cfg["eval"]["auc_bins"])
    print(format_report(report, out.name))
    print(f"report: {out / 'report.json'}")
    if args.overlay:
        _write_overlays(cfg, out, args.overlay, report["thresholds"]["best"])
    return 0


def _write_overlays(cfg: dict, out: Path, ids: list[str], threshold: float) -> None:
    from utils.data.images import load_image
    from utils.data.pairs import find_pairs
    from utils.training.crossval import held_out_overlay
    from utils.visualize import write_png

    d = cfg["data"]
    pairs = {p.id: p for p in find_pairs(d["image_dir"], d["mask_dir"], progress=False).pairs}
    for face_id in ids:
        if face_id not in pairs:
            raise UserError(f"--overlay {face_id}: no image/mask pair of that id in "
                            f"{d['image_dir']}")
        dst = out / "overlays" / f"{face_id}.png"
        write_png(dst, held_out_overlay(out, face_id, load_image(pairs[face_id].image),
                                        threshold))
        print(f"written {dst} (threshold {threshold})")


def _run_children(args: argparse.Namespace, argv: list[str] | None, wanted: list[int],
                  out: Path) -> None:
    """Train folds in child processes, `args.jobs` at a time; each logs to fold<k>/log.txt."""
    from utils.training.crossval import next_batch

    base = _without(list(sys.argv[1:] if argv is None else argv),
                    {"-j", "--jobs", "--threads", "--fold"})
    pending, running, failed = list(wanted), {}, []
    cores = os.cpu_count() or 1
    started = time.time()
    while pending or running:
        batch, n = next_batch(pending, len(running), args.jobs, cores, args.threads)
        if batch:
            del pending[:len(batch)]
            for k in batch:
                log_path = out / f"fold{k}" / "log.txt"
                log_path.parent.mkdir(parents=True, exist_ok=True)
                cmd = [sys.executable, str(Path(__file__).resolve()), *base, "--fold", str(k),
                       "--threads", str(n), "--no-progress"]
                log = log_path.open("a", encoding="utf-8")
                running[k] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
                print(f"fold {k}: started ({n} threads), log {log_path}", flush=True)
        time.sleep(2)
        for k, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[k]
            minutes = (time.time() - started) / 60
            if proc.returncode == 0:
                print(f"fold {k}: done ({minutes:.1f} min since start)", flush=True)
            else:
                failed.append(k)
                print(f"fold {k}: failed (exit {proc.returncode}); see "
                      f"{out / f'fold{k}' / 'log.txt'}", flush=True)
    if failed:
        raise UserError(f"folds {failed} failed; rerun the same command to resume them")


def _without(argv: list[str], flags: set[str]) -> list[str]:
    """argv without the given flags and their values (both `--x v` and `--x=v`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in flags:
            skip = "=" not in a
            continue
        out.append(a)
    return out


if __name__ == "__main__":
    run_cli(main)
