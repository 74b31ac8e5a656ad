#!/usr/bin/env python
"""How much of the real wrinkles the fallback face region keeps, and how much image it covers.

On the real pairs in ../shared/data/ffhq-wrinkle-256 (images256x256/<id>.jpg with a manual mask;
masks are 1024 px, shrunk to 256 by utils.masks.resize_mask, which keeps thin lines), run
utils.face_region.face_region without the face parser (the fallback: Haar cascades where OpenCV
has them, else the FFHQ template ellipse) and report:

- wrinkle coverage: the share of real wrinkle pixels inside the region, pooled over all images and
  per image (min, median);
- image share: the share of the image the region covers (pooled, per-image min/median/max);
- how many images took each path (haar, template, none).

    python bench/bench_face_region.py --out runs/bench_face_region.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402

from utils.face_region import face_region  # noqa: E402
from utils.images import load_image  # noqa: E402
from utils.io import write_json  # noqa: E402
from utils.masks import read_mask, resize_mask  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "ffhq-wrinkle-256"


def measure(data: Path, limit: int | None = None) -> dict:
    """Coverage and image share of the fallback region on every real pair under `data`."""
    masks = sorted((data / "manual_wrinkle_masks").glob("*.png"))
    pairs = [(m, data / "images256x256" / f"{m.stem}.jpg") for m in masks]
    pairs = [(m, i) for m, i in pairs if i.is_file()][:limit]
    if not pairs:
        raise SystemExit(f"error: no image/mask pairs under {data}")
    inside = total = covered = pixels = 0
    per_cov, per_share, sources = [], [], Counter()
    t0 = time.perf_counter()
    for mask_path, image_path in pairs:
        rgb = load_image(image_path)
        wrinkles = resize_mask(read_mask(mask_path), rgb.shape[:2])
        region = face_region(rgb, use_default_parser=False)
        sources[region.source] += 1
        n = int(wrinkles.sum())
        k = int((wrinkles & region.mask).sum())
        inside, total = inside + k, total + n
        covered, pixels = covered + int(region.mask.sum()), pixels + region.mask.size
        if n:
            per_cov.append(k / n)
        per_share.append(float(region.mask.mean()))
    seconds = time.perf_counter() - t0
    return {
        "pairs": len(pairs),
        "resolution": "256x256 (masks shrunk 1024 -> 256 by any-coverage max-pooling)",
        "sources": dict(sources),
        "wrinkle_coverage": {"pooled": inside / total, "per_image_min": min(per_cov),
                             "per_image_median": statistics.median(per_cov),
                             "images_below_0.97": sum(c < 0.97 for c in per_cov)},
        "image_share": {"pooled": covered / pixels, "per_image_min": min(per_share),
                        "per_image_median": statistics.median(per_share),
                        "per_image_max": max(per_share)},
        "seconds_per_image": seconds / len(pairs),
        "opencv": cv2.__version__, "machine": platform.machine(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python bench/bench_face_region.py "
                                       "--out runs/bench_face_region.json")
    p.add_argument("--data", type=Path, default=DATA, help=f"data folder (default {DATA})")
    p.add_argument("--out", type=Path, help="also save the figures as JSON here")
    p.add_argument("--limit", type=int, help="only the first N pairs")
    args = p.parse_args()
    res = measure(args.data, args.limit)
    cov, share = res["wrinkle_coverage"], res["image_share"]
    print(f"{res['pairs']} real pairs at 256 px, OpenCV {res['opencv']}, paths: {res['sources']}")
    print(f"wrinkle pixels inside the region: pooled {cov['pooled']:.2%}, per image min "
          f"{cov['per_image_min']:.2%}, median {cov['per_image_median']:.2%} "
          f"({cov['images_below_0.97']} images below 97 %)")
    print(f"image covered by the region: pooled {share['pooled']:.2%}, per image min "
          f"{share['per_image_min']:.2%}, median {share['per_image_median']:.2%}, max "
          f"{share['per_image_max']:.2%}")
    if args.out:
        write_json(args.out, res)
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
