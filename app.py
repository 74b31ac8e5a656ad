#!/usr/bin/env python
"""A browser demo: upload a face (or use the webcam, or paste one) and see its wrinkles, a
confidence heatmap, the share of the face they cover and a table per face region.

Uses the bundled model by default (the texture-map baseline if no weights are present) and the
same predictor as predict.py, so what the page shows is what predict.py writes. It serves on this
machine only (127.0.0.1) unless told otherwise; share links are off unless --share is given.
Uploaded photos are deleted from the server as soon as they are read (see `_forget_upload`).
"""

from __future__ import annotations

import argparse
import os

from utils.demo import (  # re-exported: the demo's API for notebooks and tests
    TABLE_HEADERS,
    build_demo,
    model_info,
    run_prediction,
    serve,
)
from utils.errors import run_cli
from utils.model_args import add_frame_model_arg, add_model_args, check_model_args, tta_choice

__all__ = ["TABLE_HEADERS", "build_demo", "model_info", "run_prediction", "serve"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  python app.py\n"
                                       "  python app.py --checkpoint res/cp/stage2_unet.pth "
                                       "--port 8080")
    # A hosting platform (a Hugging Face Space, a container) sets these two variables.
    host = os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    try:
        port = int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    except ValueError:
        p.error(f"GRADIO_SERVER_PORT={os.environ['GRADIO_SERVER_PORT']!r} is not a port number")
    p.add_argument("--host", default=host,
                   help=f"address to serve on (default: {host}, from GRADIO_SERVER_NAME when set,"
                        " else 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("-p", "--port", type=int, default=port,
                   help=f"port (default: {port}, from GRADIO_SERVER_PORT when set, else 7860)")
    add_model_args(p)
    add_frame_model_arg(p)
    p.add_argument("--share", action="store_true",
                   help="also make a public gradio.live link (off by default: it sends the page "
                        "through Gradio's servers)")
    args = p.parse_args(argv)
    if not 1 <= args.port <= 65535:
        p.error("--port must be between 1 and 65535")
    check_model_args(p, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from utils.inference.predictor import WrinklePredictor  # here, so that --help answers at once

    predictor = WrinklePredictor.from_choice(args.checkpoint, args.baseline, device=args.device,
                                             precision=args.precision, backend=args.backend,
                                             tta=tta_choice(args))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: serving on {args.host}: other machines on the network can use the demo")
    frames = predictor.for_frames(args.frame_model)
    serve(build_demo(predictor, frames), args.host, args.port, args.share)
    return 0


if __name__ == "__main__":
    run_cli(main)
