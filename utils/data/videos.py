"""Video files: what is a video (by its content), what its header says, and its frames.

OpenCV (headless) decodes: mp4, mov, avi, webm, mkv and whatever else its FFmpeg reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from utils.data.images import resize_image
from utils.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".webm", ".mkv", ".mpg", ".mpeg", ".ts")
# Frames whose long side is larger are scaled down to this before anything else: a face that
# fills a 1280 px frame still holds more than the model's 256 px, and a 4K frame would cost
# eight times as much to track and draw.
VIDEO_SIDE = 1280
DEFAULT_FPS = 25.0  # when a clip's header gives no frame rate


def is_video(path: str | Path) -> bool:
    """Whether a file's first bytes are those of a video container (whatever its name says):
    MP4 / QuickTime, AVI, Matroska / WebM, MPEG program or transport stream, FLV, Ogg."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    if len(head) < 12:
        return False
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if head[:4] in (b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba", b"OggS") or head[:3] == b"FLV":
        return True
    return head[0] == 0x47 and len(head) > 376 and head[188] == 0x47 and head[376] == 0x47


@dataclass
class VideoInfo:
    """What a clip's header says (frame count and rate may be missing or wrong in a damaged
    file; the reader counts what it really decodes)."""

    path: Path
    width: int
    height: int
    fps: float
    frames: int  # from the header; 0 when unknown
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.frames / self.fps if self.frames else 0.0


def probe_video(path: str | Path) -> VideoInfo:
    """Open a clip and read its header only (no frame is decoded): size, frame rate, frame
    count. A file OpenCV cannot open as a video is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UserError(f"{path}: not a video OpenCV can read (mp4, mov, avi, webm, mkv)")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        frames = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise UserError(f"{path}: the video has no picture (no video stream OpenCV can decode)")
    notes = []
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        notes.append(f"the clip gives no usable frame rate; {DEFAULT_FPS:g} frames per second "
                     "assumed")
        fps = DEFAULT_FPS
    return VideoInfo(path, w, h, fps, frames, notes)


def read_frames(info: VideoInfo, every: int = 1, max_frames: int | None = None,
                side: int = VIDEO_SIDE) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB uint8 frame) for every `every`-th frame, at most `max_frames` of them,
    scaled so that the long side is at most `side`. A clip that ends early (truncated, or a
    header that promised more) stops where its frames stop, with a note in `info.notes`."""
    cap = cv2.VideoCapture(str(info.path))
    scale = min(1.0, side / max(info.width, info.height))
    if scale < 1:
        info.notes.append(f"frames scaled from {info.width}x{info.height} to "
                          f"{round(info.width * scale)}x{round(info.height * scale)}")
    index = given = 0
    try:
        while max_frames is None or given < max_frames:
            if index % every == 0:
                ok, bgr = cap.read()
            else:
                ok = cap.grab()  # skipped frames are not converted
                bgr = None
            if not ok:
                break
            if bgr is not None:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if scale < 1:
                    rgb = resize_image(rgb, (round(info.height * scale), round(info.width * scale)))
                given += 1
                yield index, rgb
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise UserError(f"{info.path}: the video holds no frame that can be decoded")
    if info.frames and index < info.frames and (max_frames is None or given < max_frames):
        info.notes.append(f"the clip ended after {index} of the {info.frames} frames its header "
                          "announces (truncated?)")
