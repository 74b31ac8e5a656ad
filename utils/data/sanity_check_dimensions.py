#!/usr/bin/env python
"""Check every image/mask pair of a data set fully, before training or evaluating on it.

Training leaves out files that fail a quick header check; this tool decodes everything and also
finds what a header check cannot: masks with grey (anti-aliased) values, masks the binarisation
rule would read as empty, masks in another frame than their image, face-parsing label maps with
ids outside 0..18, and images or masks without a partner. Prints a table of problems (id, file,
problem) or "all N pairs OK"; exits with 1 when there is any problem, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Run as a file, Python puts utils/ (not the repository root) first on sys.path: swap them, so that
# `utils` is the package and utils/io.py cannot shadow the standard library's io.
_ROOT = Path(__file__).resolve().parents[2]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "utils"]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from utils.errors import UserError, run_cli  # noqa: E402
from utils.data.images import IMAGE_EXTENSIONS, load_image  # noqa: E402
from utils.data.masks import mask_values  # noqa: E402

if TYPE_CHECKING:
    from utils.data.pairs import Pair

# Raw value sets that the binarisation rule reads as label maps (wrinkle = 1).
LABEL_VALUE_SETS = ({0, 1}, {0, 255}, {1, 2}, {0, 1, 2})
# Intensity masks: a value within NEAR of 0 or of the mask's maximum counts as clean.
NEAR = 0.10
# More intermediate values than this share of the pixels a mask marks is an anti-aliased mask.
MAX_INTERMEDIATE = 0.01
# BiSeNet face-parsing label ids.
LABEL_IDS = (0, 18)
SHOW_UNPAIRED = 5


def _problem(key: str, path: Path | str, problem: str, check: str) -> dict[str, str]:
    return {"id": key, "file": str(path), "problem": problem, "check": check}


def _message(exc: Exception, path: Path) -> str:
    """A UserError's message without the leading 'path: ', which the table shows in its own column."""
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def mask_value_problem(values: np.ndarray) -> str | None:
    """Why raw mask values are not cleanly two-valued under utils.data.masks' rule, or None if they are."""
    if values.size == 0:
        return "the mask is empty (0 pixels)"
    if values.dtype.kind in "ui" and values.min() >= 0 and values.max() <= 65535:
        counts = np.bincount(values.ravel().astype(np.int64, copy=False))
        present = {int(v) for v in np.flatnonzero(counts)}
    else:
        counts = None
        present = {float(v) for v in np.unique(values)}
    vmax = float(values.max())
    if vmax <= 2:  # a label map under the rule
        if any(present <= allowed for allowed in LABEL_VALUE_SETS):
            return None
        shown = ", ".join(f"{v:g}" for v in sorted(present)[:8])
        return f"label-map values {{{shown}}} are not one of {{0,1}}, {{1,2}}, {{0,1,2}}"
    if present <= {0, 255}:
        return None
    threshold = 128 if vmax <= 255 else 32768
    if vmax < threshold:
        return (f"intensity mask whose largest value {vmax:g} is below the rule's threshold "
                f"{threshold}: every pixel reads as background")
    low, high = NEAR * vmax, (1 - NEAR) * vmax
    if counts is not None:
        idx = np.arange(counts.size)
        marked = int(counts[idx > low].sum())
        grey = int(counts[(idx > low) & (idx < high)].sum())
    else:
        marked = int((values > low).sum())
        grey = int(((values > low) & (values < high)).sum())
    if marked and grey / marked > MAX_INTERMEDIATE:
        return (f"anti-aliased or soft mask: {grey / marked:.1%} of its marked pixels "
                f"({grey / values.size:.2%} of all) are grey, between {low:.0f} and {high:.0f} "
                f"(max {vmax:g}); the rule splits them at {threshold}")
    return None


def label_map_problem(path: Path, image_hw: tuple[int, int] | None) -> str | None:
    """Why a face-parsing label map is unusable (not 2-D integer ids in 0..18), or None."""
    from utils.data.pairs import mask_fits

    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        return f"cannot read the label map ({exc})"
    if labels.ndim != 2 or labels.size == 0:
        return f"label map must be 2-D and not empty, got shape {labels.shape}"
    if labels.dtype.kind not in "ui":
        return f"label map must hold integer ids, got dtype {labels.dtype}"
    lo, hi = int(labels.min()), int(labels.max())
    if lo < LABEL_IDS[0] or hi > LABEL_IDS[1]:
        return f"label ids range {lo}..{hi}, outside {LABEL_IDS[0]}..{LABEL_IDS[1]}"
    if image_hw is not None and not mask_fits(image_hw, labels.shape):
        return (f"label map size {labels.shape[1]}x{labels.shape[0]} is not the frame of its "
                f"image ({image_hw[1]}x{image_hw[0]})")
    return None


def _check_pair_fully(pair: Pair, labels: dict[str, Path] | None) -> list[dict[str, str]]:
    """Every check of one pair: decode, binary values, frame, header, label map."""
    from utils.data.pairs import check_pair, mask_fits

    rows: list[dict[str, str]] = []
    image_hw = None
    try:
        image_hw = load_image(pair.image).shape[:2]
    except UserError as exc:
        rows.append(_problem(pair.id, pair.image, _message(exc, pair.image), "image"))
    values = None
    try:
        values = mask_values(pair.mask)
    except UserError as exc:
        rows.append(_problem(pair.id, pair.mask, _message(exc, pair.mask), "mask"))
    if values is not None:
        problem = mask_value_problem(values)
        if problem:
            rows.append(_problem(pair.id, pair.mask, problem, "binary"))
        if image_hw is not None and not mask_fits(image_hw, values.shape):
            rows.append(_problem(
                pair.id, pair.mask,
                f"mask size {values.shape[1]}x{values.shape[0]} is not the frame of its image "
                f"{pair.image.name} ({image_hw[1]}x{image_hw[0]}): it must be the same size or "
                "the same frame scaled", "size"))
    # The header check also catches damage that lenient decoders accept (a PNG without IEND).
    header = check_pair(pair)
    if header and header[0] not in {r["file"] for r in rows}:
        rows.append(_problem(pair.id, header[0], header[1], "header"))
    if labels is not None:
        label_path = labels.get(pair.id)
        if label_path is None:
            rows.append(_problem(pair.id, pair.image, "no face-parsing label map", "labels"))
        else:
            problem = label_map_problem(label_path, image_hw)
            if problem:
                rows.append(_problem(pair.id, label_path, problem, "labels"))
    return rows


def _check_all(image_dir: str | Path, mask_dir: str | Path, labels_dir: str | Path | None,
               progress: bool) -> tuple[list[dict[str, str]], int]:
    """The problem rows and the number of pairs checked."""
    # utils.data.dataset pulls in torch and albumentations (seconds): import it only when needed, so
    # that --help stays instant.
    from utils.data.pairs import MASK_EXTENSIONS, find_pairs, index_folder

    report = find_pairs(image_dir, mask_dir, check=False, progress=False)
    labels = index_folder(labels_dir, (".npy",), "face-parsing label") if labels_dir else None
    rows: list[dict[str, str]] = []
    if report.images_without_masks or report.masks_without_images:
        # The pairing report keeps only ids; look their files up once for the table.
        images = index_folder(image_dir, IMAGE_EXTENSIONS, "image")
        masks = index_folder(mask_dir, MASK_EXTENSIONS, "mask")
        rows += [_problem(k, images[k], "image has no mask", "pairing")
                 for k in report.images_without_masks]
        rows += [_problem(k, masks[k], "mask has no image", "pairing")
                 for k in report.masks_without_images]
    if not report.pairs and not rows:
        rows.append(_problem("-", image_dir, "no images found", "pairing"))
    for pair in tqdm(report.pairs, desc="checking pairs", unit="pair", file=sys.stderr,
                     disable=not progress):
        rows += _check_pair_fully(pair, labels)
    return rows, len(report.pairs)


def sanity_check(image_dir: str | Path, mask_dir: str | Path,
                 labels_dir: str | Path | None = None, progress: bool = True) -> list[dict[str, str]]:
    """Check every pair fully; return one row (id, file, problem, check) per problem found.

    A missing folder is a UserError. `check` names the test that failed: pairing, image, mask,
    binary, size, header or labels.
    """
    return _check_all(image_dir, mask_dir, labels_dir, progress)[0]


def format_problems(rows: list[dict[str, Any]], pairs: int) -> str:
    """The problem table; unpaired files are summarised as counts with the first few ids."""
    if not rows:
        return f"all {pairs} pairs OK"
    table = [r for r in rows if r["check"] != "pairing" or r["id"] == "-"]
    lines = [f"{len(rows)} problems in {pairs} pairs checked"]
    if table:
        widths = [max(len(h), *(len(str(r[h])) for r in table)) for h in ("id", "file")]
        lines.append(f"{'id':<{widths[0]}}  {'file':<{widths[1]}}  problem")
        for r in table:
            lines.append(f"{r['id']:<{widths[0]}}  {r['file']:<{widths[1]}}  {r['problem']}")
    for what in ("image has no mask", "mask has no image"):
        ids = [r["id"] for r in rows if r["check"] == "pairing" and r["problem"] == what]
        if ids:
            more = f", ... (+{len(ids) - SHOW_UNPAIRED})" if len(ids) > SHOW_UNPAIRED else ""
            noun = "images without a mask" if what.startswith("image") else "masks without an image"
            lines.append(f"{noun}: {len(ids)} ({', '.join(ids[:SHOW_UNPAIRED])}{more})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python utils/data/sanity_check_dimensions.py "
                                       "--image-dir data/images256x256 "
                                       "--mask-dir data/manual_wrinkle_masks")
    p.add_argument("-i", "--image-dir", required=True, help="images (flat or FFHQ subfolders)")
    p.add_argument("-m", "--mask-dir", required=True, help="masks, matched to images by id")
    p.add_argument("-l", "--labels-dir", help="face-parsing label maps (<id>.npy), checked too")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows, pairs = _check_all(args.image_dir, args.mask_dir, args.labels_dir,
                             progress=not args.no_progress)
    print(format_problems(rows, pairs))
    return 1 if rows else 0


if __name__ == "__main__":
    run_cli(main)
