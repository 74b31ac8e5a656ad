#!/usr/bin/env python
"""Mask face images to the face: every pixel whose face-parsing label is not kept is set to 0.

The FFHQ-Wrinkle data set's step 2: face_images/<id>.png + etcs/face_parsed_labels/<id>.npy
(BiSeNet label ids, 512x512) -> masked_face_images/<id>.png. Kept by default: skin (1) and nose
(10), as in the data set. The label map is scaled to each image by nearest neighbour (512 -> 1024
up, 512 -> 256 down), so images of any size work. Outputs already there are kept (a rerun
resumes); images without a label map are reported and the rest is finished.

The data set's own face_masking.py took the label folder first; that order is recognised too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bisenet.labels import FACE_LABELS, label_arg
from utils.data.steps import StepReport, print_report
from utils.errors import run_cli


def masked_face(rgb: np.ndarray, face: np.ndarray) -> np.ndarray:
    """A copy of an RGB image with every pixel outside the bool `face` mask set to 0."""
    out = rgb.copy()
    out[~face] = 0
    return out


def _has(folder: Path, suffixes: tuple[str, ...]) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in suffixes for p in folder.rglob("*"))


def mask_face_images(images_dir: str | Path, labels_dir: str | Path, out_dir: str | Path,
                     keep: Sequence[int] = FACE_LABELS, dry_run: bool = False,
                     progress: bool = True) -> StepReport:
    """Write out_dir/<id>.png for every image that has a label map (see the module doc)."""
    from tqdm import tqdm

    from utils.data.images import IMAGE_EXTENSIONS, load_image
    from utils.data.pairs import face_mask_from_labels, index_folder, mask_fits
    from utils.errors import UserError
    from utils.visualize import write_png

    images_dir, labels_dir, out = Path(images_dir), Path(labels_dir), Path(out_dir)
    notes = []
    if (not _has(images_dir, IMAGE_EXTENSIONS) and _has(images_dir, (".npy",))
            and _has(labels_dir, IMAGE_EXTENSIONS)):
        images_dir, labels_dir = labels_dir, images_dir
        notes.append("the label folder came first (the data set's own order): swapped")
    images = index_folder(images_dir, IMAGE_EXTENSIONS, "face image")
    labels = index_folder(labels_dir, (".npy",), "face-parsing label")
    if not images:
        raise UserError(f"{images_dir}: no images (png/jpg) found")
    report = StepReport("face_masking", out, notes=notes, dry_run=dry_run)
    report.missing = [(i, "no label map") for i in sorted(images) if i not in labels]
    todo = []
    for key in sorted(k for k in images if k in labels):
        (report.skipped if (out / f"{key}.png").exists() else todo).append(key)
    for key in tqdm(todo, desc="masking faces", unit="img", disable=not progress or dry_run,
                    file=sys.stderr):
        if dry_run:
            report.done.append(key)
            continue
        image_path, label_path = images[key], labels[key]
        try:
            rgb = load_image(image_path)
        except UserError as exc:
            report.failed.append((str(image_path), str(exc).removeprefix(f"{image_path}: ")))
            continue
        try:
            shape = np.load(label_path, mmap_mode="r", allow_pickle=False).shape
            if len(shape) != 2 or not mask_fits(rgb.shape[:2], shape):
                raise UserError(f"label map of shape {shape} does not fit image "
                                f"{image_path.name} of size {rgb.shape[1]}x{rgb.shape[0]}")
            face = face_mask_from_labels(label_path, list(keep), rgb.shape[:2])
        except (UserError, OSError, ValueError) as exc:
            report.failed.append((str(label_path), str(exc).removeprefix(f"{label_path}: ")))
            continue
        try:
            write_png(out / f"{key}.png", masked_face(rgb, face))
        except OSError as exc:
            report.failed.append((str(out / f"{key}.png"), f"cannot write ({exc})"))
            continue
        report.done.append(key)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python face_masking.py data/face_images data/etcs/face_parsed_labels "
               "data/masked_face_images")
    p.add_argument("images", help="face images <id>.png (or jpg; any size)")
    p.add_argument("labels", help="face-parsing label maps <id>.npy (BiSeNet ids)")
    p.add_argument("out", help="output folder for the masked <id>.png")
    p.add_argument("--keep", nargs="+", type=label_arg, default=list(FACE_LABELS),
                   metavar="LABEL",
                   help="label ids or names to keep (default: 1 10 = skin, nose)")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="report what would be done; write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = mask_face_images(args.images, args.labels, args.out, keep=args.keep,
                              dry_run=args.dry_run, progress=not args.no_progress)
    return print_report(report)


if __name__ == "__main__":
    run_cli(main)
