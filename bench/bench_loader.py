#!/usr/bin/env python
"""Data-loader throughput per worker process: can decoding and augmenting 1024 px pairs feed a GPU?

The full FFHQ-Wrinkle data is 51,000 pairs of 1024x1024 PNGs. This measures, in ONE process
(num_workers=0, torch at 1 thread as in a DataLoader worker), the cost per pair of each stage of
WrinkleDataset: image decode (utils.images.load_image), image resize (recipe image_size), mask
read + binarise (utils.masks.read_mask), mask resize (utils.masks.resize_mask), augmentation
(build_augmentation with config.yaml defaults), uint8 planes (to_uint8_input; workers do not
normalise, the device does), and collation (default_collate, batch 8);
then whole samples (dataset[i] + collation), optionally a DataLoader with --workers N, and cheap
candidate speedups prototyped here (utils/ is not touched) with their gain and output agreement.

Data: real faces from ../shared/data/ffhq-wrinkle-256 upscaled to 1024 and saved as PNG (as the
full data is stored), with their real 1024 masks; also the same pairs stored at 512. Built in a
temporary folder per run, or once in --data DIR and reused. A benchmark: it asserts nothing.

    python bench/bench_loader.py --out runs/bench_loader.json
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, default_collate  # noqa: E402

import utils.dataset as dataset_mod  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.dataset import (  # noqa: E402
    WrinkleDataset,
    build_augmentation,
    input_recipe,
    normalize_input,
    to_input,
    to_uint8_input,
)
from utils.images import load_image, resize_image  # noqa: E402
from utils.io import write_json  # noqa: E402
from utils.masks import binarize_mask, mask_to_png, read_mask, resize_mask  # noqa: E402
from utils.pairs import Pair, find_pairs  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "ffhq-wrinkle-256"
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


# ---------------------------------------------------------------- candidate speedups


def is_png(data: bytes) -> bool:
    """A PNG with a whole IHDR chunk (bit depth at byte 24, colour type at byte 25)."""
    return len(data) > 33 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"


def fast_load_image(path: str | Path) -> np.ndarray:
    """load_image's decode with cv2.cvtColor for BGR->RGB instead of a reversed-stride copy."""
    data = Path(path).read_bytes()
    if not (is_png(data) and data[24] == 8 and data[25] in (2, 6)):
        return load_image(path)  # only 8-bit RGB(A) PNGs take the fast path here
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGB)


def reduced_load_image(path: str | Path) -> np.ndarray:
    """Decode and halve in one call (cv2.IMREAD_REDUCED_COLOR_2): 512 training from 1024 files."""
    arr = cv2.imdecode(np.frombuffer(Path(path).read_bytes(), np.uint8),
                       cv2.IMREAD_REDUCED_COLOR_2)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def fast_read_mask(path: str | Path) -> np.ndarray:
    """read_mask with an OpenCV decode for 8-bit grey PNGs (the data set's format), else PIL."""
    data = Path(path).read_bytes()
    # PNG IHDR: bit depth at byte 24, colour type at 25 (0 = grey). Palette, colour, alpha and
    # low-bit-depth masks keep the PIL path, which implements the rule for them.
    if is_png(data) and data[24] == 8 and data[25] == 0:
        values = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if values is not None and values.ndim == 2:
            return binarize_mask(values)
    return read_mask(path)


def fast_resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """resize_mask with every shrink on its cv2 INTER_AREA coverage path (the one it already
    uses for non-integer factors) instead of numpy reshape + any for integer factors: the same
    any-coverage rule (one wrinkle pixel in f x f gives 1/f^2 > 1e-6), SIMD instead of numpy."""
    h, w = size
    mh, mw = mask.shape[:2]
    if h <= mh and w <= mw and (h, w) != (mh, mw):
        cover = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        return cover > 1e-6
    return resize_mask(mask, size)


@contextmanager
def patched(**funcs: Callable[..., Any]) -> Any:
    """Swap functions in utils.dataset for the duration (prototype only; utils/ is not edited)."""
    old = {k: getattr(dataset_mod, k) for k in funcs}
    for k, f in funcs.items():
        setattr(dataset_mod, k, f)
    try:
        yield
    finally:
        for k, f in old.items():
            setattr(dataset_mod, k, f)


def compare(name: str, change: str, base: Callable[[Any], Any], cand: Callable[[Any], Any],
            items: list[Any], passes: int, same: Callable[[Any, Any], str]) -> dict[str, Any]:
    """Time a candidate against the baseline on the same items (passes interleaved), and check
    that their outputs agree on every item."""
    r = interleaved(passes, base=lambda: call_times(base, items),
                    cand=lambda: call_times(cand, items))
    b, c = r["base"], r["cand"]
    verdicts = {same(base(it), cand(it)) for it in items}
    agreement = "identical" if verdicts == {"identical"} else "; ".join(sorted(verdicts))[:200]
    row = {"candidate": name, "baseline_ms": b["ms"], "candidate_ms": c["ms"],
           "saved_ms": round(b["ms"] - c["ms"], 3), "speedup": round(b["ms"] / c["ms"], 2),
           "outputs": agreement, "change": change}
    print(f"  {name:46s} {b['ms']:7.2f} -> {c['ms']:7.2f} ms  x{row['speedup']:<5} {agreement}",
          flush=True)
    return row


def equal(a: Any, b: Any) -> str:
    """'identical' or the largest difference, for arrays, tensors or dicts of them."""
    if isinstance(a, dict):
        return "; ".join(f"{k}: {equal(a[k], b[k])}" for k in ("image", "mask"))
    a = a.numpy() if isinstance(a, torch.Tensor) else a
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    if a.shape != b.shape:
        return f"shapes differ {a.shape} vs {b.shape}"
    if np.array_equal(a, b):
        return "identical"
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return f"max |diff| {d.max():.4g}, {np.mean(d > 0) * 100:.2f}% of values differ"


def candidates(root: Path, pairs: list[Pair], cfg: dict[str, Any], passes: int) -> list[dict]:
    """Measure the cheap wins found in the hot stages, each against the current code."""
    rows = []
    imgs = [p.image for p in pairs]
    masks = [p.mask for p in pairs]
    imgs512 = [root / "images512" / p.image.name for p in pairs]
    print("\ncandidate speedups (ms per pair, best pass; outputs vs the current code)")
    rows.append(compare(
        "decode 1024: cv2.cvtColor for BGR->RGB", "utils/images.py to_rgb_uint8",
        load_image, fast_load_image, imgs, passes, equal))
    rows.append(compare(
        "decode 512 stored: cv2.cvtColor", "utils/images.py to_rgb_uint8",
        load_image, fast_load_image, imgs512, passes, equal))
    rows.append(compare(
        "512 from 1024 file: IMREAD_REDUCED_COLOR_2", "utils/dataset.py WrinkleDataset.load",
        lambda p: resize_image(load_image(p), (512, 512)), reduced_load_image, imgs, passes,
        equal))
    rows.append(compare(
        "mask read 1024: cv2 for 8-bit grey PNG", "utils/masks.py mask_values",
        read_mask, fast_read_mask, masks, passes, equal))
    m1024 = [read_mask(m) for m in masks]
    for size in (512, 256):
        rows.append(compare(
            f"mask resize 1024->{size}: cv2 INTER_AREA coverage", "utils/masks.py resize_mask",
            lambda m, s=size: resize_mask(m, (s, s)),
            lambda m, s=size: fast_resize_mask(m, (s, s)), m1024, passes, equal))
    recipe = input_recipe(cfg)
    for size in (1024, 512):
        rgbs = [cv2.resize(load_image(p), (size, size), interpolation=cv2.INTER_AREA)
                for p in imgs[:BATCH]]
        ms = [np.zeros((size, size), bool) for _ in rgbs]

        def float_batch(_: Any, rgbs: list = rgbs, ms: list = ms) -> Any:
            return default_collate([{"image": to_input(r, recipe),
                                     "mask": torch.from_numpy(m[None].astype(np.float32))}
                                    for r, m in zip(rgbs, ms, strict=True)])

        def uint8_batch(_: Any, rgbs: list = rgbs, ms: list = ms) -> Any:
            return default_collate([{"image": to_uint8_input(r, recipe),
                                     "mask": torch.from_numpy(m[None].view(np.uint8))}
                                    for r, m in zip(rgbs, ms, strict=True)])

        batch8 = uint8_batch(0)
        same = equal(float_batch(0)["image"], normalize_input(batch8["image"], recipe))

        r = interleaved(passes * 2, base=lambda f=float_batch: call_times(f, [0]),
                        cand=lambda f=uint8_batch: call_times(f, [0]))
        b, c = r["base"], r["cand"]
        row = {"candidate": f"samples+collate {size} (batch {BATCH}): float in the worker "
                            "(before) vs uint8, normalised on the device (now)",
               "baseline_ms": round(b["ms"] / BATCH, 3), "candidate_ms": round(c["ms"] / BATCH, 3),
               "saved_ms": round((b["ms"] - c["ms"]) / BATCH, 3),
               "speedup": round(b["ms"] / c["ms"], 2),
               "outputs": f"input after normalize_input: {same}; mask as uint8 0/1",
               "change": "adopted: utils/dataset.py to_uint8_input + batch_to_device"}
        print(f"  {row['candidate']:44s} {row['baseline_ms']:8.2f} -> {row['candidate_ms']:8.2f} ms"
              f"  x{row['speedup']}  {row['outputs']}", flush=True)
        rows.append(row)
    # Augmentation: cost of each transform when it fires (p=1), and its expected share.
    for size in (1024, 512):
        rgbs = [cv2.resize(load_image(p), (size, size), interpolation=cv2.INTER_AREA)
                for p in imgs[:4]]
        mks = [np.zeros((size, size), np.uint8) for _ in rgbs]
        items = list(zip(rgbs, mks, strict=True))
        for t, p_fire in augmentation_parts(cfg["augment"]):
            one = A.Compose([t], mask_interpolation=cv2.INTER_NEAREST)
            one.set_random_seed(0)
            r = time_calls(lambda im, one=one: one(image=im[0], masks=[im[1]]), items, passes)
            rows.append({"candidate": f"augment {size}: {type(t).__name__} (when it fires)",
                         "baseline_ms": r["ms"], "fires": round(p_fire, 3),
                         "expected_ms": round(r["ms"] * p_fire, 3), "change": "(breakdown)"})
            print(f"  augment {size}: {type(t).__name__:26s} {r['ms']:8.2f} ms when it fires, "
                  f"p={p_fire:.2f}, expected {r['ms'] * p_fire:6.2f} ms", flush=True)
        for scale in (0.5, 0.25):
            fast = A.Compose([A.GaussNoise(std_range=(0.01, 0.03), noise_scale_factor=scale, p=1)])
            slow = A.Compose([A.GaussNoise(std_range=(0.01, 0.03), p=1)])
            rows.append(compare(
                f"GaussNoise {size}: noise_scale_factor={scale}",
                "utils/dataset.py build_augmentation", lambda im, a=slow: a(image=im[0])["image"],
                lambda im, a=fast: a(image=im[0])["image"], items, passes,
                lambda a, b: "different noise (lower-resolution noise map)"))
    return rows


def augmentation_parts(aug: dict[str, Any]) -> list[tuple[A.BasicTransform, float]]:
    """The default augmentation's transforms with p=1, and how often each fires per sample."""
    compose = build_augmentation(aug)
    parts: list[tuple[A.BasicTransform, float]] = []
    if compose is None:
        return parts
    for t in compose.transforms:
        if isinstance(t, A.OneOf):
            for child in t.transforms:
                child.p = 1.0
                parts.append((child, t.p / len(t.transforms)))
        else:
            p, t.p = t.p, 1.0
            parts.append((t, p))
    return parts


def whole_with_candidates(pairs: list[Pair], pairs512: list[Pair], cfg: dict[str, Any],
                          passes: int) -> list[dict[str, Any]]:
    """Whole-sample rates with the candidates patched in together, against the current code."""
    tf = build_augmentation(cfg["augment"])
    settings = [("1024", pairs, 1024), ("512 from 1024 files", pairs, 512),
                ("512 stored", pairs512, 512)]
    rows = []
    print("\nwhole sample (dataset[i] + collate): current code vs candidates patched in")
    for label, prs, size in settings:
        recipe = input_recipe(load_config(overrides={"data.image_size": size}))
        loader = reduced_load_image if (size == 512 and label.endswith("1024 files")) \
            else fast_load_image
        ds = WrinkleDataset(prs, recipe, tf)

        def fast_pass(ds: WrinkleDataset = ds, loader: Callable = loader) -> list[float]:
            with patched(load_image=loader, read_mask=fast_read_mask,
                         resize_mask=fast_resize_mask):
                return whole_pass(ds)

        r = interleaved(passes, base=lambda ds=ds: whole_pass(ds), fast=fast_pass)
        base, fast = r["base"], r["fast"]
        with patched(load_image=loader, read_mask=fast_read_mask,
                     resize_mask=fast_resize_mask):
            patched_items = [ds[i] for i in range(len(ds))]
        verdicts = {equal(ds[i], patched_items[i]) for i in range(len(ds))}
        row = {"setting": label, "current_ms": base["ms"], "current_pairs_per_s": base["per_s"],
               "candidates_ms": fast["ms"], "candidates_pairs_per_s": fast["per_s"],
               "speedup": round(base["ms"] / fast["ms"], 2),
               "samples": "; ".join(sorted(verdicts))[:200]}
        print(f"  {label:22s} {base['ms']:8.2f} ms ({base['per_s']:6.1f}/s) -> "
              f"{fast['ms']:8.2f} ms ({fast['per_s']:6.1f}/s)  x{row['speedup']}  "
              f"samples {row['samples']}", flush=True)
        rows.append(row)
    return rows


def cv2_threads_effect(pairs: list[Pair], cfg: dict[str, Any], passes: int) -> list[dict]:
    """Whole-sample rate at 1024 with OpenCV's own thread pool at its default, 1 and 0 threads."""
    before = cv2.getNumThreads()
    recipe = input_recipe(load_config(overrides={"data.image_size": 1024}))
    ds = WrinkleDataset(pairs, recipe, build_augmentation(cfg["augment"]))

    def with_threads(n: int) -> list[float]:
        cv2.setNumThreads(n)
        try:
            return whole_pass(ds)
        finally:
            cv2.setNumThreads(before)

    settings = {f"t{n}": n for n in dict.fromkeys((before, 1, 0))}
    res = interleaved(passes, **{k: (lambda n=n: with_threads(n)) for k, n in settings.items()})
    rows = []
    for k, n in settings.items():
        rows.append({"cv2_threads": n, "ms": res[k]["ms"], "pairs_per_s": res[k]["per_s"]})
        print(f"  cv2.setNumThreads({n}): {res[k]['ms']:8.2f} ms/pair ({res[k]['per_s']:.1f}/s) "
              "at 1024", flush=True)
    return rows


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
    p.add_argument("--no-candidates", action="store_true", help="skip the candidate speedups")
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
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "cv2": cv2.__version__, "cv2_threads": cv2.getNumThreads(),
                        "torch_threads": torch.get_num_threads(), "torch": str(torch.__version__),
                        "albumentations": A.__version__, "numpy": np.__version__},
            "data": facts,
            "method": "one process; per stage the best of --passes passes of the mean over the "
                      "pairs (the CPU is shared); augmentation seeded per index (same draws each "
                      "pass); collate cost split over the batch",
            "stages": stages, "whole_sample": whole}
        if not args.no_candidates:
            result["candidates"] = candidates(root, pairs, cfg, args.passes)
            result["whole_sample_with_candidates"] = whole_with_candidates(
                pairs, pairs512, cfg, args.passes)
            print("\nOpenCV threads (whole sample, one process)")
            result["cv2_threads"] = cv2_threads_effect(pairs, cfg, args.passes)
        write_json(args.out, result)
        print(f"\nwritten {args.out}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
