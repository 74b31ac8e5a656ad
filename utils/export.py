#!/usr/bin/env python
"""Export a training checkpoint for shipping: weights only (no optimizer, RNG or history), in half
precision if asked, with its recipe, split, metrics and an optional new decision threshold.

    python utils/export.py res/cp/my-run/best.pth res/cp/my_model.pth --half --threshold 0.4
    python utils/export.py res/cp/my-run/best.pth res/cp/my_model.safetensors
    python utils/export.py res/cp/default_ffhq256.pth out/wrinkle.onnx
    python utils/export.py res/cp/stage2_unet.pth out/official.xml --format openvino

ONNX (dynamic batch, height and width; sizes multiples of 16) and OpenVINO IR (.xml + .bin) take
any checkpoint the predictor reads, the official U-Net's included, and carry its recipe and
threshold, so predict.py and app.py load them on their own (-m out/wrinkle.onnx).

The exported file loads like any checkpoint of this project (weights are cast back to float32 on
loading). With --check-images, the masks of the exported weights are compared with the original's
on real faces, and the export is refused if fewer than 99.5 % of pixels agree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.errors import UserError, run_cli

RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "history", "stale_epochs")


def export_checkpoint(src: str | Path, dst: str | Path, half: bool = False,
                      threshold: float | None = None, note: str | None = None) -> dict:
    """Write the slimmed checkpoint; return it."""
    from utils.checkpoints import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(src)
    out = {k: v for k, v in ckpt.items() if k not in (*RESUME_KEYS, "format", "format_version")}
    if half:
        out["state_dict"] = {k: v.half() if v.is_floating_point() else v
                             for k, v in ckpt["state_dict"].items()}
        out["storage"] = "float16 weights (cast to float32 when loaded)"
    if threshold is not None:
        if not 0 < threshold < 1:
            raise UserError(f"--threshold must be between 0 and 1, got {threshold}")
        out["threshold"] = float(threshold)
    out["exported_from"] = str(src)
    if note:
        out["note"] = note
    dst = Path(dst)
    if dst.suffix == ".safetensors":
        from utils.inference import save_safetensors

        save_safetensors(out, dst)
    else:
        save_checkpoint(dst, out)
    return out


def export_deployable(src: str | Path, dst: str | Path, fmt: str) -> Path:
    """Write any loadable checkpoint as ONNX or OpenVINO IR, recipe included."""
    from utils.backends import export_onnx, export_openvino
    from utils.inference import load_any_checkpoint

    loaded = load_any_checkpoint(src)
    if loaded.model is None or loaded.kind == "texture_baseline":
        raise UserError(f"{src}: nothing to export")
    return export_onnx(loaded, dst) if fmt == "onnx" else export_openvino(loaded, dst)


def mask_agreement(a: str | Path, b: str | Path, images: list[Path]) -> float:
    """Smallest per-image share of equal mask pixels between two checkpoints (fp32 inference,
    both at the first one's threshold: this checks the weights, not a changed threshold)."""
    from utils.images import load_image
    from utils.inference import WrinklePredictor

    pa = WrinklePredictor(a, precision="fp32", face_region="none", backend="torch")
    pb = WrinklePredictor(b, precision="fp32", face_region="none", backend="auto")
    worst = 1.0
    for path in images:  # aligned faces: the model on the image itself, as it was trained
        img = load_image(path)
        thr = pa.threshold
        ma, mb = pa.predict_aligned(img, thr).mask, pb.predict_aligned(img, thr).mask
        worst = min(worst, float((ma == mb).mean()))
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="a checkpoint written by train.py (best.pth or last.pth)")
    p.add_argument("dst", help="output file (.pth, .safetensors, .onnx, or .xml for OpenVINO)")
    p.add_argument("--format", choices=["auto", "pth", "onnx", "openvino"], default="auto",
                   help="auto: from the output's suffix")
    p.add_argument("--half", action="store_true", help="store the weights as float16")
    p.add_argument("-t", "--threshold", type=float, help="a new decision threshold")
    p.add_argument("--note", help="a free-text note stored in the file")
    p.add_argument("--check-images", nargs="+", type=Path, metavar="IMAGE",
                   help="real faces on which the export's masks must agree with the source's")
    args = p.parse_args(argv)
    if Path(args.dst).resolve() == Path(args.src).resolve():
        raise UserError(f"{args.dst}: the output would overwrite the input")
    suffix = Path(args.dst).suffix
    fmt = args.format if args.format != "auto" else {".onnx": "onnx", ".xml": "openvino"}.get(
        suffix, "pth")
    if (fmt == "onnx" and suffix != ".onnx") or (fmt == "openvino" and suffix != ".xml"):
        raise UserError(f"{args.dst}: a {fmt} model is written to a "
                        f"{'.onnx' if fmt == 'onnx' else '.xml'} file")
    if fmt == "pth":
        export_checkpoint(args.src, args.dst, args.half, args.threshold, args.note)
    else:
        if args.half or args.threshold is not None or args.note:
            raise UserError("--half, --threshold and --note apply to .pth/.safetensors exports")
        export_deployable(args.src, args.dst, fmt)
    size = sum(f.stat().st_size for f in (Path(args.dst), Path(args.dst).with_suffix(".bin"))
               if f.is_file() and (f == Path(args.dst) or suffix == ".xml")) / 1e6
    print(f"written {args.dst} ({size:.1f} MB)")
    if args.check_images:
        agree = mask_agreement(args.src, args.dst, args.check_images)
        print(f"mask agreement with {args.src}: {100 * agree:.3f} % (worst image)")
        if agree < 0.995:
            Path(args.dst).unlink()
            raise UserError(f"masks agree on only {100 * agree:.2f} % of pixels; export removed")
    return 0


if __name__ == "__main__":
    run_cli(main)
