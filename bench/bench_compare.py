#!/usr/bin/env python
"""What the before/after comparison measures when nothing changed, and when wrinkles go.

On the labelled faces of ../shared/data/ffhq-wrinkle-256, each face is made into photos the way
bench/bench_wild.py does (utils/faces/photos.py: rotated up to +-25 degrees, rescaled, on a backdrop,
exposure changed; fixed seeds), and the photos go through compare.py's library path:

- noise: two different photos of the same face. The per-region change of wrinkle share is what
  the method measures on an unchanged face; its 95th percentile (of |change|) is the noise band.
- response: the same face with its annotated wrinkles removed (OpenCV inpainting along the manual
  mask, max-pooled to 256 and dilated by a pixel), photographed differently again. Reported: the
  share of faces on which the comparison finds a decrease (beyond the band, and at all) and the
  median change per region.
- identity: the landmark-geometry distance (utils.compare.shape_distance) between two photos of
  one face, and between photos of two different faces; the largest same-face distance becomes
  the threshold of the "different people?" warning.

    python bench/bench_compare.py --out runs/bench_compare.json --write-noise
    python bench/bench_compare.py --limit 20 --out runs/bench_compare_quick.json

--write-noise stores the band and the threshold in docs/compare_noise.json, which compare.py and
the app read. The faces are ones the bundled model mostly trained on: the band is a figure of the
method's repeatability, not of its accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
from tqdm import tqdm

from bench.common import DATA, run_cli, save
from utils.compare import NOISE_FILE, REGIONS, compare_faces, shape_distance
from utils.data.images import load_image
from utils.data.masks import read_mask, resize_mask
from utils.errors import UserError
from utils.faces.photos import CANVASES, make_photo
from utils.inference.predictor import WrinklePredictor
from utils.io import write_json
from utils.runtime import machine_facts

IDENTITY_PERCENTILE = 99
NO_NOISE = {"band": dict.fromkeys(REGIONS, 0.0), "identity_threshold": float("inf")}


def inpaint_wrinkles(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The face with its annotated wrinkles painted out (the mask dilated by a pixel)."""
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
    return cv2.inpaint(rgb, grown, 3, cv2.INPAINT_TELEA)


def photo_pair(rgb: np.ndarray, other: np.ndarray, i: int, seed: int,
               backdrop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two differently taken photos: `rgb` one way, `other` (the same face, or a changed one)
    another way (another seed and canvas)."""
    a = make_photo(rgb, seed + 1000 * i, CANVASES[i % 2], backdrop).rgb
    b = make_photo(other, seed + 1000 * i + 500, CANVASES[(i + 1) % 2], backdrop).rgb
    return a, b


def _spread(values: np.ndarray) -> dict[str, float]:
    """Count, extremes and percentiles of a distribution of landmark distances."""
    out = {"pairs": len(values), "min": float(values.min()), "max": float(values.max())}
    return out | {f"p{q}": float(np.percentile(values, q)) for q in (1, 5, 25, 50, 75, 95, 99)}


def measure(data: Path, limit: int | None, checkpoint: str | None, seed: int,
            progress: bool = True) -> dict:
    masks = sorted((data / "manual_wrinkle_masks").glob("*.png"))[:limit]
    if len(masks) < 2:
        raise SystemExit(f"error: fewer than two manual masks under {data}")
    labelled = {m.stem for m in masks}
    backdrops = [p for p in sorted((data / "images256x256").glob("*.jpg"))
                 if p.stem not in labelled][:50]
    predictor = WrinklePredictor(checkpoint, faces="largest")
    same: dict[str, list[float]] = {r: [] for r in REGIONS}
    gone: dict[str, list[float]] = {r: [] for r in REGIONS}
    same_dist, other_dist, missed = [], [], []
    firsts = []
    for i, mask_path in enumerate(tqdm(masks, desc="faces", disable=not progress,
                                       file=sys.stderr)):
        rgb = load_image(data / "images256x256" / f"{mask_path.stem}.jpg")
        truth = resize_mask(read_mask(mask_path), rgb.shape[:2])
        backdrop = load_image(backdrops[i % len(backdrops)]) if backdrops else rgb
        a, b = photo_pair(rgb, rgb, i, seed, backdrop)
        _, c = photo_pair(rgb, inpaint_wrinkles(rgb, truth), i, seed, backdrop)
        try:
            fa, fb, fc = (predictor.predict(p).faces[0] for p in (a, b, c))
        except UserError:
            missed.append(mask_path.stem)
            continue
        firsts.append(fa)
        noise = compare_faces(["a", "b"], [fa, fb], NO_NOISE)
        change = compare_faces(["a", "c"], [fa, fc], NO_NOISE)
        for r in REGIONS:
            same[r].append(noise.row(r, 1)["change_share"])
            gone[r].append(change.row(r, 1)["change_share"])
        same_dist.append(noise.identity_distance[0])
    for j in range(len(firsts)):  # every pair of two different faces
        other_dist += [shape_distance(firsts[j], firsts[k]) for k in range(j + 1, len(firsts))]
    band = {r: float(np.percentile(np.abs(same[r]), 95)) for r in REGIONS}
    response = {}
    for r in REGIONS:
        g = np.array(gone[r])
        response[r] = {"decrease_beyond_band": float(np.mean(g < -band[r])),
                       "decrease": float(np.mean(g < 0)),
                       "median_change": float(np.median(g)),
                       "median_noise_change": float(np.median(same[r]))}
    sd, od = np.array(same_dist), np.array(other_dist)
    # The warning's threshold: a margin below the largest same-face distance (its 99th
    # percentile), so that different people just above the same-face range are still flagged.
    threshold = float(np.percentile(sd, IDENTITY_PERCENTILE))
    return {
        "model": predictor.description, "faces": len(firsts), "missed": missed, "seed": seed,
        "band": band,
        "noise": {r: {"median": float(np.median(same[r])),
                      "p95_abs": band[r], "max_abs": float(np.max(np.abs(same[r])))}
                  for r in REGIONS},
        "response": response,
        "identity": {"same_face": _spread(sd), "different_faces": _spread(od),
                     "threshold": threshold,
                     "rule": f"{IDENTITY_PERCENTILE}th percentile of the same-face distances",
                     "same_face_flagged": float(np.mean(sd > threshold)),
                     "different_faces_flagged": float(np.mean(od > threshold)),
                     "same_face_percentiles": np.percentile(sd, np.arange(101)).tolist(),
                     "different_faces_percentiles": np.percentile(od, np.arange(101)).tolist()},
        "machine": machine_facts(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  python bench/bench_compare.py --out runs/bench_compare.json --write-noise\n  python bench/bench_compare.py --limit 20")
    p.add_argument("--data", type=Path, default=DATA, help=f"data folder (default {DATA})")
    p.add_argument("--limit", type=int, help="only the first N labelled faces")
    p.add_argument("-m", "--checkpoint", help="wrinkle model (default: the bundled one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the photo transforms")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--write-noise", action="store_true",
                   help=f"store the noise band and identity threshold in {NOISE_FILE}")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if not (args.data / "manual_wrinkle_masks").is_dir():
        print(f"error: {args.data}: no manual_wrinkle_masks folder", file=sys.stderr)
        return 1
    res = measure(args.data, args.limit, args.checkpoint, args.seed, not args.no_progress)
    print(f"{res['model']}: {res['faces']} faces ({len(res['missed'])} without a face found)")
    print("region               noise band  decrease (beyond band)  median change  "
          "median change, same face")
    for r in REGIONS:
        d = res["response"][r]
        print(f"{r:20} {100 * res['band'][r]:9.2f}  {100 * d['decrease']:8.0f} % "
              f"({100 * d['decrease_beyond_band']:3.0f} %)  {100 * d['median_change']:+12.2f}  "
              f"{100 * d['median_noise_change']:+10.2f}")
    ident = res["identity"]
    for key in ("same_face", "different_faces"):
        s = ident[key]
        print(f"landmark distance, {key.replace('_', ' ')} ({s['pairs']} pairs): min "
              f"{s['min']:.4f}, p5 {s['p5']:.4f}, median {s['p50']:.4f}, p95 {s['p95']:.4f}, "
              f"p99 {s['p99']:.4f}, max {s['max']:.4f}")
    print(f"identity threshold {ident['threshold']:.4f} ({ident['rule']}): flags "
          f"{100 * ident['same_face_flagged']:.1f} % of same-face pairs and "
          f"{100 * ident['different_faces_flagged']:.1f} % of different-face pairs")
    print("(shares and changes in points of wrinkle share: 100 x wrinkle px / region px)")
    save(res, args.out)
    if args.write_noise:
        write_json(NOISE_FILE, {"band": res["band"], "identity_threshold": ident["threshold"],
                                "identity": {k: ident[k] for k in (
                                    "rule", "same_face_percentiles",
                                    "different_faces_percentiles")},
                                "faces": res["faces"], "seed": res["seed"], "model": res["model"],
                                "measured_by": "python bench/bench_compare.py --write-noise"})
        print(f"noise band written to {NOISE_FILE}")
    return 0


if __name__ == "__main__":
    run_cli(main)
