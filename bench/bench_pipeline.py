#!/usr/bin/env python
"""Where predict.py spends its time on a photo, stage by stage, against the model's own share.

Photos of 800-960 px (long side) are made from the labelled faces of ../shared (utils/faces/
photos.py: rolled, a 380-520 px face on a square or 4:3 canvas, an exposure change) and saved as
JPEG files. Measured, after a warm-up, in this one process:

- the folder run of predict.py (`predict_files`, one photo per call as in a folder of photos):
  seconds per photo and the seconds of each stage (decode, scale, detect, detect_second,
  landmarks, align, face_region, model, statistics, paste_back, write);
- `WrinklePredictor.predict` on the decoded photos against `predict_aligned` on the aligned
  faces themselves (the model and the statistics alone): their ratio is the pipeline's cost.

--save-masks FILE keeps the photos' masks, --compare-masks FILE compares this run's with them
(pixel agreement), so that a faster pipeline can show that it predicts the same.

    python bench/bench_pipeline.py --out runs/bench_pipeline.json
    python bench/bench_pipeline.py --limit 10 --save-masks runs/pipeline_masks.npz
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from bench.common import DATA, labelled_ids, run_cli, save
from utils.data.images import load_image
from utils.faces.photos import CANVASES, make_photo
from utils.inference.batch import predict_files
from utils.inference.predictor import WrinklePredictor
from utils.runtime import machine_facts, profile_stages


def make_photos(data: Path, n: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(id, photo 800-960 px long, the aligned face it was made from)."""
    ids = labelled_ids(data, n)
    out = []
    for k, i in enumerate(ids):
        face = load_image(data / "images256x256" / f"{i}.jpg")
        rgb = make_photo(face, seed + k, CANVASES[k % 2], face_px=(380, 520)).rgb
        long_side = np.random.default_rng(seed + k).uniform(800, 960)
        s = long_side / max(rgb.shape[:2])
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        out.append((i, rgb, face))
    return out


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help=f"data folder (default {DATA})")
    p.add_argument("--limit", type=int, default=20, help="photos to make (default 20)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes (the best is kept)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--save-masks", type=Path, help="keep this run's masks (.npz)")
    p.add_argument("--compare-masks", type=Path, help="compare the masks with a saved run's")
    args = p.parse_args(argv)
    if not (args.data / "manual_wrinkle_masks").is_dir():
        print(f"error: {args.data}: no manual_wrinkle_masks folder", file=sys.stderr)
        return 1
    photos = make_photos(args.data, args.limit, args.seed)
    predictor = WrinklePredictor()
    predictor.predict(photos[0][1])  # warm-up: compilation, caches
    n = len(photos)

    whole = best_of(lambda: [predictor.predict(rgb) for _, rgb, _ in photos], args.repeats) / n
    aligned = best_of(lambda: [predictor.predict_aligned(face) for _, _, face in photos],
                      args.repeats) / n
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i, rgb, _ in photos:
            cv2.imwrite(str(folder / f"{i}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
        runs = []
        for r in range(args.repeats):
            with profile_stages() as stages:
                t0 = time.perf_counter()
                predict_files(predictor, [str(folder)], Path(tmp) / f"out{r}", batch_size=1,
                              progress=False, log=lambda s: None)
                wall = time.perf_counter() - t0
            runs.append((wall, dict(stages)))
    wall, stages = min(runs, key=lambda x: x[0])
    per_stage = {k: round(v / n, 4) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])}
    masks = {i: predictor.predict(rgb).mask for i, rgb, _ in photos}
    res = {
        "photos": n, "photo_long_side_px": "800-960", "face_px": "380-520",
        "model": predictor.description,
        "seconds_per_photo": round(wall / n, 4),
        "model_seconds_per_photo": per_stage.get("model", 0.0),
        "stages_seconds_per_photo": per_stage,
        "stages_note": "decoding and face finding (a reader thread) and writing (a writer "
                       "thread) run beside the model, so the stages add up to more than the "
                       "wall time and the model's share includes waiting on a shared core",
        "predict_seconds_per_photo": round(whole, 4),
        "predict_aligned_seconds_per_face": round(aligned, 4),
        "predict_over_aligned": round(whole / aligned, 2),
        "method": f"best of {args.repeats} passes over the photos; stages from the best pass of "
                  "the folder run (predict_files, one photo per call)",
        "machine": machine_facts(),
    }
    if args.compare_masks:
        ref = np.load(args.compare_masks)
        agree = [float((ref[i] == m).mean()) for i, m in masks.items() if i in ref]
        res["mask_agreement_with"] = {"file": str(args.compare_masks), "mean": statistics.mean(
            agree), "worst": min(agree), "identical_photos": sum(a == 1.0 for a in agree)}
    if args.save_masks:
        args.save_masks.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save_masks, **masks)
    print(f"{n} photos of 800-960 px, {predictor.description}")
    print(f"predict.py folder run: {res['seconds_per_photo']:.3f} s/photo; "
          f"WrinklePredictor.predict {whole:.3f} s; predict_aligned {aligned:.3f} s "
          f"(ratio {res['predict_over_aligned']:.2f})")
    for k, v in per_stage.items():
        print(f"  {k:14} {v:.4f} s/photo")
    if "mask_agreement_with" in res:
        a = res["mask_agreement_with"]
        print(f"masks vs {a['file']}: mean agreement {100 * a['mean']:.4f} %, worst "
              f"{100 * a['worst']:.4f} %, {a['identical_photos']} of {n} identical")
    save(res, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
