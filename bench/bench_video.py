#!/usr/bin/env python
"""Video: frames per second of the whole `predict.py clip.mp4` path, detector calls per frame,
and how steady the wrinkle share of a still face is with and without landmark smoothing.

Clips are made from the labelled faces of ../shared (utils/faces/photos.py `make_clip`): one face
of 220 px (640x480) or 400 px (1280x720) in a frame, hand-held (the camera drifts by up to 3 px
and 1.5 degrees) or on a tripod (no drift), exposure flicker of up to 6 %, sensor noise of 2 grey
levels, and H.264 compression (crf 23) from being saved as mp4. Measured in this one process,
after a warm-up:

- speed: `predict_video` (what predict.py runs for a clip, with its frame model: decode, tracking, model, statistics,
  drawing, H.264 encoding, CSVs and plot) on each clip: analysed frames per second, detector
  passes per frame (HOG, CNN), and the seconds of each stage;
- the app's live mode: its handler's frames per second on 640x480 webcam frames;
- stability: the coefficient of variation (sd / mean) of the whole-face wrinkle share over each
  still clip, with smoothing and without (`--no-smooth`).

    python bench/bench_video.py --out runs/bench_video.json
    python bench/bench_video.py --clips 2 --frames 30      # a quick look
    python bench/bench_video.py --frame-model photo        # the photo model on every frame
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import DATA, labelled_ids, run_cli, save
from utils.data.images import load_image
from utils.faces.detection import detector_calls
from utils.faces.photos import make_clip
from utils.inference.predictor import WrinklePredictor
from utils.inference.video import H264Writer, predict_video
from utils.runtime import machine_facts, profile_stages

SIZES = {"640x480": ((640, 480), 220.0), "1280x720": ((1280, 720), 400.0)}


def save_clip(path: Path, face: np.ndarray, frames: int, size: tuple[int, int], face_px: float,
              handheld: bool, seed: int) -> Path:
    clip = make_clip([face], frames, size=size, face_px=face_px, seed=seed,
                     jitter_px=3.0 if handheld else 0.0, jitter_deg=1.5 if handheld else 0.0)
    w = H264Writer(path, clip.fps)
    for f in clip.frames:
        w.write(f)
    w.close()
    return path


def run(predictor: WrinklePredictor, clip: Path, out: Path, smooth: bool) -> dict:
    calls = dict(detector_calls)
    with profile_stages() as stages:
        t0 = time.perf_counter()
        res = predict_video(predictor, clip, out, smooth=smooth, progress=False,
                            log=lambda _: None)
        seconds = time.perf_counter() - t0
    with open(res["files"]["frames"], newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["face"] == "0"]
    shares = np.array([float(r["wrinkle_share"]) for r in rows])
    n = res["frames"]
    return {"frames": n, "seconds": seconds, "fps": n / seconds,
            "hog_per_frame": (detector_calls["hog"] - calls.get("hog", 0)) / n,
            "cnn_per_frame": (detector_calls["cnn"] - calls.get("cnn", 0)) / n,
            "tracked_frames": len(rows), "tracks": res["tracks"],
            "share_cv": float(shares.std() / shares.mean()) if shares.mean() > 0 else None,
            "stages_s_per_frame": {k: v / n for k, v in sorted(stages.items())}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help=f"data folder (default {DATA})")
    p.add_argument("--clips", type=int, default=6, help="faces, one clip each (default 6)")
    p.add_argument("--frames", type=int, default=60, help="frames per clip (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frame-model", default="auto", metavar="auto|photo|FILE",
                   help="the model of the frames, as predict.py's --frame-model (default auto: "
                        "the bundled frame model; photo: the bundled photo model)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    ids = labelled_ids(args.data)
    ids = ids[:: max(1, len(ids) // args.clips)][: args.clips]
    predictor = WrinklePredictor().for_frames(args.frame_model, quiet=True)
    print(f"frames read by {predictor.description}", flush=True)
    results: dict = {"machine": machine_facts(), "model": predictor.description,
                     "clips": args.clips, "frames_per_clip": args.frames, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        warm = save_clip(tmp / "warm.mp4", load_image(args.data / "images256x256" /
                                                     f"{ids[0]}.jpg"), 8, (640, 480), 220, True, 99)
        run(predictor, warm, tmp / "o", True)
        for size_name, (size, face_px) in SIZES.items():
            for camera in ("handheld", "tripod"):
                if size_name != "640x480" and camera == "tripod":
                    continue  # stability is measured at 640x480; 720p is for speed
                for smooth in (True, False):
                    key = f"{size_name} {camera} {'smooth' if smooth else 'no-smooth'}"
                    per = []
                    for k, i in enumerate(ids):
                        face = load_image(args.data / "images256x256" / f"{i}.jpg")
                        clip = save_clip(tmp / f"{i}_{size_name}_{camera}.mp4", face,
                                         args.frames, size, face_px, camera == "handheld",
                                         args.seed + k)
                        per.append(run(predictor, clip, tmp / "o", smooth))
                    fps = sum(r["frames"] for r in per) / sum(r["seconds"] for r in per)
                    cvs = [r["share_cv"] for r in per if r["share_cv"] is not None]
                    stages: dict[str, float] = {}
                    for r in per:
                        for s, v in r["stages_s_per_frame"].items():
                            stages[s] = stages.get(s, 0.0) + v / len(per)
                    summary = {"fps": fps,
                               "hog_per_frame": statistics.mean(r["hog_per_frame"] for r in per),
                               "cnn_per_frame": statistics.mean(r["cnn_per_frame"] for r in per),
                               "face_found_share": sum(r["tracked_frames"] for r in per)
                               / sum(r["frames"] for r in per),
                               "share_cv_mean": statistics.mean(cvs) if cvs else None,
                               "share_cv_per_clip": cvs,
                               "stages_s_per_frame": stages}
                    results["runs"][key] = summary
                    print(f"{key:34s} {fps:5.1f} frames/s  HOG {summary['hog_per_frame']:.3f}"
                          f"/frame  CNN {summary['cnn_per_frame']:.3f}/frame  face found "
                          f"{summary['face_found_share']:.1%}  share CV "
                          f"{summary['share_cv_mean']:.3f}", flush=True)
                    top = sorted(stages.items(), key=lambda kv: -kv[1])[:6]
                    print("    " + ", ".join(f"{s} {1000 * v:.1f} ms" for s, v in top))
        # The app's live mode: its handler on 640x480 webcam frames of a hand-held face, one
        # after another (the server side of the stream; the page asks for at most 10 a second).
        from utils.demo import run_live

        face = load_image(args.data / "images256x256" / f"{ids[0]}.jpg")
        frames = make_clip([face], args.frames, face_px=220, seed=args.seed).frames
        tracker = None
        run_live(predictor, frames[0], predictor.threshold, None)
        t0 = time.perf_counter()
        for f in frames:
            _, _, tracker = run_live(predictor, f, predictor.threshold, tracker)
        live = len(frames) / (time.perf_counter() - t0)
        results["live_handler_fps"] = live
        print(f"live handler (app, 640x480 webcam frames): {live:.1f} frames/s")
    save(results, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
