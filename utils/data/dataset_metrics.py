#!/usr/bin/env python
"""Wrinkle-pixel share of an image/mask data set, at the masks' own resolution and at the
evaluation size.

Wrinkles cover about 1 % of a face, and the share depends on resolution: shrinking a mask by the
project's rule (max-pool, so that thin lines survive) thickens the lines. These numbers set the
class balance for the loss and say why F1 at 256 and at 1024 are not comparable. Writes
dataset_metrics.csv (one row per pair), summary.json and positive_share_hist.png to --out.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
from pathlib import Path
from typing import Any

# Run as a file, Python puts utils/ (not the repository root) first on sys.path: swap them, so that
# `utils` is the package and utils/io.py cannot shadow the standard library's io.
_ROOT = Path(__file__).resolve().parents[2]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "utils"]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tqdm import tqdm  # noqa: E402

from utils.errors import UserError, run_cli  # noqa: E402
from utils.io import write_json, write_text, write_with  # noqa: E402
from utils.data.masks import MASK_RULE, RESIZE_RULE, read_mask, resize_mask  # noqa: E402

CSV_NAME = "dataset_metrics.csv"
SUMMARY_NAME = "summary.json"
HIST_NAME = "positive_share_hist.png"
CSV_COLUMNS = ("id", "mask_size", "positives_native", "share_native", "eval_size",
               "positives_at_size", "share_at_size")


def _hw_text(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"  # width x height, as image sizes are usually written


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "median": statistics.median(values),
            "min": min(values), "max": max(values)}


def dataset_metrics(image_dir: str | Path, mask_dir: str | Path, out: str | Path,
                    size: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure every pair's wrinkle share, write the CSV, summary and histogram; return the summary.

    `size` is the square evaluation size; None measures each mask at its image's own size, which
    is what training and evaluation see by default. Pooled shares sum pixels over all pairs (micro).
    """
    # utils.data.dataset pulls in torch and albumentations (seconds): import it only when needed, so
    # that --help stays instant.
    from utils.data.pairs import find_pairs, image_size_of

    if size is not None and size < 1:
        raise UserError(f"--size must be a positive number of pixels, got {size}")
    report = find_pairs(image_dir, mask_dir, progress=progress)
    rows: list[dict[str, Any]] = []
    left_out = [{"file": f, "problem": p} for f, p in report.bad_files]
    for pair in tqdm(report.pairs, desc="measuring masks", unit="mask", file=sys.stderr,
                     disable=not progress):
        assert pair.mask is not None  # find_pairs with a mask folder pairs every image it keeps
        try:
            mask = read_mask(pair.mask)
            eval_hw = (size, size) if size else image_size_of(pair.image)
        except UserError as exc:  # a file that passed the header check but does not decode
            left_out.append({"file": str(pair.mask), "problem": str(exc)})
            continue
        at_size = resize_mask(mask, eval_hw)
        pos_native, pos_size = int(mask.sum()), int(at_size.sum())
        rows.append({"id": pair.id, "mask_hw": mask.shape, "eval_hw": eval_hw,
                     "positives_native": pos_native, "pixels_native": mask.size,
                     "positives_at_size": pos_size, "pixels_at_size": at_size.size})
    if not rows:
        raise UserError(f"no usable image/mask pairs in {image_dir} and {mask_dir}")

    for row in rows:
        row["share_native"] = row["positives_native"] / row["pixels_native"]
        row["share_at_size"] = row["positives_at_size"] / row["pixels_at_size"]
    native = [r["share_native"] for r in rows]
    scaled = [r["share_at_size"] for r in rows]
    mask_sizes = sorted({_hw_text(r["mask_hw"]) for r in rows})
    eval_sizes = sorted({_hw_text(r["eval_hw"]) for r in rows})
    summary: dict[str, Any] = {
        "images": len(rows),
        "image_dir": str(image_dir),
        "mask_dir": str(mask_dir),
        "mask_sizes": mask_sizes,
        "eval_size": eval_sizes[0] if len(eval_sizes) == 1 else "each image's own size",
        "pooled_share_native": sum(r["positives_native"] for r in rows)
        / sum(r["pixels_native"] for r in rows),
        "pooled_share_at_size": sum(r["positives_at_size"] for r in rows)
        / sum(r["pixels_at_size"] for r in rows),
        "per_image_share_native": _stats(native),
        "per_image_share_at_size": _stats(scaled),
        "empty_masks": sum(r["positives_native"] == 0 for r in rows),
        "images_without_masks": len(report.images_without_masks),
        "masks_without_images": len(report.masks_without_images),
        "left_out": left_out,
        "mask_rule": MASK_RULE,
        "resize_rule": RESIZE_RULE,
    }

    out = Path(out)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r["id"], _hw_text(r["mask_hw"]), r["positives_native"],
                         f"{r['share_native']:.8f}", _hw_text(r["eval_hw"]),
                         r["positives_at_size"], f"{r['share_at_size']:.8f}"])
    write_text(out / CSV_NAME, buf.getvalue())
    write_json(out / SUMMARY_NAME, summary)
    plot_share_histogram(out / HIST_NAME, native, scaled, summary)
    return summary


def plot_share_histogram(path: str | Path, native: list[float], scaled: list[float],
                         summary: dict[str, Any]) -> None:
    """Histogram of per-image shares (percent) at both resolutions, pooled shares as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    native_pc = np.asarray(native) * 100
    scaled_pc = np.asarray(scaled) * 100
    bins = np.histogram_bin_edges(np.concatenate([native_pc, scaled_pc]), bins=30)
    native_label = f"mask resolution ({', '.join(summary['mask_sizes'])})"
    size_label = f"evaluation size ({summary['eval_size']})"
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.hist(scaled_pc, bins=bins, color="tab:blue", alpha=0.6, label=size_label)
    ax.hist(native_pc, bins=bins, histtype="step", color="tab:orange", lw=1.5, label=native_label)
    ax.axvline(summary["pooled_share_at_size"] * 100, color="tab:blue", ls="--",
               label=f"pooled {summary['pooled_share_at_size']:.2%}")
    ax.axvline(summary["pooled_share_native"] * 100, color="tab:orange", ls="--",
               label=f"pooled {summary['pooled_share_native']:.2%}")
    ax.set(xlabel="wrinkle pixels per image (%)", ylabel="images",
           title=f"Wrinkle share per image (n = {summary['images']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for the terminal: pooled and per-image shares at both resolutions."""
    native, scaled = summary["per_image_share_native"], summary["per_image_share_at_size"]
    lines = [
        f"{summary['images']} pairs; wrinkle share pooled over all pixels: "
        f"{summary['pooled_share_native']:.3%} at mask resolution "
        f"({', '.join(summary['mask_sizes'])}), "
        f"{summary['pooled_share_at_size']:.3%} at {summary['eval_size']} "
        "(masks shrunk by max-pool)",
        f"per image at mask resolution: median {native['median']:.3%}, "
        f"min {native['min']:.3%}, max {native['max']:.3%}",
        f"per image at {summary['eval_size']}: median {scaled['median']:.3%}, "
        f"min {scaled['min']:.3%}, max {scaled['max']:.3%}; empty masks: {summary['empty_masks']}",
    ]
    if summary["images_without_masks"] or summary["masks_without_images"]:
        lines.append(f"not counted: {summary['images_without_masks']} images without a mask, "
                     f"{summary['masks_without_images']} masks without an image")
    for item in summary["left_out"]:
        lines.append(f"left out {item['file']}: {item['problem']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python utils/data/dataset_metrics.py --image-dir "
                                       "data/images256x256 --mask-dir data/manual_wrinkle_masks "
                                       "--out runs/dataset-metrics --size 256")
    p.add_argument("-i", "--image-dir", required=True, help="images (flat or FFHQ subfolders)")
    p.add_argument("-m", "--mask-dir", required=True, help="masks, matched to images by id")
    p.add_argument("-o", "--out", required=True, help="folder for the CSV, JSON and histogram")
    p.add_argument("-s", "--size", type=int,
                   help="square evaluation size in pixels (default: each image's own size)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.size is not None and args.size < 1:
        p.error("--size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = dataset_metrics(args.image_dir, args.mask_dir, args.out, size=args.size,
                              progress=not args.no_progress)
    print(format_summary(summary))
    out = Path(args.out)
    print(f"wrote {out / CSV_NAME}, {out / SUMMARY_NAME}, {out / HIST_NAME}")
    return 0


if __name__ == "__main__":
    run_cli(main)
