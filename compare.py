#!/usr/bin/env python
"""Before and after: how a person's wrinkles changed between two photos (or over a series).

Each photo goes the way of predict.py: its largest face (or --face N) is found, aligned exactly as
FFHQ was (68 landmarks), predicted and measured per region in that aligned frame. The first photo
is the reference; for every region (and the whole face) the comparison gives the wrinkle share
(wrinkle pixels / region pixels), line count and line length of each photo and the change from the
first. A change counts as one only when it is larger than what the method measures between two
photos of the same unchanged face (the noise band of docs/compare_noise.json, measured by
bench/bench_compare.py); otherwise it is "within measurement noise".

Writes to --out: comparison.csv (a row per region and photo: share, lines and lengths, also in
mm), side_by_side.png (the aligned faces with their wrinkles), difference.png (wrinkles only
before, only after, in both; difference_<N>.png for each later photo of a series), summary.txt
and, with --report, report.html (one printable page). Warns when the faces may be different people
(their landmark geometry differs more than between two photos of one face) and when one photo has
much less resolution than the other (it limits the comparison).
"""

from __future__ import annotations

import argparse

from utils.errors import run_cli
from utils.model_args import add_model_args, add_scale_arg, check_model_args, tta_choice


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n"
                                       "  python compare.py before.jpg after.jpg --out out/cmp/\n"
                                       "  python compare.py visit1.jpg visit2.jpg visit3.jpg "
                                       "--out out/series/\n"
                                       "  python compare.py a.jpg b.jpg --face 1 --out out/cmp/")
    p.add_argument("photos", nargs="+", help="two or more photos of one person, in time order")
    p.add_argument("-o", "--out", default="out/compare", help="output folder (default: out/compare)")
    p.add_argument("--face", type=int,
                   help="which face of each photo (0 = the largest, the default)")
    add_model_args(p)
    p.add_argument("-t", "--threshold", type=float, help="decision threshold (default: the model's)")
    add_scale_arg(p)
    p.add_argument("--report", action="store_true",
                   help="also write report.html: a self-contained page, printable on A4, with "
                        "the aligned faces, the difference pictures and per region the change "
                        "against its noise band and the lines in mm")
    args = p.parse_args(argv)
    if len(args.photos) < 2:
        p.error("give at least two photos (the first is the reference)")
    if args.face is not None and args.face < 0:
        p.error("--face must be 0 or more")
    check_model_args(p, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from utils.io import check_output_dir

    check_output_dir(args.out)  # before the model loads: a bad --out fails at once
    from utils.compare import compare_photos, summary_text, write_outputs  # after --help
    from utils.data.images import load_image
    from utils.inference.predictor import WrinklePredictor

    photos = [(path, load_image(path)) for path in args.photos]
    predictor = WrinklePredictor.from_choice(args.checkpoint, args.baseline, device=args.device,
                                             precision=args.precision, backend=args.backend,
                                             tta=tta_choice(args), ipd_mm=args.ipd_mm)
    comp = compare_photos(predictor, photos, args.face, threshold=args.threshold)
    files = write_outputs(comp, args.out, report=args.report)
    print(summary_text(comp))
    print(f"outputs in {args.out}/: " + ", ".join(sorted(p.split("/")[-1] for p in files.values())))
    return 0


if __name__ == "__main__":
    run_cli(main)
