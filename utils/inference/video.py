"""Video prediction behind predict.py: every face of every frame tracked, aligned, predicted and
measured, with an overlay video, one CSV row per frame and face, a summary and a plot over time.

Frames are read by OpenCV (mp4, mov, avi, webm, mkv, ...); the overlay is written as H.264 in an
mp4 (yuv420p, faststart) by PyAV, whose wheel carries its own FFmpeg and x264, so that browsers
play it and nothing needs a system codec. Decoding and face tracking run in a thread ahead of the
model (dlib lets go of the interpreter), drawing and encoding in another behind it.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from utils.data.videos import probe_video, read_frames
from utils.errors import UserError
from utils.faces.regions import REGION_NAMES
from utils.faces.tracking import FaceTracker
from utils.inference.batch import csv_fields, csv_rows
from utils.inference.predictor import FoundFaces, WrinklePredictor, WrinkleResult
from utils.io import csv_text, write_text, write_with
from utils.visualize import caption, draw_faces, wrinkle_view

FRAMES_PER_CALL = 4  # frames whose faces go through the model together
# The model runs at most this many frames ahead of the encoder: what a stopped run still writes
# is bounded, and so is the memory that finished frames hold.
PENDING_FRAMES = 2 * FRAMES_PER_CALL


class H264Writer:
    """An H.264 mp4 that browsers play (yuv420p, moov atom first), written to a temporary file
    beside the target and moved onto it by `close()`, so a reader never sees half a file; after
    Ctrl-C `close()` still finishes the file with the frames written so far."""

    def __init__(self, path: str | Path, fps: float, crf: int = 23) -> None:
        import av  # the video dependency is needed only here

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.part{os.getpid()}.mp4")
        self.fps, self.crf, self.frames = fps, crf, 0
        self._av = av
        self._file: Any = None
        self._stream: Any = None

    def write(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if h % 2 or w % 2:  # 4:2:0 needs even sides: repeat the last row / column
            rgb = cv2.copyMakeBorder(rgb, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        if self._file is None:
            from fractions import Fraction

            self._file = self._av.open(str(self.tmp), "w", format="mp4",
                                       options={"movflags": "+faststart"})
            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._file.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = rgb.shape[1], rgb.shape[0]
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf), "preset": "veryfast"}
            self._stream.codec_context.time_base = 1 / rate
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        for packet in self._stream.encode(frame):
            self._file.mux(packet)
        self.frames += 1

    def close(self) -> bool:
        """Finish the file and move it into place; False when no frame was written."""
        if self._file is None:
            return False
        try:
            for packet in self._stream.encode():
                self._file.mux(packet)
        finally:
            self._file.close()
            self._file = None
        os.replace(self.tmp, self.path)
        return True

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.tmp.unlink(missing_ok=True)


def frame_fields() -> list[str]:
    """Columns of <clip>_frames.csv: the frame, its time, then wrinkles.csv's columns (with
    `face` the face's track id, stable while the face is followed)."""
    return ["frame", "time_s", *csv_fields()]


SUMMARY_FIELDS = ["face", "region", "frames", "mean_share", "sd_share", "min_share", "max_share",
                  "max_frame", "max_time_s", "mean_length_mm", "sd_length_mm", "notes"]


def summarise(rows: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """Per face (track id) and region ("face" = the whole face): mean, sd, min and max of the
    wrinkle share over the frames the face was analysed in, and the frame of the maximum."""
    out = []
    ids = sorted({r["face"] for r in rows if r.get("face", "") != ""}, key=int)
    for face_id in ids:
        mine = [r for r in rows if r.get("face") == face_id]
        for region in ("face", *REGION_NAMES):
            key = "wrinkle_share" if region == "face" else f"{region}_share"
            vals = [(float(r[key]), r) for r in mine if r.get(key, "") != ""]
            if not vals:
                continue
            x = np.array([v for v, _ in vals])
            top = vals[int(np.argmax(x))][1]
            mm_key = "length_mm" if region == "face" else f"{region}_length_mm"
            mm = np.array([float(r[mm_key]) for _, r in vals if r.get(mm_key, "") != ""])
            out.append({"face": face_id, "region": region, "frames": len(x),
                        "mean_share": f"{x.mean():.6f}", "sd_share": f"{x.std():.6f}",
                        "min_share": f"{x.min():.6f}", "max_share": f"{x.max():.6f}",
                        "max_frame": top["frame"], "max_time_s": top["time_s"],
                        "mean_length_mm": f"{mm.mean():.2f}" if len(mm) else "",
                        "sd_length_mm": f"{mm.std():.2f}" if len(mm) else "",
                        "notes": "; ".join(notes)})
    return out


def plot_regions(path: str | Path, rows: list[dict[str, Any]], title: str) -> None:
    """<clip>_regions.png: each region's wrinkle share over time, one panel per face (the four
    followed longest), the whole face in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.visualize import REGION_COLOURS

    ids = sorted({r["face"] for r in rows if r.get("face", "") != ""},
                 key=lambda i: -sum(r.get("face") == i for r in rows))[:4]
    ids = sorted(ids, key=int)
    fig, axes = plt.subplots(max(1, len(ids)), 1, figsize=(10, 2.8 * max(1, len(ids))),
                             squeeze=False)
    for ax, face_id in zip(axes[:, 0], ids or [None], strict=True):
        mine = [r for r in rows if face_id is not None and r.get("face") == face_id]
        if not mine:
            ax.text(0.5, 0.5, "no face found in any frame", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        t = [float(r["time_s"]) for r in mine]
        for region, colour in zip(REGION_NAMES, REGION_COLOURS, strict=False):
            ax.plot(t, [100 * float(r.get(f"{region}_share") or 0) for r in mine],
                    color=np.array(colour) / 255 * 0.85, lw=1, label=region.replace("_", " "))
        ax.plot(t, [100 * float(r["wrinkle_share"]) for r in mine], color="black", lw=2,
                label="whole face")
        ax.set_ylabel(f"face {face_id}: share %")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)")
    if ids:
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def video_outputs(out: Path, stem: str) -> dict[str, Path]:
    return {k: out / f"{stem}_{k}.{ext}" for k, ext in
            (("frames", "csv"), ("summary", "csv"), ("overlay", "mp4"), ("regions", "png"))}


def predict_video(predictor: WrinklePredictor, path: str | Path, out: str | Path,
                  threshold: float | None = None, every: int = 1, max_frames: int | None = None,
                  smooth: bool = True, progress: bool = True, regions: bool = False,
                  landmarks: bool = False, stem: str | None = None,
                  log: Callable[[str], None] = print, report: bool = False) -> dict[str, Any]:
    """Predict every `every`-th frame of a clip (at most `max_frames`): faces followed with
    stable ids (FaceTracker; landmarks smoothed over time unless `smooth` is off), aligned,
    predicted and measured. Writes to `out`: <stem>_frames.csv (a row per frame and face; a
    frame without a face is a row with a note), <stem>_overlay.mp4 (H.264, the clip's frame rate
    divided by `every`), <stem>_summary.csv and <stem>_regions.png. Ctrl-C keeps what was done:
    the video is finished with the frames so far and the tables written, then it is raised."""
    if every < 1:
        raise UserError("--every must be at least 1")
    if max_frames is not None and max_frames < 1:
        raise UserError("--max-frames must be at least 1")
    info = probe_video(path)
    thr = predictor._threshold(threshold)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = video_outputs(out, stem or info.path.stem)
    expected = math.ceil(info.frames / every) if info.frames else None
    if expected is not None and max_frames is not None:
        expected = min(expected, max_frames)
    fps_out = info.fps / every
    tracker = FaceTracker(smooth=smooth)
    done: queue.Queue = queue.Queue(maxsize=2 * FRAMES_PER_CALL)
    stop = threading.Event()

    def produce() -> None:
        """Decode and follow the faces, ahead of the model."""
        try:
            for index, rgb in read_frames(info, every, max_frames):
                if stop.is_set():
                    break
                t = index / info.fps
                faces = tracker.update(rgb, t)
                if predictor.faces_mode == "largest":
                    faces = faces[:1]
                done.put((index, t, rgb, faces))
        except BaseException as exc:  # handed to the main thread, which raises it
            done.put(exc)
        finally:
            done.put(None)

    rows: list[dict[str, Any]] = []
    writer = H264Writer(files["overlay"], fps_out)
    count = {"frames": 0, "faces": 0}

    def write(index: int, t: float, rgb: np.ndarray, res: WrinkleResult | None) -> None:
        if res is None:
            writer.write(caption(rgb.copy(), predictor.short_name))
            rows.append({"frame": index, "time_s": f"{t:.3f}", "file": str(info.path),
                         "width": rgb.shape[1], "height": rgb.shape[0],
                         "model": predictor.description, "threshold": thr,
                         "notes": "no face found in this frame"})
        else:
            writer.write(caption(draw_faces(wrinkle_view(rgb, res.mask, res.faces), res.faces, regions,
                                            landmarks, labels=[str(f.index) for f in res.faces]),
                                 predictor.short_name))
            for row in csv_rows(info.path, res, predictor.description):
                rows.append({"frame": index, "time_s": f"{t:.3f}", **row})
        count["frames"] += 1
        count["faces"] += 0 if res is None else len(res.faces)

    bar = tqdm(total=expected, desc=info.path.name, unit="frame", disable=not progress,
               file=sys.stderr)
    thread = threading.Thread(target=produce, name="video-read", daemon=True)
    interrupted = False
    writes: list[Future] = []
    with ThreadPoolExecutor(1, "video-write") as pool:
        try:
            thread.start()
            finished = False
            while not finished:
                batch = []
                while len(batch) < FRAMES_PER_CALL:
                    item = done.get()
                    if item is None:
                        finished = True
                        break
                    if isinstance(item, BaseException):
                        raise item
                    batch.append(item)
                found = [(index, t, rgb, FoundFaces(rgb, [], [(f, f.alignment) for _, f in faces]),
                          [i for i, _ in faces]) for index, t, rgb, faces in batch]
                with_faces = [x for x in found if x[3].faces]
                results = predictor.finish([x[3] for x in with_faces], thr) if with_faces else []
                by_index = {}
                for x, res in zip(with_faces, results, strict=True):
                    for face_result, track_id in zip(res.faces, x[4], strict=True):
                        face_result.index = track_id
                    by_index[x[0]] = res
                for index, t, rgb, _, _ in found:
                    writes.append(pool.submit(write, index, t, rgb, by_index.get(index)))
                bar.update(len(batch))
                while writes and (writes[0].done() or len(writes) > PENDING_FRAMES):
                    writes.pop(0).result()
            for w in writes:
                w.result()
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            for w in writes:
                if not w.cancelled():
                    w.exception()
        except BaseException:
            stop.set()
            bar.close()
            for w in writes:
                w.cancel()
            pool.shutdown(wait=True)
            writer.discard()
            raise
    bar.close()
    stop.set()
    if interrupted:
        info.notes.append(f"interrupted after {count['frames']} frames (Ctrl-C)")
    wrote_video = writer.close()
    rows.sort(key=lambda r: (int(r["frame"]), int(r["face"]) if r.get("face", "") != "" else -1))
    write_text(files["frames"], csv_text(rows, frame_fields()))
    summary = summarise(rows, info.notes)
    write_text(files["summary"], csv_text(summary, SUMMARY_FIELDS))
    plot_regions(files["regions"], rows, f"{info.path.name}: wrinkle share per region\n"
                                         f"{predictor.description}, threshold {thr:g}")
    if report:
        from utils.report import clip_report

        files["report"] = out / f"{stem or info.path.stem}_report.html"
        write_text(files["report"], clip_report(info.path.name, files["regions"], summary,
                                                predictor.description, count["frames"]))
    tracks = len({r["face"] for r in rows if r.get("face", "") != ""})
    for note in info.notes:
        log(f"{info.path}: {note}")
    log(f"{info.path}: {count['frames']} frames ({count['faces']} faces, {tracks} tracked "
        f"face{'s' if tracks != 1 else ''}) predicted with {predictor.description}; outputs in "
        f"{out}/ ({', '.join(p.name for k, p in files.items() if k != 'overlay' or wrote_video)})")
    if interrupted:
        raise KeyboardInterrupt
    if count["frames"] and not count["faces"]:
        raise UserError(f"{info.path}: no face found in any of its {count['frames']} analysed "
                        "frames (the outputs say so frame by frame)")
    return {"frames": count["frames"], "faces": count["faces"], "tracks": tracks,
            "files": {k: str(p) for k, p in files.items()}, "notes": list(info.notes),
            "fps_out": fps_out}

