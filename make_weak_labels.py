#!/usr/bin/env python
"""Make weak wrinkle labels (texture maps) for any folder of face images, in parallel.

The weak label of the FFHQ-Wrinkle paper (utils.data.texture.texture_map): the grey image divided by
its Gaussian blur (21x21, sigma 5 at 1024 px, scaled with the image), T = clip(1 - I / (1 + I_G),
0, 1) as 0..255, set to 0 outside the face when --labels gives face-parsing label maps. Outputs
follow the data set's weak_wrinkle_masks layout: <out>/00000/<id>.png, <out>/01000/<id>.png, ...
(1000 ids per subfolder; names that are not FFHQ ids go straight into <out>/). Outputs already
there are kept (a rerun resumes); failures are reported and the exit code is then 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bisenet.labels import label_arg
from utils.data.steps import StepReport, print_report
from utils.errors import run_cli

Job = tuple[str, str, str | None, tuple[int, ...], str]  # id, image, labels, keep, output


def ffhq_subfolder(key: str) -> str:
    """FFHQ's 1000-per-folder name for an id ("01234" -> "01000"); "" for other names."""
    return f"{int(key) // 1000 * 1000:05d}" if key.isdigit() else ""


def weak_label_path(out_dir: str | Path, key: str) -> Path:
    """Where the weak label of `key` goes in the data set's layout."""
    return Path(out_dir) / ffhq_subfolder(key) / f"{key}.png"


def make_weak_label(job: Job) -> tuple[str, str | None]:
    """Worker: write one texture map; returns (id, None) or (file, problem)."""
    key, image, labels, keep, out = job
    from utils.data.images import load_image
    from utils.data.pairs import face_mask_from_labels
    from utils.data.texture import texture_map
    from utils.errors import UserError
    from utils.visualize import write_png

    try:
        rgb = load_image(image)
        face = face_mask_from_labels(Path(labels), list(keep), rgb.shape[:2]) if labels else None
        write_png(out, texture_map(rgb, face))
    except UserError as exc:
        msg = str(exc)
        path = labels if labels and msg.startswith(labels) else image
        return path, msg.removeprefix(f"{path}: ")
    except Exception as exc:  # a worker must report, not take the pool down
        return image, f"{type(exc).__name__}: {exc}"
    return key, None


def make_weak_labels(images_dir: str | Path, out_dir: str | Path,
                     labels_dir: str | Path | None = None, keep: Sequence[int] = (1, 10),
                     workers: int | None = None, progress: bool = True) -> StepReport:
    """Texture maps for every image under `images_dir` (see the module doc)."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from utils.data.images import IMAGE_EXTENSIONS
    from utils.data.pairs import index_folder
    from utils.errors import UserError

    images = index_folder(images_dir, IMAGE_EXTENSIONS, "image")
    if not images:
        raise UserError(f"{images_dir}: no images (png/jpg) found")
    labels = index_folder(labels_dir, (".npy",), "face-parsing label") if labels_dir else None
    report = StepReport("make_weak_labels", Path(out_dir))
    jobs: list[Job] = []
    for key in sorted(images):
        dst = weak_label_path(out_dir, key)
        if dst.exists():
            report.skipped.append(key)
            continue
        label_path = None
        if labels is not None:
            if key not in labels:
                report.failed.append((str(images[key]), "no face-parsing label map in "
                                      f"{labels_dir} (needed to mask it to the face)"))
                continue
            label_path = str(labels[key])
        jobs.append((key, str(images[key]), label_path, tuple(keep), str(dst)))
    workers = workers if workers is not None else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(jobs) or 1))
    if workers == 1 or len(jobs) < 2:
        results = map(make_weak_label, jobs)
        report.notes.append("ran in this process")
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(make_weak_label, jobs, chunksize=max(1, min(32, len(jobs) // (
            workers * 4) or 1)))
        report.notes.append(f"ran in {workers} worker processes")
    try:
        for job, (who, problem) in tqdm(zip(jobs, results, strict=True), total=len(jobs),
                                        desc="weak labels", unit="img", disable=not progress,
                                        file=sys.stderr):
            if problem is None:
                report.done.append(job[0])
            else:
                report.failed.append((who, problem))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python make_weak_labels.py --images data/images1024x1024 "
               "--labels data/etcs/face_parsed_labels --out data/weak_wrinkle_masks -j 8")
    p.add_argument("--images", required=True, help="face images (recursively; png/jpg)")
    p.add_argument("--out", required=True, help="output folder (00000/<id>.png, ...)")
    p.add_argument("--labels", help="face-parsing label maps <id>.npy: zero outside the face")
    p.add_argument("--keep", nargs="+", type=label_arg, default=[1, 10], metavar="LABEL",
                   help="labels that make up the face (default: 1 10 = skin, nose)")
    p.add_argument("-j", "--workers", type=int,
                   help="worker processes (default: all CPU cores; 1 = no pool)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        p.error("--workers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = make_weak_labels(args.images, args.out, args.labels, keep=args.keep,
                              workers=args.workers, progress=not args.no_progress)
    return print_report(report)


if __name__ == "__main__":
    run_cli(main)
