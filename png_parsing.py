#!/usr/bin/env python
"""Collect the FFHQ images that have a manual wrinkle mask into one flat folder of PNGs.

The FFHQ-Wrinkle data set's step 1: from images1024x1024 (FFHQ's 00000/, 01000/, ... subfolders,
or a flat folder; png or jpg) copy every image whose id has a mask in manual_wrinkle_masks to
face_images/<id>.png. A jpg is re-encoded as png (lossless from then on). Outputs already there are
kept (a rerun resumes); masks that have no image are reported and the rest is finished.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from utils.data.steps import StepReport, print_report
from utils.errors import run_cli


def link_or_copy(src: Path, dst: Path, link: bool) -> bool:
    """Hard-link (when asked and possible) or copy `src` to `dst` atomically; True if linked."""
    from utils.io import atomic_path

    linked = False
    with atomic_path(dst) as tmp:
        if link:
            tmp.unlink()
            try:
                os.link(src, tmp)  # atomic_path renames the link onto dst
                linked = True
            except OSError:  # another file system, or links not allowed: copy instead
                pass
        if not linked:
            shutil.copyfile(src, tmp)
    return linked


def collect_face_images(images_dir: str | Path, masks_dir: str | Path, out_dir: str | Path,
                        link: bool = False, dry_run: bool = False,
                        progress: bool = True) -> StepReport:
    """Copy (or hard-link) each image that has a manual mask to out_dir/<id>.png."""
    from tqdm import tqdm

    from utils.data.images import IMAGE_EXTENSIONS, load_image
    from utils.data.pairs import MASK_EXTENSIONS, index_folder
    from utils.errors import UserError
    from utils.visualize import write_png

    images = index_folder(images_dir, IMAGE_EXTENSIONS, "FFHQ image")
    masks = index_folder(masks_dir, MASK_EXTENSIONS, "manual mask")
    if not masks:
        raise UserError(f"{masks_dir}: no mask files (.png) found")
    out = Path(out_dir)
    report = StepReport("png_parsing", out, dry_run=dry_run)
    report.missing = [(i, "mask without image") for i in sorted(masks) if i not in images]
    todo = []
    for key in sorted(k for k in masks if k in images):
        dst = out / f"{key}.png"
        (report.skipped if dst.exists() else todo).append(key)
    reencoded = copied_instead = 0
    for key in tqdm(todo, desc="face images", unit="img", disable=not progress or dry_run,
                    file=sys.stderr):
        src, dst = images[key], out / f"{key}.png"
        is_png = src.suffix.lower() == ".png"
        if dry_run:
            report.done.append(key)
            reencoded += not is_png
            continue
        try:
            if is_png:
                if not link_or_copy(src, dst, link) and link:
                    copied_instead += 1
            else:
                write_png(dst, load_image(src))
                reencoded += 1
            report.done.append(key)
        except (UserError, OSError) as exc:
            report.failed.append((str(src), str(exc).removeprefix(f"{src}: ")))
    if reencoded:
        report.notes.append(f"{reencoded} non-png images re-encoded as png"
                            + (" (--link applies to png files only)" if link else ""))
    if copied_instead:
        report.notes.append(f"{copied_instead} files copied: hard links are not possible there "
                            "(another file system?)")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python png_parsing.py data/images1024x1024 data/manual_wrinkle_masks "
               "data/face_images --link")
    p.add_argument("images", help="FFHQ images (00000/, 01000/ ... subfolders or flat; png/jpg)")
    p.add_argument("masks", help="manual wrinkle masks <id>.png")
    p.add_argument("out", help="output folder for <id>.png")
    p.add_argument("--link", action="store_true",
                   help="hard-link png images instead of copying them (same file system)")
    p.add_argument("-n", "--dry-run", action="store_true", help="report what would be done; "
                   "write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = collect_face_images(args.images, args.masks, args.out, link=args.link,
                                 dry_run=args.dry_run, progress=not args.no_progress)
    return print_report(report)


if __name__ == "__main__":
    run_cli(main)
