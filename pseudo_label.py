#!/usr/bin/env python
"""Label unlabelled faces with a teacher's wrinkle probabilities, for self-training a student.

The teacher (one checkpoint, or several of one recipe whose probabilities are averaged, e.g. the
K fold models of a cross-validation) reads each aligned face as training does, with its mirror
image averaged in by default, and writes <out>/<id>.png: the probability x 255. Faces that have a
hand-drawn mask (--skip-masks) are left out. A student then trains on both:

    python pseudo_label.py -m runs/cv/v3/fold*/last.pth \\
        --images ../shared/data/ffhq-wrinkle-256/images256x256 \\
        --skip-masks ../shared/data/ffhq-wrinkle-256/manual_wrinkle_masks --out runs/pseudo/v3
    python train.py --config configs/default_ffhq256.yaml \\
        --set data.pseudo_dir=runs/pseudo/v3 --set data.pseudo_per_epoch=165

A rerun with the same teacher keeps what was written (a killed run resumes). To judge
self-training out of fold, use bench/cross_validate.py --teachers: there each fold's teacher
never saw the faces that fold holds out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from utils.errors import UserError, run_cli
from utils.io import check_output_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--checkpoint", nargs="+", required=True, type=Path,
                   help="the teacher: one checkpoint of this project, or several of one recipe "
                        "(averaged)")
    p.add_argument("--images", required=True, type=Path,
                   help="aligned faces (flat or FFHQ's 1000-image subfolders)")
    p.add_argument("--skip-masks", type=Path, metavar="MASK_DIR",
                   help="hand-drawn masks: their ids get no soft label")
    p.add_argument("-o", "--out", required=True, type=Path, help="folder for <id>.png labels")
    p.add_argument("--tta", default="flip", choices=["none", "flip"],
                   help="flip (default): average each face with its mirror image")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("-b", "--batch-size", type=int, default=8, help="faces per batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for ckpt in args.checkpoint:
        if not ckpt.is_file():
            raise UserError(f"{ckpt}: checkpoint not found")
    if not args.images.is_dir():
        raise UserError(f"{args.images}: image folder not found")
    check_output_dir(args.out)
    skip: set[str] = set()
    if args.skip_masks is not None:
        from utils.data.pairs import ids_of

        if not args.skip_masks.is_dir():
            raise UserError(f"{args.skip_masks}: mask folder not found")
        skip = ids_of(args.skip_masks)
    from utils.training.distill import write_soft_labels  # here, so --help answers at once

    write_soft_labels(args.checkpoint, args.images, args.out, skip, args.tta, args.device,
                      args.batch_size, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    run_cli(main)
