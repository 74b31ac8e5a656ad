#!/usr/bin/env python
"""Evaluate a wrinkle checkpoint: pooled (micro) and per-image (macro) F1/Dice, Jaccard,
precision, recall, binned AUROC and average precision.

By default the checkpoint's own validation ids and data folders are used. Writes metrics.json,
per_image.csv, pr_curve.png and overlays of the worst and best images (truth green, prediction
red, overlap yellow) to --out.

--agreement A B scores two folders of masks against each other instead (two annotators, or an
annotator and predict.py's masks): pooled F1, F1 with a 1 px tolerance, Jaccard, precision and
recall of A against B, per image, and per face region when the faces are at hand (--image-dir,
or a face_images/ folder beside A). Writes agreement.json, per_image.csv, per_region.csv.
"""

from __future__ import annotations

import argparse

from utils.errors import run_cli
from utils.model_args import add_tta_arg, tta_choice


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python evaluate.py --checkpoint "
                                       "res/cp/demo/best.pth --split val --out runs/eval-demo\n"
                                       "         python evaluate.py --agreement "
                                       "ana/manual_wrinkle_masks bo/manual_wrinkle_masks "
                                       "-o runs/agree")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("-m", "--checkpoint", help="a checkpoint written by train.py")
    which.add_argument("--baseline", action="store_true",
                       help="evaluate the texture-map baseline (needs --split FILE or all, and "
                            "--image-dir/--mask-dir)")
    which.add_argument("--agreement", nargs=2, metavar=("A", "B"),
                       help="score the masks of folder A against those of folder B (paired by "
                            "file name)")
    p.add_argument("-s", "--split", default="val",
                   help="val | train | test (ids stored in the checkpoint), all (every pair in "
                        "the folders), or an id-list file (default: val)")
    p.add_argument("-o", "--out", required=True, help="folder for the reports")
    p.add_argument("--image-dir", help="images (default: the folder the checkpoint was trained "
                   "on; with --agreement: the aligned faces, for the per-region figures)")
    p.add_argument("--mask-dir", help="masks (default: the folder the checkpoint was trained on)")
    p.add_argument("-t", "--threshold", type=float,
                   help="decision threshold (default: the checkpoint's, usually 0.5)")
    p.add_argument("-b", "--batch-size", type=int, default=8, help="images per batch")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="mixed precision for inference (off = float32)")
    p.add_argument("--overlays", type=int, default=4, help="worst and best images to draw")
    p.add_argument("-j", "--workers", type=int, default=0, help="data-loader workers")
    p.add_argument("--strict", action="store_true", help="unpaired or broken files are fatal")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_tta_arg(p)
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    if args.overlays < 0:
        p.error("--overlays must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from utils.io import check_output_dir

    check_output_dir(args.out)
    if args.agreement:
        from utils.evaluation.agreement import agreement

        r = agreement(*args.agreement, args.out, image_dir=args.image_dir,
                      progress=not args.no_progress)
        print(f"{r['images']} mask pairs: pooled F1 {r['f1']:.4f} (1 px tolerance "
              f"{r['f1_tol1']:.4f}), Jaccard {r['jaccard']:.4f}, precision {r['precision']:.4f}, "
              f"recall {r['recall']:.4f} (A against B); per image F1 {r['macro_f1']:.4f}")
        for note in r["notes"]:
            print(f"note: {note}")
        print(f"reports in {args.out}/")
        return 0
    from utils.evaluation.evaluate import evaluate  # imported here so that --help answers at once

    evaluate(args.checkpoint, args.out, split=args.split, image_dir=args.image_dir,
             mask_dir=args.mask_dir, threshold=args.threshold, batch_size=args.batch_size,
             device=args.device, amp=args.amp, overlays=args.overlays, workers=args.workers,
             strict=args.strict, progress=not args.no_progress, tta=tta_choice(args))
    return 0


if __name__ == "__main__":
    run_cli(main)
