#!/usr/bin/env python
"""Data-loader throughput per worker process: can decoding and augmenting 1024 px pairs feed a GPU?

The full FFHQ-Wrinkle data is 51,000 pairs of 1024x1024 PNGs. This measures, in ONE process
(num_workers=0, torch at 1 thread as in a DataLoader worker), the cost per pair of each stage of
WrinkleDataset: image decode (utils.data.images.load_image), image resize (recipe image_size),
mask read + binarise (utils.data.masks.read_mask), mask resize (utils.data.masks.resize_mask),
augmentation (build_augmentation with config.yaml defaults), uint8 planes (to_uint8_input; workers
do not normalise, the device does), and collation (default_collate, batch 8); then whole samples
(dataset[i] + collation), and optionally a DataLoader with --workers N.

Data: real faces from ../shared/data/ffhq-wrinkle-256 upscaled to 1024 and saved as PNG (as the
full data is stored), with their real 1024 masks; also the same pairs stored at 512. Built in a
temporary folder per run, or once in --data DIR and reused. A benchmark: it asserts nothing.

    python bench/bench_loader.py --out runs/bench_loader.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from bench.common import DATA, run_cli
from utils.config import load_config
from utils.data.dataset import (
    WrinkleDataset,
    build_augmentation,
    input_recipe,
    to_uint8_input,
)
from utils.data.images import load_image, resize_image
from utils.data.masks import mask_to_png, read_mask, resize_mask
from utils.data.pairs import Pair, find_pairs
from utils.io import write_json
from utils.runtime import machine_facts

BATCH = 8


# ---------------------------------------------------------------- data


def build_data(root: Path, n: int) -> None:
    """Write n real pairs as the full data stores them (1024 PNG), and the same stored at 512.

    Images are 256 JPEGs upscaled (bicubic) to 1024 and written with cv2.imwrite's default PNG
    compression; masks are the real 1024 PNGs (copied), and at 512 shrunk by the project's
    line-keeping rule. Existing files are kept, so --data DIR is built once.
    """
    masks = sorted((DATA / "manual_wrinkle_masks").glob("*.png"))[:n]
    if not masks:
        raise SystemExit(f"no real masks found under {DATA}; pass --data DIR with "
                         "images1024/ masks1024/ images512/ masks512/")
    dirs = {k: root / k for k in ("images1024", "masks1024", "images512", "masks512")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for m in masks:
        name = f"{m.stem}.png"
        if all((d / name).is_file() for d in dirs.values()):
            continue
        big = cv2.resize(load_image(DATA / "images256x256" / f"{m.stem}.jpg"), (1024, 1024),
                         interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(dirs["images1024"] / name), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
        shutil.copyfile(m, dirs["masks1024"] / name)
        small = resize_image(big, (512, 512))
        cv2.imwrite(str(dirs["images512"] / name), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(dirs["masks512"] / name),
                    mask_to_png(resize_mask(read_mask(m), (512, 512))))


def data_facts(root: Path, pairs: list[Pair]) -> dict[str, Any]:
    """File sizes, so the figures can be compared with the real data (FFHQ PNGs: ~1.3 MB)."""
    def mean_kb(folder: str) -> float:
        return round(statistics.mean((root / folder / p.image.name).stat().st_size
                                     for p in pairs) / 1024, 1)
    return {"pairs": len(pairs), "folder": str(root),
            "image_kb_1024": mean_kb("images1024"), "mask_kb_1024": mean_kb("masks1024"),
            "image_kb_512": mean_kb("images512"), "mask_kb_512": mean_kb("masks512"),
            "source": "ffhq-wrinkle-256 JPEGs upscaled bicubic to 1024, cv2.imwrite PNG; "
                      "real 1024 masks"}


# ---------------------------------------------------------------- timing


def best_of(times_per_pass: list[list[float]]) -> dict[str, float]:
    """ms per item: the best pass's mean (the CPU is shared: the best pass has the least noise)."""
    means = [statistics.mean(t) for t in times_per_pass]
    best = min(means) * 1000
    return {"ms": round(best, 3), "median_pass_ms": round(statistics.median(means) * 1000, 3),
            "per_s": round(1000 / best, 2) if best > 0 else float("inf")}


def call_times(fn: Callable[[Any], Any], items: list[Any]) -> list[float]:
    """One pass: seconds per call of fn on each item."""
    t = []
    for it in items:
        t0 = time.perf_counter()
        fn(it)
        t.append(time.perf_counter() - t0)
    return t


def interleaved(passes: int, **passes_of: Callable[[], list[float]]) -> dict[str, dict]:
    """Run one pass of each contender in turn, `passes` rounds (after a warm-up round), so all
    of them see the same background load; best pass of each."""
    runs: dict[str, list[list[float]]] = {k: [] for k in passes_of}
    for r in range(passes + 1):
        for k, one_pass in passes_of.items():
            t = one_pass()
            if r:
                runs[k].append(t)
    return {k: best_of(v) for k, v in runs.items()}


def time_calls(fn: Callable[[Any], Any], items: list[Any], passes: int) -> dict[str, float]:
    """Best-of-passes mean time per call of fn over items (after a warm-up pass)."""
    return interleaved(passes, fn=lambda: call_times(fn, items))["fn"]


def pipeline_stages(pairs: list[Pair], size: int, transform: A.Compose | None,
                    recipe: dict[str, Any], passes: int) -> list[dict[str, Any]]:
    """Time each stage of WrinkleDataset.__getitem__ in sequence, as the dataset runs them."""
    names = ["image decode", "image resize", "mask read+binarise", "mask resize",
             "augmentation", "uint8 planes (+ target)", f"collate (batch {BATCH}, per pair)"]
    runs: dict[str, list[list[float]]] = {k: [] for k in names}
    for _ in range(passes + 1):  # the first pass is a warm-up
        t: dict[str, list[float]] = {k: [] for k in names}
        samples = []
        for index, pair in enumerate(pairs):
            t0 = time.perf_counter()
            rgb = load_image(pair.image)
            t1 = time.perf_counter()
            rgb = resize_image(rgb, (size, size))
            t2 = time.perf_counter()
            mask = read_mask(pair.mask)
            t3 = time.perf_counter()
            mask = resize_mask(mask, rgb.shape[:2])
            t4 = time.perf_counter()
            if transform is not None:
                transform.set_random_seed(index)
                out = transform(image=rgb, masks=[mask.astype(np.uint8)])
                rgb, mask = out["image"], out["masks"][0].astype(bool)
            t5 = time.perf_counter()
            x = to_uint8_input(rgb, recipe)
            y = torch.from_numpy(mask[None].astype(np.uint8))
            t6 = time.perf_counter()
            samples.append({"image": x, "mask": y, "id": pair.id})
            for k, a, b in zip(names[:-1], (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6),
                               strict=True):
                t[k].append(b - a)
        for i in range(0, len(samples) - BATCH + 1, BATCH):
            t0 = time.perf_counter()
            default_collate(samples[i:i + BATCH])
            t[names[-1]] += [(time.perf_counter() - t0) / BATCH] * BATCH
        for k in names:
            runs[k].append(t[k])
    rows = [{"stage": k, **best_of(runs[k][1:])} for k in names]
    total = sum(r["ms"] for r in rows)
    rows.append({"stage": "sum of stages", "ms": round(total, 3), "median_pass_ms": None,
                 "per_s": round(1000 / total, 2)})
    return rows


def whole_pass(ds: WrinkleDataset) -> list[float]:
    """One pass of dataset[i] + default_collate per batch: seconds per pair."""
    t = []
    batch = []
    for i in range(len(ds)):
        t0 = time.perf_counter()
        batch.append(ds[i])
        if len(batch) == BATCH:
            default_collate(batch)
            batch = []
        t.append(time.perf_counter() - t0)
    return t


def whole_sample(ds: WrinkleDataset, passes: int) -> dict[str, float]:
    """Pairs/s of dataset[i] + default_collate in batches, in this one process."""
    return interleaved(passes, ds=lambda: whole_pass(ds))["ds"]


def loader_rate(ds: WrinkleDataset, workers: int, batches: int) -> dict[str, Any]:
    """Pairs/s of a DataLoader with `workers` processes, after its first batch (start-up)."""
    repeat = max(1, (batches + 1) * BATCH // len(ds) + 1)
    big = WrinkleDataset(ds.pairs * repeat, ds.recipe, ds.transform)
    dl = DataLoader(big, batch_size=BATCH, num_workers=workers, shuffle=False)
    it = iter(dl)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += next(it)["image"].shape[0]
    dt = time.perf_counter() - t0
    del it
    return {"workers": workers, "pairs": n, "pairs_per_s": round(n / dt, 2),
            "ms_per_pair": round(dt / n * 1000, 2)}


# ---------------------------------------------------------------- main


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Stage, ms per pair, pairs per second."""
    print(f"\n{title}\n  {'stage':34s} {'ms/pair':>9s} {'pairs/s':>9s}")
    for r in rows:
        print(f"  {r['stage']:34s} {r['ms']:9.2f} {r['per_s']:9.1f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_loader.json", help="JSON output file")
    p.add_argument("--data", type=Path, default=None,
                   help="folder to build (once) and reuse the test pairs in; default: a temp dir")
    p.add_argument("-n", "--pairs", type=int, default=16, help="pairs to build and time")
    p.add_argument("--passes", type=int, default=4, help="timed passes per measurement (best kept)")
    p.add_argument("--workers", type=int, default=0,
                   help="also time a DataLoader with this many worker processes (0 = skip)")
    p.add_argument("--cv2-threads", type=int, default=None,
                   help="cv2.setNumThreads for the main measurements (default: OpenCV's own)")
    args = p.parse_args()

    torch.set_num_threads(1)  # as in a DataLoader worker
    if args.cv2_threads is not None:
        cv2.setNumThreads(args.cv2_threads)
    tmp = None
    root = args.data
    if root is None:
        tmp = tempfile.mkdtemp(prefix="bench_loader_")
        root = Path(tmp)
    try:
        t0 = time.perf_counter()
        build_data(root, args.pairs)
        print(f"data: {args.pairs} pairs in {root} ({time.perf_counter() - t0:.1f} s to build)")
        pairs = find_pairs(root / "images1024", root / "masks1024", progress=False).pairs
        pairs = pairs[:args.pairs]
        pairs512 = find_pairs(root / "images512", root / "masks512", progress=False).pairs
        pairs512 = pairs512[:args.pairs]
        cfg = load_config()
        tf = build_augmentation(cfg["augment"])
        facts = data_facts(root, pairs)
        print(f"  mean file sizes: image {facts['image_kb_1024']} KB / mask "
              f"{facts['mask_kb_1024']} KB at 1024; {facts['image_kb_512']} / "
              f"{facts['mask_kb_512']} KB at 512")

        stages: dict[str, list[dict[str, Any]]] = {}
        whole: dict[str, dict[str, Any]] = {}
        settings = [("1024", pairs, 1024), ("512", pairs, 512), ("512 stored", pairs512, 512)]
        for label, prs, size in settings:
            recipe = input_recipe(load_config(overrides={"data.image_size": size}))
            stages[label] = pipeline_stages(prs, size, tf, recipe, args.passes)
            print_table(f"{label} ({'files at 512' if 'stored' in label else '1024 files'}, "
                        f"training size {size}, one process)", stages[label])
            w = whole_sample(WrinkleDataset(prs, recipe, tf), args.passes)
            whole[label] = {"ms_per_pair": w["ms"], "pairs_per_s": w["per_s"],
                            "median_pass_ms": w["median_pass_ms"]}
            print(f"  {'whole sample (dataset[i]+collate)':34s} {w['ms']:9.2f} {w['per_s']:9.1f}")
            if args.workers:
                r = loader_rate(WrinkleDataset(prs, recipe, tf), args.workers, batches=8)
                whole[label]["dataloader"] = r
                print(f"  DataLoader, {args.workers} workers: {r['pairs_per_s']:.1f} pairs/s "
                      f"(this machine: {os.cpu_count()} CPUs, shared)")

        result: dict[str, Any] = {
            "machine": machine_facts() | {"cv2_threads": cv2.getNumThreads(),
                                          "albumentations": A.__version__},
            "data": facts,
            "method": "one process; per stage the best of --passes passes of the mean over the "
                      "pairs (the CPU is shared); augmentation seeded per index (same draws each "
                      "pass); collate cost split over the batch",
            "stages": stages, "whole_sample": whole}
        write_json(args.out, result)
        print(f"\nwritten {args.out}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
