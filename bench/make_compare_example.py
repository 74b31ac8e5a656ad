#!/usr/bin/env python
"""The manual's comparison picture (docs/compare_example.png): one real face photographed three
ways (utils/faces/photos.py): A and B unchanged, C with its annotated wrinkles inpainted away; below,
the difference pictures of A -> B (measurement noise) and A -> C (wrinkles gone).

    python bench/make_compare_example.py --face 00541 --out docs/compare_example.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from bench_compare import DATA, inpaint_wrinkles  # noqa: E402

from utils.compare import compare_photos, difference_picture, summary_text  # noqa: E402
from utils.data.images import load_image  # noqa: E402
from utils.data.masks import read_mask, resize_mask  # noqa: E402
from utils.faces.photos import make_photo  # noqa: E402
from utils.inference.predictor import WrinklePredictor  # noqa: E402
from utils.visualize import write_png  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  python bench/make_compare_example.py --face 00541 --out docs/compare_example.png")
    p.add_argument("--face", default="00541", help="a labelled FFHQ id of ../shared")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "compare_example.png")
    args = p.parse_args(argv)
    rgb = load_image(DATA / "images256x256" / f"{args.face}.jpg")
    truth = resize_mask(read_mask(DATA / "manual_wrinkle_masks" / f"{args.face}.png"), (256, 256))
    backdrop = load_image(DATA / "images256x256" / "00001.jpg")
    a = make_photo(rgb, 21, "square", backdrop).rgb
    b = make_photo(rgb, 22, "4:3", backdrop).rgb
    c = make_photo(inpaint_wrinkles(rgb, truth), 23, "4:3", backdrop).rgb
    predictor = WrinklePredictor(faces="largest")
    same = compare_photos(predictor, [("A", a), ("B, the same face", b)])
    gone = compare_photos(predictor, [("A", a), ("C, wrinkles removed", c)])
    for comp in (same, gone):
        print(summary_text(comp), end="\n\n")
    h = 300

    def fit(x: np.ndarray) -> np.ndarray:
        return cv2.resize(x, (round(x.shape[1] * h / x.shape[0]), h), interpolation=cv2.INTER_AREA)

    def row(*tiles: np.ndarray) -> np.ndarray:
        gap = np.full((tiles[0].shape[0], 8, 3), 255, np.uint8)
        out = tiles[0]
        for t in tiles[1:]:
            out = np.hstack([out, gap, t])
        return out

    top = row(fit(a), fit(b), fit(c))
    bottom = row(difference_picture(same, 1, scale=1), difference_picture(gone, 1, scale=1))
    w = max(top.shape[1], bottom.shape[1])

    def pad(x: np.ndarray) -> np.ndarray:
        return np.hstack([x, np.full((x.shape[0], w - x.shape[1], 3), 255, np.uint8)])

    write_png(args.out, np.vstack([pad(top), np.full((8, w, 3), 255, np.uint8), pad(bottom)]))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
