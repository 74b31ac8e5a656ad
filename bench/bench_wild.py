#!/usr/bin/env python
"""Photos as people take them: does the predictor see the face as well as in its FFHQ frame?

From each labelled face in ../shared/data/ffhq-wrinkle-256 (256 px, FFHQ-aligned), two photos are
made (utils/faces/photos.py, fixed seeds): the face rotated by up to +-25 degrees, its FFHQ square 320-520
px, on a square and on a 4:3 canvas of blurred backdrop, with an exposure change. Each photo goes
through predict.py's library path (the largest face). Its mask is mapped back to the aligned frame
through the known transform and scored against the manual mask (pooled F1 at 256, masks
max-pooled from 1024): "wild". The control is the model's prediction on the aligned face itself,
sent through the same two warps (into the photo and back): what resampling alone costs.

Printed and saved (JSON): photos, faces found, the right face found (its square within a tenth of
a side of the true one), F1 wild, F1 control and their ratio, per canvas; seconds per photo.

    python bench/bench_wild.py --out runs/bench_wild.json
    python bench/bench_wild.py --limit 20 --out runs/bench_wild_quick.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm import tqdm

from bench.common import DATA, run_cli, save
from utils.data.images import load_image
from utils.data.masks import read_mask, resize_mask
from utils.errors import UserError
from utils.faces.photos import CANVASES, make_photo
from utils.inference.predictor import WrinklePredictor
from utils.runtime import machine_facts

SIZE = 256


def _found(result: object, photo: object) -> tuple[bool, bool]:
    """(a face was found, it is the annotated one: its square within a tenth of a side)."""
    if not result.faces or result.faces[0].box is None:
        return False, False
    err = np.abs(result.faces[0].alignment.quad - photo_quad(photo)).max() / photo.face_px
    return True, bool(err < 0.1)


def photo_quad(photo: object) -> np.ndarray:
    """Where the source face's FFHQ square (its whole frame) lies in the photo."""
    s = photo.source_size
    corners = np.array([[0, 0], [0, s], [s, s], [s, 0]], dtype=np.float64) - 0.5
    return corners @ photo.matrix[:, :2].T + photo.matrix[:, 2] + 0.5


def _counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.array([(pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()])


def _f1(c: np.ndarray) -> float:
    tp, fp, fn = c
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def measure(data: Path, limit: int | None, checkpoint: str | None, seed: int,
            progress: bool = True) -> dict:
    masks = sorted((data / "manual_wrinkle_masks").glob("*.png"))[:limit]
    if not masks:
        raise SystemExit(f"error: no manual masks under {data}")
    labelled = {m.stem for m in masks}
    backdrops = [p for p in sorted((data / "images256x256").glob("*.jpg"))
                 if p.stem not in labelled][:50] or [data / "images256x256" / f"{masks[0].stem}.jpg"]
    predictor = WrinklePredictor(checkpoint, faces="largest")
    per = {c: {"photos": 0, "found": 0, "right_face": 0, "wild": np.zeros(3, np.int64),
               "control": np.zeros(3, np.int64), "seconds": []} for c in CANVASES}
    bar = tqdm(total=len(masks) * len(CANVASES), desc="wild photos", disable=not progress,
               file=sys.stderr)
    for i, mask_path in enumerate(masks):
        face = load_image(data / "images256x256" / f"{mask_path.stem}.jpg")
        truth = resize_mask(read_mask(mask_path), (SIZE, SIZE))
        aligned = predictor.predict_aligned(face).mask
        backdrop = load_image(backdrops[i % len(backdrops)])
        for j, canvas in enumerate(CANVASES):
            photo = make_photo(face, seed + 1000 * i + j, canvas, backdrop)
            t0 = time.perf_counter()
            try:
                result = predictor.predict(photo.rgb)
            except UserError:  # no face found: nothing predicted
                result = None
            per[canvas]["seconds"].append(time.perf_counter() - t0)
            found, right = (False, False) if result is None else _found(result, photo)
            photo_mask = np.zeros(photo.rgb.shape[:2], bool) if result is None else result.mask
            wild = photo.to_aligned(photo_mask, SIZE)
            control = photo.to_aligned(photo.from_aligned(aligned), SIZE)
            d = per[canvas]
            d["photos"] += 1
            d["found"] += found
            d["right_face"] += right
            d["wild"] += _counts(wild, truth)
            d["control"] += _counts(control, truth)
            bar.update(1)
    bar.close()
    out = {}
    for canvas, d in per.items():
        f1w, f1c = _f1(d["wild"]), _f1(d["control"])
        out[canvas] = {"photos": d["photos"], "faces_found": d["found"],
                       "found_share": d["found"] / d["photos"], "right_face": d["right_face"],
                       "f1_wild": f1w, "f1_control": f1c, "ratio": f1w / f1c if f1c else 0.0,
                       "seconds_per_photo": float(np.median(d["seconds"]))}
    return {"model": predictor.description, "images": len(masks), "seed": seed,
            "size": SIZE, "mask_rule": "manual masks max-pooled 1024 -> 256", "canvases": out,
            "machine": machine_facts()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  python bench/bench_wild.py --out runs/bench_wild.json\n  python bench/bench_wild.py --limit 20")
    p.add_argument("--data", type=Path, default=DATA,
                   help=f"an ffhq-wrinkle-256 folder (default: {DATA})")
    p.add_argument("--limit", type=int, help="only the first N labelled faces")
    p.add_argument("-m", "--checkpoint", help="wrinkle model (default: the bundled one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the photo transforms")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if not (args.data / "manual_wrinkle_masks").is_dir():
        print(f"error: {args.data}: no manual_wrinkle_masks folder", file=sys.stderr)
        return 1
    res = measure(args.data, args.limit, args.checkpoint, args.seed, not args.no_progress)
    print(f"{res['model']}, {res['images']} faces, seed {res['seed']}")
    print("canvas  photos  found  right face  F1 wild  F1 control  ratio  s/photo")
    for canvas, d in res["canvases"].items():
        print(f"{canvas:6}  {d['photos']:6}  {d['faces_found']:5}  {d['right_face']:10}  "
              f"{d['f1_wild']:7.3f}  {d['f1_control']:10.3f}  {d['ratio']:5.3f}  "
              f"{d['seconds_per_photo']:7.3f}")
    save(res, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
