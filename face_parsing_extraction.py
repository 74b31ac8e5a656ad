#!/usr/bin/env python
"""Face-parse a folder of photos with BiSeNet: a label map and a masked face image per photo.

For every image under IMAGES (recursively; png/jpg, any size or mode) it writes
  <labels-out>/<id>.npy   the 512x512 uint8 BiSeNet label map (the format of the FFHQ-Wrinkle
                          data set's etcs/face_parsed_labels)
  <masked-out>/<id>.png   the image at its own size with every pixel whose label is not kept set
                          to 0 (default: skin and nose, as the data set's masked_face_images)
so that new photos can be prepared exactly as the data set was. Needs the published face-parsing
weights 79999_iter.pth (res/cp/79999_iter.pth or --weights). Outputs already there are kept (a
rerun resumes); unreadable files are reported, the others finished, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bisenet.labels import label_arg
from utils.data.steps import StepReport, print_report
from utils.errors import run_cli


def _save_npy(path: Path, array: object) -> None:
    import numpy as np

    from utils.io import write_with

    def writer(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.save(fh, array, allow_pickle=False)

    write_with(path, writer)


def extract_face_parsing(images_dir: str | Path, labels_out: str | Path, masked_out: str | Path,
                         keep: Sequence[int] = (1, 10), weights: str | Path | None = None,
                         device: str = "auto", precision: str = "auto", batch_size: int = 4,
                         progress: bool = True) -> StepReport:
    """Label maps and masked face images for every image under `images_dir` (see module doc)."""
    import numpy as np
    from tqdm import tqdm

    from bisenet.parser import labels_to_size
    from face_masking import masked_face
    from utils.data.images import IMAGE_EXTENSIONS, load_image
    from utils.data.pairs import index_folder
    from utils.errors import UserError
    from utils.visualize import write_png

    images_dir, labels_out, masked_out = Path(images_dir), Path(labels_out), Path(masked_out)
    images = index_folder(images_dir, IMAGE_EXTENSIONS, "image")
    if not images:
        raise UserError(f"{images_dir}: no images (png/jpg) found")
    report = StepReport("face_parsing_extraction", masked_out)
    others = [p for p in images_dir.rglob("*") if p.is_file()
              and p.suffix.lower() not in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    if others:
        report.notes.append(f"{len(others)} files that are not images were left alone "
                            f"(e.g. {others[0]})")
    keys = sorted(images)
    todo = []
    for key in keys:
        have_npy = (labels_out / f"{key}.npy").exists()
        have_png = (masked_out / f"{key}.png").exists()
        (report.skipped if have_npy and have_png else todo).append(key)
    need_parser = [k for k in todo if not (labels_out / f"{k}.npy").exists()]
    parser = None
    if need_parser:
        from bisenet.parser import FaceParser

        parser = FaceParser(weights, device=device, precision=precision, batch_size=batch_size)
        report.notes.append(f"parsed with {parser.description}")
    bar = tqdm(total=len(todo), desc="face parsing", unit="img", disable=not progress,
               file=sys.stderr)
    for start in range(0, len(todo), batch_size):
        batch = []
        for key in todo[start:start + batch_size]:
            try:
                batch.append((key, load_image(images[key])))
            except UserError as exc:
                report.failed.append((str(images[key]),
                                      str(exc).removeprefix(f"{images[key]}: ")))
                bar.update(1)
        new = [(k, rgb) for k, rgb in batch if not (labels_out / f"{k}.npy").exists()]
        parsed = {}
        if new:
            assert parser is not None
            maps = parser.parse_512([rgb for _, rgb in new])
            parsed = {k: m for (k, _), m in zip(new, maps, strict=True)}
        for key, rgb in batch:
            npy = labels_out / f"{key}.npy"
            try:
                if key in parsed:
                    labels512 = parsed[key]
                    _save_npy(npy, labels512)
                else:  # resuming: the label map was written by an earlier run
                    labels512 = np.load(npy, allow_pickle=False)
                face = np.isin(labels_to_size(labels512, rgb.shape[:2]), list(keep))
                write_png(masked_out / f"{key}.png", masked_face(rgb, face))
                report.done.append(key)
            except (OSError, ValueError) as exc:
                report.failed.append((str(images[key]), f"cannot write its outputs ({exc})"))
            bar.update(1)
    bar.close()
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python face_parsing_extraction.py photos/ prepared/\n"
               "  python face_parsing_extraction.py data/face_images data "
               "--labels-out data/etcs/face_parsed_labels --keep 1 10")
    p.add_argument("images", help="folder of images (searched recursively; png/jpg)")
    p.add_argument("out", help="output base folder (face_parsed_labels/ and masked_face_images/)")
    p.add_argument("--labels-out", help="folder for <id>.npy (default: OUT/face_parsed_labels)")
    p.add_argument("--masked-out", help="folder for <id>.png (default: OUT/masked_face_images)")
    p.add_argument("--keep", nargs="+", type=label_arg, default=[1, 10], metavar="LABEL",
                   help="label ids or names kept in the masked image (default: 1 10 = skin, nose)")
    p.add_argument("-w", "--weights", help="face-parsing weights (default: res/cp/79999_iter.pth)")
    p.add_argument("-b", "--batch-size", type=int, default=4, help="images per model call")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="auto: bf16 where the CPU/GPU supports it, else fp32")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    report = extract_face_parsing(
        args.images, args.labels_out or out / "face_parsed_labels",
        args.masked_out or out / "masked_face_images", keep=args.keep, weights=args.weights,
        device=args.device, precision=args.precision, batch_size=args.batch_size,
        progress=not args.no_progress)
    return print_report(report)


if __name__ == "__main__":
    run_cli(main)
