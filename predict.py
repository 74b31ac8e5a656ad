#!/usr/bin/env python
"""Find wrinkles in photos: every face is found (dlib, 68 landmarks), aligned exactly as FFHQ
was, predicted, measured per region (forehead, between the brows, crow's feet, under the eyes,
nasolabial folds, around the mouth, cheeks) and pasted back into the photo.

Writes per photo a mask and an overlay of the whole photo with all its faces, its wrinkle lines
(<name>_lines.csv, one row per line: region, length and width in mm, angle; their points in
<name>_lines.json), and wrinkles.csv with one row per face: where it is, the detector's score,
and the statistics (share of the face; per region the share, pixel counts and, in mm, the line
count, total length, mean width and density). Millimetres come from the distance between the
pupils: 63 mm unless --ipd-mm gives the person's own.

Folder runs are resumable: wrinkles.csv gains each photo's rows as soon as it is finished, and
predict_log.csv records it; after Ctrl-C or a crash the same command goes on where it stopped
(--overwrite redoes everything). The output folder is never read as input, even inside it.

A video (mp4, mov, avi, webm, mkv: any file whose content is a video, whatever its name) is
analysed frame by frame: every face followed with an id that stays while it is in view (a
detector every 10 frames, landmarks followed in between and smoothed over time), and written as
<clip>_frames.csv (a row per frame and face), <clip>_overlay.mp4 (H.264, plays in a browser),
<clip>_summary.csv (per face and region: mean, sd, min, max and the frame of the max) and
<clip>_regions.png (each region's wrinkle share over time). Clips are always redone in full.
Frames are read by the frame model (--frame-model): with the bundled photo model, the bundled
student a quarter of its cost, so that a clip keeps up at 15 frames/s on two cores.

Uses the bundled model by default. Also loads the FFHQ-Wrinkle authors' official U-Net
(stage2_unet.pth), the ResNet-50 wrinkle U-Net (wrinkle_model.pth), .safetensors files, and any
checkpoint written by train.py; --baseline gives the texture-map baseline.
"""

from __future__ import annotations

import argparse

from utils.errors import UserError, run_cli
from utils.model_args import (
    add_frame_model_arg,
    add_model_args,
    add_scale_arg,
    check_model_args,
    tta_choice,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  python predict.py selfie.jpg group.jpg --out out/\n"
                                       "  python predict.py photos/ --out out/ --faces largest\n"
                                       "  python predict.py face.png --regions --aligned --out out/\n"
                                       "  python predict.py clip.mp4 --out out/ --every 2 "
                                       "--max-frames 600\n"
                                       "  python predict.py face.png --checkpoint "
                                       "res/cp/stage2_unet.pth --out out/")
    p.add_argument("inputs", nargs="+",
                   help="image or video files, folders (searched recursively) or globs")
    p.add_argument("-o", "--out", default="out", help="output folder (default: out)")
    add_model_args(p)
    p.add_argument("-t", "--threshold", type=float, help="decision threshold (default: the model's)")
    p.add_argument("--probs", action="store_true", help="also write probability maps (_prob.png)")
    p.add_argument("-b", "--batch-size", type=int, default=4, help="photos per model call")
    p.add_argument("--faces", default="all", choices=["all", "largest"],
                   help="analyse every face in a photo (default) or only the largest")
    p.add_argument("--no-face", default="skip", choices=["skip", "whole"],
                   help="a photo in which no face is found: report it by name and count it as "
                        "failed (skip, the default), or analyse the whole photo as if it were "
                        "an aligned face, without regions (whole)")
    p.add_argument("--face-region", default="auto", choices=["auto", "none"],
                   help="measure statistics in the face region (auto: BiSeNet when its weights "
                        "are at res/cp/79999_iter.pth, else the landmark region) or the whole "
                        "aligned frame (none)")
    add_scale_arg(p)
    p.add_argument("--regions", action="store_true",
                   help="draw the region outlines on the overlays")
    p.add_argument("--landmarks", action="store_true",
                   help="draw the 68 landmarks on the overlays")
    p.add_argument("--report", action="store_true",
                   help="also write <name>_report.html per photo: a self-contained page, "
                        "printable on A4, with each face's wrinkle lines, a face map shaded by "
                        "region density, the regions in mm, the scale and the model; per clip, "
                        "<clip>_report.html with each region's share over time and its mean "
                        "and spread in share and in mm")
    p.add_argument("--aligned", action="store_true",
                   help="also write each face as the model saw it (<name>_face<N>.png, aligned)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo photos an earlier run into the same --out already finished "
                        "(default: a rerun skips them and goes on with the rest)")
    v = p.add_argument_group("videos")
    add_frame_model_arg(v)
    v.add_argument("--every", type=int, default=1, metavar="N",
                   help="analyse every N-th frame (default 1: all); the overlay video then runs "
                        "at the clip's frame rate divided by N")
    v.add_argument("--max-frames", type=int, metavar="N",
                   help="stop after N analysed frames (default: the whole clip)")
    v.add_argument("--no-smooth", action="store_true",
                   help="do not smooth the landmarks over time (each frame aligned from its own "
                        "landmarks only: the aligned face jitters by a pixel or two)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.every < 1:
        p.error("--every must be at least 1")
    if args.max_frames is not None and args.max_frames < 1:
        p.error("--max-frames must be at least 1")
    if args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    check_model_args(p, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from utils.io import check_output_dir

    check_output_dir(args.out)  # before the model loads: bad outputs or inputs fail at once
    from utils.inference.batch import collect_inputs, predict_files

    files, failures = collect_inputs(args.inputs, exclude=args.out)
    if not files:
        raise UserError("; ".join(failures))
    from utils.data.videos import VIDEO_EXTENSIONS, is_video

    videos = [f for f in files if f.suffix.lower() in VIDEO_EXTENSIONS or is_video(f)]
    from utils.inference.predictor import WrinklePredictor  # here, so that --help answers at once

    kw = {"device": args.device, "precision": args.precision, "backend": args.backend,
          "tta": tta_choice(args), "faces": args.faces,
          "no_face": args.no_face, "face_region": args.face_region, "ipd_mm": args.ipd_mm}
    predictor = WrinklePredictor.from_choice(args.checkpoint, args.baseline, **kw)
    failed = 0
    if not videos:  # photos only: the folder run reports the inputs it could not find itself
        items = args.inputs
    else:
        for miss in failures:
            print(f"skipped {miss}")
        failed += len(failures)
        items = [str(f) for f in files if f not in videos]
    if items:
        res = predict_files(predictor, items, args.out, args.threshold, args.probs,
                            args.batch_size, progress=not args.no_progress, regions=args.regions,
                            landmarks=args.landmarks, aligned=args.aligned, report=args.report,
                            overwrite=args.overwrite)
        failed += len(res["failed"])
    if videos:
        from utils.inference.batch import out_names
        from utils.inference.video import predict_video

        stems = out_names(videos)
        frames = predictor.for_frames(args.frame_model)
        for clip in videos:
            try:
                predict_video(frames, clip, args.out, args.threshold, args.every,
                              args.max_frames, smooth=not args.no_smooth,
                              progress=not args.no_progress, regions=args.regions,
                              landmarks=args.landmarks, stem=stems[clip], report=args.report)
            except UserError as exc:
                print(f"skipped {clip}: {str(exc).removeprefix(f'{clip}: ')}")
                failed += 1
    return 1 if failed else 0

if __name__ == "__main__":
    run_cli(main)
