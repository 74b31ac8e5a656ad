#!/usr/bin/env python
"""Export a training checkpoint for shipping: weights only (no optimizer, RNG or history), in half
precision if asked, with its recipe, split, metrics and an optional new decision threshold.

    python export.py res/cp/my-run/best.pth res/cp/my_model.pth --half --threshold 0.4
    python export.py res/cp/final/last.pth res/cp/my_model.pth --half \
        --oof-report runs/cv/my-recipe/report.json --threshold oof --check-images examples/*.jpg
    python export.py res/cp/my-run/best.pth res/cp/my_model.safetensors
    python export.py res/cp/default_ffhq256.pth out/wrinkle.onnx
    python export.py res/cp/stage2_unet.pth out/official.xml --format openvino
    python export.py res/cp/default_ffhq256.pth out/wrinkle_int8.xml --int8 --check-images examples/*.jpg
    python export.py runs/cv/my-recipe/fold*/last.pth res/cp/my_ensemble.pth --half
    python export.py res/cp/default_ffhq256.pth out/flipped.pth --tta flip

ONNX (dynamic batch, height and width; sizes multiples of 16) and OpenVINO IR (.xml + .bin) take
any checkpoint the predictor reads, the official U-Net's included, and carry its recipe and
threshold, so predict.py and app.py load them on their own (-m out/wrinkle.onnx). --int8 writes
the IR quantised to int8 (NNCF post-training quantisation, calibrated on the example faces, or on
your own aligned faces with --calibration DIR); it runs as int8 wherever it is loaded.

The exported file loads like any checkpoint of this project (weights are cast back to float32 on
loading). With --check-images, the masks of the exported weights are compared with the original's
on real faces, and the export is refused if fewer than 99.5 % of pixels agree; the original's
float32 masks of those faces are stored in the file (`fp32_reference`), so that anyone can check
later that the shipped weights still give them (`check_reference`). With --oof-report, the
cross-validation figures of the model's recipe (bench/cross_validate.py) are stored with it, and
`--threshold oof` takes the threshold that was best out of fold.

Several sources of one recipe (the K fold models of a cross-validation) make one ensemble: the
file serves the average of their probabilities. --tta flip makes the file average each face with
its mirror image. Both cost model time in proportion (`bench/bench_averaging.py --time` times them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from utils.errors import run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", nargs="+",
                   help="a checkpoint written by train.py (best.pth or last.pth); several of "
                        "one recipe make an ensemble (.pth / .safetensors output)")
    p.add_argument("dst", help="output file (.pth, .pt, .safetensors, .onnx, or .xml for "
                                "OpenVINO); an existing file is kept unless --overwrite")
    p.add_argument("--format", choices=["auto", "pth", "onnx", "openvino"], default="auto",
                   help="auto: from the output's suffix")
    p.add_argument("--half", action="store_true", help="store the weights as float16")
    p.add_argument("-t", "--threshold",
                   help="a new decision threshold, or 'oof': the best one of --oof-report")
    p.add_argument("--oof-report", type=Path, metavar="REPORT",
                   help="report.json of the recipe's cross-validation: its out-of-fold figures "
                        "go into the file")
    p.add_argument("--note", help="a free-text note stored in the file")
    p.add_argument("--tta", choices=["none", "flip"],
                   help="the test-time augmentation the file serves (default: the source's)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file (default: refuse)")
    p.add_argument("--int8", action="store_true",
                   help="OpenVINO IR only: quantise to int8 (about twice as fast on a CPU)")
    p.add_argument("--calibration", type=Path, metavar="DIR",
                   help="with --int8: a folder of aligned faces to calibrate on (default: the "
                        "faces of examples/, mirrored, darkened and in grey)")
    p.add_argument("--check-images", nargs="+", type=Path, metavar="IMAGE",
                   help="aligned faces on which the export's masks must agree with the source's; "
                        "the source's float32 masks of them are stored in the file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from utils.inference.export import export

    src = args.src[0] if len(args.src) == 1 else args.src
    for line in export(src, args.dst, args.format, args.half, args.threshold, args.note,
                       args.oof_report, args.check_images, args.overwrite, args.tta,
                       args.int8, args.calibration):
        print(line)
    return 0


if __name__ == "__main__":
    run_cli(main)
