"""The model flags every user-facing script shares (-m/--checkpoint, --baseline, --device,
--precision, --backend, --tta), in one place; light to import, so that --help answers at once."""

from __future__ import annotations

import argparse


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add the flags that choose the wrinkle model and where it runs."""
    p.add_argument("-m", "--checkpoint",
                   help="wrinkle model (default: the bundled res/cp/default_ffhq256.pth)")
    p.add_argument("--baseline", action="store_true",
                   help="use the texture-map baseline instead of a trained model")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", choices=["auto", "int8", "bf16", "fp32"],
                   help="auto: int8 on OpenVINO (quantised once per model file, then cached), "
                        "else bf16 where the device supports it, else fp32; int8 runs on "
                        "OpenVINO only, bf16 on CPUs with AVX-512 bf16 or AMX and on GPUs")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "openvino"],
                   help="auto: OpenVINO on a CPU where it is installed, else torch (CUDA "
                        "included); a .onnx or .xml model always runs on OpenVINO")
    add_tta_arg(p)


def add_scale_arg(p: argparse.ArgumentParser) -> None:
    """--ipd-mm: the person's interpupillary distance, the scale of every mm figure."""
    p.add_argument("--ipd-mm", type=float, metavar="MM",
                   help="the person's measured interpupillary distance in mm (pupil centre to "
                        "pupil centre), the scale of every mm figure; default: the adult mean "
                        "of 63 mm, which puts about +-6 %% (one sd between adults) on them")


def add_frame_model_arg(p: argparse.ArgumentParser) -> None:
    """--frame-model: which model reads clips and the live webcam."""
    p.add_argument("--frame-model", default="auto", metavar="auto|photo|FILE",
                   help="wrinkle model for clips and the live webcam. auto (default): the "
                        "bundled frame model res/cp/frames_ffhq256.pth (a student of the "
                        "bundled model at a quarter of its cost, for 15 frames/s on two cores) "
                        "when photos use the bundled model, else the photo model; photo: the "
                        "photo model on every frame; or a checkpoint file. The frames CSV's "
                        "model column and the overlay name the model of every frame")


def add_tta_arg(p: argparse.ArgumentParser) -> None:
    """--tta: the test-time augmentation, as the checkpoint names it or overridden."""
    p.add_argument("--tta", default="auto", choices=["auto", "none", "flip"],
                   help="test-time augmentation: flip averages each face with its mirror image "
                        "(twice the model time); auto: what the checkpoint names (none unless "
                        "it was exported with --tta)")


def tta_choice(args: argparse.Namespace) -> str | None:
    """The predictor's tta argument for --tta (None: the checkpoint's own)."""
    return None if args.tta == "auto" else args.tta


def check_model_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors of those flags, and of a --threshold beside them (argparse exits with the
    message)."""
    if args.baseline and args.checkpoint:
        p.error("--baseline and --checkpoint exclude each other")
    frame_model = getattr(args, "frame_model", "auto")
    if frame_model not in ("auto", "photo") and args.baseline:
        p.error("--frame-model FILE and --baseline exclude each other")
    ipd = getattr(args, "ipd_mm", None)
    if ipd is not None and not 40 <= ipd <= 90:
        p.error(f"--ipd-mm {ipd:g}: an adult's interpupillary distance is about 50-75 mm")
    threshold = getattr(args, "threshold", None)
    if threshold is not None and not 0 < threshold < 1:
        p.error("--threshold must be between 0 and 1")
