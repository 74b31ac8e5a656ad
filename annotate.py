#!/usr/bin/env python
"""Draw wrinkle labels of your own: a browser page walks a folder of photos, every face (largest
first) aligned as FFHQ was at 1024 px, with the model's proposal as a layer to correct (brush,
eraser, zoom, undo), and saves each face in the FFHQ-Wrinkle layout:

    <out>/face_images/<id>.png, <out>/manual_wrinkle_masks/<id>.png (1024x1024, 0/255),
    <out>/annotations.jsonl (one line per save: who, which photo and face, the alignment, the
    start model and threshold, pixels added and removed against the proposal, seconds spent)

A rerun on the same --out opens the first face without a label; saved faces can be reopened and
corrected. Ids are made by the tool (l00001, ...). train.py reads the folder as it is:

    python train.py --config configs/finetune_small.yaml --init res/cp/default_ffhq256.pth \\
        --image-dir my_labels/face_images --mask-dir my_labels/manual_wrinkle_masks
"""

from __future__ import annotations

import argparse

from utils.errors import UserError, run_cli
from utils.model_args import add_model_args, check_model_args, tta_choice


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python annotate.py photos/ --out my_labels/ "
                                       "--annotator ana")
    p.add_argument("inputs", nargs="+", help="photos, folders (searched recursively) or globs")
    p.add_argument("-o", "--out", required=True, help="the label folder (created; a rerun goes on)")
    p.add_argument("-a", "--annotator", required=True, help="who draws (saved with every label)")
    p.add_argument("--start", default="model", choices=["model", "empty"],
                   help="start each face from the model's proposal (default) or from nothing")
    p.add_argument("-t", "--threshold", type=float,
                   help="the proposal's threshold (default: the model's)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("-p", "--port", type=int, default=7861, help="port (default 7861)")
    add_model_args(p)
    args = p.parse_args(argv)
    if not 1 <= args.port <= 65535:
        p.error("--port must be between 1 and 65535")
    check_model_args(p, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from utils.io import check_output_dir

    check_output_dir(args.out)
    from utils.annotate import AnnotationSession, build_page
    from utils.data.videos import VIDEO_EXTENSIONS, is_video
    from utils.demo import serve
    from utils.inference.batch import collect_inputs
    from utils.inference.predictor import WrinklePredictor

    photos, failures = collect_inputs(args.inputs, exclude=args.out)
    photos = [p for p in photos if p.suffix.lower() not in VIDEO_EXTENSIONS and not is_video(p)]
    if not photos:
        raise UserError("; ".join(failures) or "no photo to label among the inputs")
    for miss in failures:
        print(f"skipped {miss}")
    predictor = None
    if args.start == "model":
        predictor = WrinklePredictor.from_choice(args.checkpoint, args.baseline,
                                                 device=args.device, precision=args.precision,
                                                 backend=args.backend, tta=tta_choice(args))
    session = AnnotationSession(photos, args.out, args.annotator, predictor, args.start,
                                args.threshold)
    done, total = session.progress()
    print(f"{total} faces in {len(photos)} photos, {done} labelled in {args.out}/")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: serving on {args.host}: other machines on the network can open the page")
    serve(build_page(session), args.host, args.port)
    return 0


if __name__ == "__main__":
    run_cli(main)
