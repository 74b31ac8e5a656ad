#!/usr/bin/env python
"""Wrinkle lines measured at two resolutions: each of the labelled faces' hand-drawn masks at
1024 px against the same mask max-pooled to 256 (as the bundled model learns and is scored),
lengths in the same face's units (their ratio needs no scale), and drawn lines of known length.

    python bench/bench_lines.py --out runs/bench_lines.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from bench.common import DATA, labelled_ids, run_cli, save
from utils.data.masks import read_mask, resize_mask
from utils.faces.lines import polyline_length, prune, simplify, thin


def total_length(mask: np.ndarray, spur_px: float) -> float:
    return sum(polyline_length(simplify(p)) for p, _, _ in prune(thin(mask), spur_px))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help=f"data folder (default {DATA})")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    ratios = {}
    for i in labelled_ids(args.data):
        full = read_mask(args.data / "manual_wrinkle_masks" / f"{i}.png")
        long = total_length(full, 4) / (full.shape[0] / 256)
        if long > 0:  # spurs under about 1 mm pruned at both sizes
            ratios[i] = total_length(resize_mask(full, (256, 256)), 1) / long
    dev = np.abs(np.array(list(ratios.values())) - 1)
    rng = np.random.default_rng(0)
    drawn = []
    for _ in range(200):
        img = np.zeros((300, 300), np.uint8)
        angle, length = rng.uniform(0, np.pi), rng.uniform(60, 220)
        d = np.array([np.cos(angle), np.sin(angle)]) * length / 2
        a, b = np.round(150 - d).astype(int), np.round(150 + d).astype(int)
        cv2.line(img, tuple(int(v) for v in a), tuple(int(v) for v in b), 1,
                 int(rng.integers(1, 4)))
        drawn.append(total_length(img.astype(bool), 1) / np.hypot(*(b - a)) - 1)
    res = {"faces": len(ratios), "ratio_256_over_1024_median": float(np.median(list(
        ratios.values()))), "deviation_median": float(np.median(dev)),
           "deviation_p90": float(np.percentile(dev, 90)), "per_face": ratios,
           "drawn_lines": len(drawn), "drawn_error_median": float(np.median(drawn)),
           "drawn_error_max_abs": float(np.max(np.abs(drawn)))}
    print(f"{res['faces']} faces: 256 px lengths / 1024 px lengths, median "
          f"{res['ratio_256_over_1024_median']:.3f}; per face |deviation| median "
          f"{100 * res['deviation_median']:.1f} %, 90th percentile "
          f"{100 * res['deviation_p90']:.1f} %")
    print(f"{len(drawn)} drawn lines of 60-220 px, 1-3 px wide: error median "
          f"{100 * res['drawn_error_median']:+.2f} %, worst {100 * res['drawn_error_max_abs']:.2f} %")
    save(res, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
