"""The browser demo behind app.py: the page, its handler and how it is served.

Uploaded photos are deleted from the server as soon as they are read (see `_forget_upload`);
the handler uses the same WrinklePredictor as predict.py, so the page shows what predict.py writes.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import html
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.errors import UserError

if TYPE_CHECKING:
    import gradio as gr
    import numpy as np
    import pandas as pd

    from utils.inference.predictor import WrinklePredictor

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = [REPO / "examples" / f"{i}.jpg" for i in ("00264", "00406", "00541")]
TABLE_HEADERS = ["face", "region", "share %", "lines", "length mm", "width mm", "density mm/cm²"]
COMPARE_HEADERS = ["region", "before %", "after %", "change (points)", "noise band (points)",
                   "verdict"]
# The app shows photos at most this large: every face keeps its full detail for the model up to
# this size, and the pictures sent to the browser stay quick to encode (a 6000 px photo would
# take seconds per PNG).
DISPLAY_SIDE = 2048
# A photo is decoded in full before the predictor scales it down to its max_side, so the demo
# refuses anything larger than this before decoding (a phone's 50 MP photo still fits).
MAX_PIXELS = 100_000_000
MAX_FILE_SIZE = "50mb"
# Gradio's cache sweep: every 60 s delete what this app wrote more than 60 s ago (result images,
# uploads that never reached a handler). Results need to outlive only their download by the page
# or client; the bundled examples are exempt (gradio keeps them).
DELETE_CACHE = (60, 60)
SLIDER = (0.05, 0.95)  # the threshold slider's range
TABLE_HEIGHT = 2000  # px: every row of several faces shows without scrolling inside the table
STATE_SECONDS = 900  # how long a session keeps its decoded photo in memory for threshold re-runs

Outputs = tuple[Any, Any, str, Any, Any]  # overlay, heatmap, summary, table, photo state
NO_FACE_HINT = ("the demo looks for frontal faces at least about 40 px wide (a face seen from "
                "the side, covered, or very small is not found)")


def _private_cache_dir() -> str:
    """Give gradio a fresh cache folder of its own (mode 0700), removed when the process exits.

    Gradio writes every upload and every result image under GRADIO_TEMP_DIR (default: a shared
    /tmp/gradio that outlives the server). A private folder means nothing from a session is left
    behind after exit, even if the process is killed before gradio's own cleanup. A folder the
    user chose through GRADIO_TEMP_DIR is respected.
    """
    current = os.environ.get("GRADIO_TEMP_DIR")
    if current:
        return current
    path = tempfile.mkdtemp(prefix="wrinkle-demo-")
    os.environ["GRADIO_TEMP_DIR"] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _gradio() -> Any:
    """Import gradio with analytics off and a private cache (both must precede the import)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    _private_cache_dir()
    import gradio

    return gradio


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Any image array gradio or a caller may hand over (grey, grey+alpha, RGBA, 16-bit, float,
    bool) as RGB uint8, with the same rules as the one image loader."""
    import numpy as np

    from utils.data.images import to_rgb_uint8

    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise UserError(f"not an image: an array of shape {arr.shape}")
    if arr.size == 0:
        raise UserError("the image is empty")
    if arr.dtype.kind not in "biuf":
        raise UserError(f"not an image: an array of {arr.dtype}")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise UserError(f"the image of {arr.shape[1]}x{arr.shape[0]} px is too large for the "
                        f"demo (at most {MAX_PIXELS // 1_000_000} megapixels)")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return to_rgb_uint8(arr, from_bgr=False)


def decode_upload(data: bytes, name: str) -> np.ndarray:
    """Decode uploaded bytes through the project's one image loader, after the size check."""
    from utils.data.images import decode_image

    return decode_image(data, name, max_pixels=MAX_PIXELS)


def _source_key(image: Any) -> str | None:
    """The server path an input refers to (a gradio file payload or a path), if any."""
    if isinstance(image, dict):
        return image.get("path")
    if isinstance(image, (str, Path)):
        return str(image)
    return None


def read_input(image: Any, forget: Callable[[str], None] | None = None) -> np.ndarray:
    """Turn whatever reached the handler into RGB uint8: a gradio file payload (dict), a path, a
    data URL or an array. A file is read once and then handed to `forget` (which deletes
    uploads), whether or not it turns out to be an image."""
    import numpy as np

    if image is None:
        raise UserError("no photo: upload one, take one with the webcam or paste one")
    if isinstance(image, np.ndarray):
        return as_rgb(image)
    if isinstance(image, dict) and not image.get("path"):
        url = image.get("url") or ""
        if url.startswith("data:") and "," in url:
            try:
                data = base64.b64decode(url.split(",", 1)[1], validate=True)
            except ValueError:
                raise UserError("the pasted image is not valid base64 data") from None
            return decode_upload(data, "the pasted image")
        raise UserError("no photo: the upload carried no file")
    key = _source_key(image)
    if key is None:
        raise UserError(f"not an image: got {type(image).__name__}")
    path = Path(key)
    name = (image.get("orig_name") if isinstance(image, dict) else None) or path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{name}: the upload is no longer on the server (uploads are deleted "
                        "once read); please upload it again") from None
    except OSError as exc:
        raise UserError(f"{name}: cannot read the upload ({exc.strerror})") from None
    finally:
        if forget is not None:
            forget(str(path))
    return decode_upload(data, name)


def _table(faces: list[Any]) -> pd.DataFrame:
    """One table for every face: the whole face first, then its regions."""
    import pandas as pd

    def lines(mm: dict[str, Any], key: str) -> list[Any]:
        if key not in mm:  # no landmarks (a photo analysed whole): no regions, no mm
            return ["", "", "", ""]
        c = mm[key]
        return [c["count"], round(c["length_mm"], 1), round(c["width_mm"], 2),
                round(c["density_mm_per_cm2"], 2)]

    rows = []
    for f in faces:
        st, mm = f.stats, f.stats.get("mm", {})
        rows.append([f.index, "whole face", round(100 * st["wrinkle_share"], 2),
                     *lines(mm, "face")])
        rows += [[f.index, r["label"], round(100 * r["share"], 2), *lines(mm, r["region"])]
                 for r in st["regions"]]
    return pd.DataFrame(rows, columns=TABLE_HEADERS)


def _summary(faces: list[Any], threshold: float, notes: list[str]) -> str:
    """The headline and the notes: a share per face, or why nothing was measured."""
    from utils.faces.regions import asymmetry_text
    from utils.inference.predictor import SMALL_FACE_SHARE, holds_less_detail

    if not faces:
        lines = ["### No face found", f"Nothing was measured: {NO_FACE_HINT}."]
    else:
        size = faces[0].frame
        shares = [f"{100 * f.stats['wrinkle_share']:.2f} %" for f in faces]
        if len(faces) == 1:
            st = faces[0].stats
            lines = [f"### Wrinkles cover {shares[0]} of the face",
                     f"{st['wrinkle_px']:,} of {st['face_px']:,} px of the face region at "
                     f"threshold {threshold:.2f}."]
        else:
            lines = [f"### {len(faces)} faces: wrinkles cover " + ", ".join(
                f"{s} (face {i})" for i, s in enumerate(shares)),
                f"Faces are numbered on the overlay from 0, the largest, as in wrinkles.csv; "
                f"threshold {threshold:.2f}."]
        for f in faces:
            if f.stats.get("asymmetry"):
                who = f"Face {f.index}: " if len(faces) > 1 else ""
                lines.append(who + asymmetry_text(f.stats["asymmetry"]).capitalize() + ".")
        lines.append(f"Each face is aligned as FFHQ was (68 landmarks) and measured in that "
                     f"{size} px frame: pixel counts and lengths are aligned-frame pixels.")
        small = [f for f in faces
                 if f.box is not None and holds_less_detail(f.alignment.side, size)]
        for f in small:
            lines.append(f"⚠ face {f.index} is small in this photo ({f.alignment.side:.0f} "
                         f"px across its frame, under {SMALL_FACE_SHARE:.0%} of the {size} px "
                         "the model works at): fine lines may be missed; a closer or sharper "
                         "photo gives more reliable numbers.")
    lines += [f"note: {n}" for n in notes if "smaller than the model" not in n]
    return "\n\n".join(lines)


def thicken(mask: np.ndarray) -> np.ndarray:
    """The mask drawn wider for viewing a whole photo at page size: lines grow by about one
    pixel per 600 px of the photo's long side on each side (the measurement is unchanged)."""
    import cv2
    import numpy as np

    r = max(1, round(max(mask.shape) / 600))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def page_threshold(value: Any) -> float:
    """A threshold typed into the page's slider box, brought into the slider's range (the box
    shows the clamped value, so the run must use it too); a warning says so."""
    try:
        thr = float(value)
    except (TypeError, ValueError):
        raise UserError(f"threshold must be a number, got {value!r}") from None
    clamped = min(max(thr, SLIDER[0]), SLIDER[1])
    if clamped != thr:
        import gradio as gr

        gr.Warning(f"threshold {thr:g} is outside {SLIDER[0]}-{SLIDER[1]}: {clamped} is used")
    return clamped


def run_report(predictor: WrinklePredictor, photo: dict[str, Any] | None, threshold: Any,
               workdir: str | Path) -> str:
    """The photo tab's visit report: the session's photo (the one last analysed) predicted at
    the page's threshold and written as a self-contained HTML page for download; its path."""
    from utils.data.images import resize_image
    from utils.io import write_text
    from utils.report import model_about, visit_report

    if not photo or photo.get("rgb") is None:
        raise UserError("no photo analysed yet: find wrinkles in a photo first")
    thr = page_threshold(threshold)
    res = predictor.predict(photo["rgb"], thr)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="report-", dir=workdir))
    name = Path(str(photo.get("key") or "photo")).name
    path = folder / "wrinkle_report.html"
    write_text(path, visit_report(name, resize_image(photo["rgb"], res.mask.shape), res,
                                  predictor.description, model_about(predictor)))
    return str(path)


def run_prediction(predictor: WrinklePredictor, image: Any, threshold: Any,
                   photo: dict[str, Any] | None = None,
                   forget: Callable[[str], None] | None = None, marks: bool = False,
                   thick: bool = False) -> Outputs:
    """One prediction for the page or the API: read the photo (or reuse the session's copy when
    only the threshold changed, since the upload itself is gone by then), predict every face,
    and draw (landmarks and region outlines too with `marks`, wider lines with `thick`). A photo
    without a face gets no pictures, only the summary that says so."""
    from utils.data.images import resize_image
    from utils.inference.predictor import NoFaceError
    from utils.visualize import draw_faces, heatmap, overlay, with_colour_scale, wrinkle_view

    try:
        thr = float(threshold)
    except (TypeError, ValueError):
        raise UserError(f"threshold must be a number, got {threshold!r}") from None
    if not 0.0 < thr < 1.0:
        raise UserError(f"threshold must be between 0 and 1, got {thr}")
    key = _source_key(image)
    if photo is not None and key is not None and photo.get("key") == key:
        rgb, extra = photo["rgb"], list(photo["notes"])
        if forget is not None:  # the same content uploaded again lands at the same path
            forget(key)
    else:
        rgb, extra = _display_copy(read_input(image, forget))
    state = {"key": key, "rgb": rgb, "notes": extra}
    try:
        result = predictor.predict(rgb, thr)
    except NoFaceError as exc:
        why = str(exc)  # the headline says "no face found"; keep what it adds (a tiny image)
        notes = [*extra, why] if why != "no face found" else extra
        return None, None, _summary([], thr, notes), _table([]), state
    if result.mask.shape != rgb.shape[:2]:  # the predictor scaled the photo down
        rgb = resize_image(rgb, result.mask.shape)
    notes = extra + [n for n in result.notes if n not in predictor.loaded.notes and n not in extra]
    # thicker lines: the mask widened for a whole photo at page size; else the lines view
    view = overlay(rgb, thicken(result.mask)) if thick else \
        wrinkle_view(rgb, result.mask, result.faces)
    shown = draw_faces(view, result.faces, regions=marks, landmarks=marks)
    heat = with_colour_scale(heatmap(rgb, result.probs))
    return shown, heat, _summary(result.faces, thr, notes), _table(result.faces), state


def _display_copy(rgb: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The photo at most DISPLAY_SIDE px (see there), with a note when it was scaled."""
    from utils.data.images import resize_image

    h, w = rgb.shape[:2]
    if max(h, w) <= DISPLAY_SIDE:
        return rgb, []
    s = DISPLAY_SIDE / max(h, w)
    small = resize_image(rgb, (max(1, round(h * s)), max(1, round(w * s))))
    return small, [f"scaled down from {w}x{h} to {small.shape[1]}x{small.shape[0]}"]


def run_comparison(predictor: WrinklePredictor, before: Any, after: Any, threshold: Any,
                   forget: Callable[[str], None] | None = None,
                   photos: dict[str, Any] | None = None
                   ) -> tuple[Any, Any, str, Any, str, dict]:
    """The Compare tab: two photos of one person, their aligned faces side by side, the
    difference picture, the summary with the noise band, the table per region, the comparison
    report (a self-contained HTML page, its path) and the decoded photos kept for the session
    (uploads are deleted once read, so a second click, or the same photo as before and after,
    reuses them)."""
    import pandas as pd

    from utils.compare import compare_photos, difference_picture, side_by_side, summary_text
    from utils.faces.regions import REGION_LABELS

    try:
        thr = float(threshold)
    except (TypeError, ValueError):
        raise UserError(f"threshold must be a number, got {threshold!r}") from None
    kept = dict(photos or {})  # server path of an upload -> its decoded photo
    used: dict[str, Any] = {}  # what this comparison read: kept for the next one
    pair = []
    for name, image in (("before", before), ("after", after)):
        if image is None:
            raise UserError(f"no {name} photo: upload one or take one with the webcam")
        key = _source_key(image)
        if key is not None and key in kept:
            if forget is not None:  # the same content uploaded again lands at the same path
                forget(key)
            rgb = kept[key]
        else:
            rgb = _display_copy(read_input(image, forget))[0]
            if key is not None:
                kept[key] = rgb
        if key is not None:
            used[key] = rgb
        pair.append((name, rgb))
    comp = compare_photos(predictor, pair, threshold=thr)
    rows = []
    for region in ("face", *REGION_LABELS):
        a, b = comp.row(region, 0), comp.row(region, 1)
        rows.append([REGION_LABELS.get(region, "whole face"), round(100 * a["share"], 2),
                     round(100 * b["share"], 2), round(100 * b["change_share"], 2),
                     round(100 * b["noise_band"], 2), b["verdict"]])
    text = summary_text(comp).replace("\n  ", "\n- ").replace("\n", "\n\n")
    from utils.io import write_text
    from utils.report import comparison_report

    pictures = side_by_side(comp), difference_picture(comp)
    folder = Path(tempfile.mkdtemp(prefix="compare-", dir=_private_cache_dir()))
    write_text(folder / "comparison_report.html",
               comparison_report(comp, pictures[0], [pictures[1]]))
    return (*pictures, text,
            pd.DataFrame(rows, columns=COMPARE_HEADERS), str(folder / "comparison_report.html"),
            used)


# The Video tab: clips longer than this are refused from their header, before any decoding; at
# most VIDEO_FRAMES frames are analysed (every n-th frame of a longer clip), so that a request
# stays within about half a minute on a 2-core CPU.
MAX_VIDEO_SECONDS = 120
VIDEO_FRAMES = 300
VIDEO_HEADERS = ["face", "region", "frames", "mean %", "sd %", "min %", "max %", "max at s"]
LIVE_SIDE = 640  # webcam frames are analysed at most this large (a face fills enough of it)
LIVE_STREAMS = 4  # webcams streaming at once (they share the model frame by frame)
LIVE_SECONDS = 300  # a stream stops after this long; pressing Record again goes on


def _video_path(video: Any) -> Path:
    key = _source_key(video)
    if key is None:
        raise UserError("no clip: upload a video (mp4, mov, webm, avi)")
    return Path(key)


def run_video(predictor: WrinklePredictor, video: Any, threshold: Any, workdir: str | Path,
              forget: Callable[[str], None] | None = None
              ) -> tuple[str | None, str | None, str, Any, str]:
    """The Video tab: a clip's faces tracked and measured frame by frame. Returns the overlay
    video, the plot of each region's share over time, the headline and the summary table. The
    clip's header is read first: a clip over MAX_VIDEO_SECONDS is refused before any frame is
    decoded. The upload is deleted once analysed."""
    import math

    import pandas as pd

    from utils.data.videos import probe_video
    from utils.faces.regions import REGION_LABELS
    from utils.inference.video import predict_video

    thr = page_threshold(threshold)
    path = _video_path(video)
    name = (video.get("orig_name") if isinstance(video, dict) else None) or path.name
    try:
        info = probe_video(path)
        if info.seconds > MAX_VIDEO_SECONDS:
            raise UserError(f"{name}: the clip lasts {info.seconds:.0f} s; the demo takes clips "
                            f"of up to {MAX_VIDEO_SECONDS} s (predict.py takes any length)")
        every = max(1, math.ceil(info.frames / VIDEO_FRAMES)) if info.frames else 1
        Path(workdir).mkdir(parents=True, exist_ok=True)
        out = Path(tempfile.mkdtemp(prefix="clip-", dir=workdir))
        try:
            res = predict_video(predictor, path, out, thr, every, VIDEO_FRAMES, progress=True,
                                stem="clip", log=lambda _: None, report=True)
        except UserError as exc:
            raise UserError(str(exc).replace(str(path), name)) from None
    finally:
        if forget is not None:
            forget(str(path))
    with (out / "clip_summary.csv").open(newline="", encoding="utf-8") as fh:
        import csv

        summary = list(csv.DictReader(fh))
    rows = [[int(r["face"]), REGION_LABELS.get(r["region"], "whole face"), int(r["frames"]),
             *(round(100 * float(r[k]), 2) for k in ("mean_share", "sd_share", "min_share",
                                                     "max_share")),
             float(r["max_time_s"])] for r in summary]
    step = f"every {every}th frame" if every > 1 else "every frame"
    lines = [f"### {res['frames']} frames analysed ({step}), {res['tracks']} "
             f"face{'s' if res['tracks'] != 1 else ''} followed",
             f"Model {predictor.short_name}, threshold {thr:.2f}. Faces keep their number while "
             "they stay in view; the plot "
             "shows each region's wrinkle share over time (face region pixels, aligned frame)."]
    lines += [f"note: {n}" for n in res["notes"]]
    return (res["files"]["overlay"], res["files"]["regions"], "\n\n".join(lines),
            pd.DataFrame(rows, columns=VIDEO_HEADERS), res["files"]["report"])


def run_live(predictor: WrinklePredictor, frame: Any, threshold: Any, tracker: Any
             ) -> tuple[Any, str, Any]:
    """One webcam frame of the live mode: the session's faces followed from frame to frame
    (a FaceTracker kept in the session), predicted, drawn. Returns the overlay, a line per face
    and the tracker for the next frame."""
    import time

    from utils.data.images import resize_image
    from utils.faces.tracking import FaceTracker
    from utils.inference.predictor import FoundFaces
    from utils.visualize import caption, draw_faces, overlay

    if frame is None:
        return None, "waiting for the camera", tracker
    thr = page_threshold(threshold)
    rgb = as_rgb(frame)
    h, w = rgb.shape[:2]
    if max(h, w) > LIVE_SIDE:
        s = LIVE_SIDE / max(h, w)
        rgb = resize_image(rgb, (round(h * s), round(w * s)))
    if tracker is None:
        tracker = FaceTracker()
    faces = tracker.update(rgb, time.monotonic())
    if not faces:
        return rgb, "no face in view: face the camera, in good light", tracker
    res = predictor.finish([FoundFaces(rgb, [], [(f, f.alignment) for _, f in faces])], thr)[0]
    for face, (track_id, _) in zip(res.faces, faces, strict=True):
        face.index = track_id
    shown = caption(draw_faces(overlay(rgb, res.mask), res.faces,
                               labels=[str(f.index) for f in res.faces]), predictor.short_name)
    text = "; ".join(f"face {f.index}: wrinkles cover {100 * f.stats['wrinkle_share']:.2f} % "
                     "of the face" for f in res.faces)
    return shown, text, tracker


F1_NOTE = ("F1 measures how well the predicted wrinkle pixels overlap an annotator's lines "
           "(1 would be identical); two human annotators agree with each other at about 0.54.")


def model_info(predictor: WrinklePredictor, frames: WrinklePredictor | None = None) -> str:
    """The Markdown that says, in plain words, which model and face region are in use (and
    which model reads clips and the webcam, when that is another one)."""
    loaded = predictor.loaded
    name = Path(str(predictor.checkpoint)).stem if predictor.checkpoint else loaded.name
    lines = [f"**Wrinkle model:** {name}: {loaded.about or loaded.name} "
             f"(running on {predictor.description.rsplit(' on ', 1)[-1]})."]
    if "F1" in loaded.about:
        lines[0] += f'  \n<small title="{html.escape(F1_NOTE)}">{F1_NOTE}</small>'
    if frames is not None and frames is not predictor:
        lines.append(f"**Clips and the webcam:** {frames.short_name}: "
                     f"{frames.loaded.about or frames.loaded.name}; a quarter of the photo "
                     "model's cost, so that frames keep up (`--frame-model photo` serves the "
                     "photo model there too).")
    lines.append(f"**Face region:** {predictor.face_description}.")
    if predictor.is_baseline:
        lines.append("⚠ no trained wrinkle weights: showing the texture-map baseline, which marks "
                     "fine lines and skin texture alike; expect many false wrinkles.")
    return "\n\n".join(lines)


def _forget_upload(demo: gr.Blocks, path: str) -> None:
    """Delete an uploaded file once it has been read, and its per-upload folder if empty.

    Only files that gradio's upload route recorded are deleted: the bundled examples live in the
    same cache and are kept (they are in a component's keep_in_cache set).
    """
    keep: set[str] = set()
    for block in demo.blocks.values():
        keep |= getattr(block, "keep_in_cache", set())
    if path not in demo.upload_file_set or path in keep:
        return
    demo.upload_file_set.discard(path)
    p = Path(path)
    p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty (a same-content upload) or already gone
        p.parent.rmdir()


def _check_in_cache(path: str) -> None:
    """A file payload must name a file in gradio's cache (an upload or a bundled example).

    With preprocess=False gradio checks this only for payloads that carry its FileData marker;
    without this check a client could name any image on the server and get it drawn back.
    """
    from gradio.utils import get_upload_folder

    if not Path(path).resolve().is_relative_to(Path(get_upload_folder()).resolve()):
        raise UserError("the photo must be uploaded to the demo, not named by a server path")


class _Page:
    """What every tab of the demo shares: the predictors, the one model lock, the gradio
    module, the Blocks being built, and the handlers' common settings."""

    def __init__(self, gr: Any, demo: gr.Blocks, predictor: WrinklePredictor,
                 frames: WrinklePredictor) -> None:
        self.gr, self.demo, self.predictor, self.frames = gr, demo, predictor, frames
        # One model, many callers: a webcam stream holds its queue slot for as long as it
        # streams, so streams get slots of their own (LIVE_STREAMS) and every handler takes
        # this lock for its model work: photos, clips and live frames take turns frame by frame.
        self.model_lock = threading.Lock()
        self.common = {"preprocess": False, "concurrency_limit": 1,
                       "concurrency_id": "predictor"}
        self.quick = {"queue": False, "api_visibility": "private"}
        self.settled = {"api_visibility": "private", "preprocess": False}  # queued: warns

    def forget(self, path: str) -> None:
        _forget_upload(self.demo, path)

    def error(self, exc: UserError) -> Exception:
        """A user's mistake as the page shows it (no traceback, HTML escaped)."""
        return self.gr.Error(html.escape(str(exc)), print_exception=False)

    def settle(self, value: Any) -> float:
        """The slider's value as the page shows it (a typed 2 shows, and runs, as 0.95)."""
        try:
            return page_threshold(value)
        except UserError as exc:
            raise self.error(exc) from None

    def slider(self, value: float, elem_id: str) -> Any:
        return self.gr.Slider(*SLIDER, value=round(value, 2), step=0.01,
                              label="Threshold (lower finds more wrinkles)", elem_id=elem_id)


def _photo_tab(page: _Page) -> Any:
    """Find wrinkles: a photo, its overlay and heatmap, a summary and a table per face and
    region; the `/predict` API endpoint. Returns the threshold slider (Compare uses it too)."""
    gr = page.gr
    photo_state = gr.State(None, time_to_live=STATE_SECONDS)
    with gr.Row():
        with gr.Column():
            photo_in = gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath",
                                image_mode=None, label="Face photo", elem_id="photo")
            threshold = page.slider(page.predictor.threshold, "threshold")
            marks = gr.Checkbox(False, label="Draw landmarks and region outlines",
                                elem_id="marks")
            thick = gr.Checkbox(False, label="Thicker lines (easier to see at page "
                                "size; the numbers are unchanged)", elem_id="thick")
            run = gr.Button("Find wrinkles", variant="primary", elem_id="run")
            if all(p.is_file() for p in EXAMPLES):
                gr.Examples([[str(p)] for p in EXAMPLES], inputs=[photo_in],
                            cache_examples=False, label="Example faces (FFHQ, see examples/)")
        with gr.Column():
            # PNG: lossy WebP (gradio's default) would smear 1-px wrinkle lines.
            overlay_out = gr.Image(label="Wrinkles (red)", format="png", interactive=False,
                                   buttons=["download", "fullscreen"], elem_id="overlay")
            heatmap_out = gr.Image(label="Wrinkle probability (scale on the right)",
                                   format="png", interactive=False,
                                   buttons=["download", "fullscreen"], elem_id="heatmap")
    summary = gr.Markdown(elem_id="summary")
    with gr.Row():
        report_btn = gr.Button("Visit report (HTML, printable)", elem_id="make-report")
        report_out = gr.File(label="Report", interactive=False, elem_id="report")
    table = gr.Dataframe(headers=TABLE_HEADERS,
                         datatype=["number", "str", "number", "number", "number", "number",
                                   "number"],
                         interactive=False, label="Per face and region (share: of the region's "
                         "pixels; lines in mm, from a 63 mm pupil distance, +-6 %; left and "
                         "right are the person's own)", elem_id="regions",
                         max_height=TABLE_HEIGHT)

    def predict(image: Any, threshold: Any, draw: bool = False,
                photo: dict[str, Any] | None = None) -> Outputs:
        """Find wrinkles in one photo: the `/predict` API endpoint."""
        return page_predict(image, threshold, draw, False, photo)

    def page_predict(image: Any, threshold: Any, draw: bool = False, wide: bool = False,
                     photo: dict[str, Any] | None = None) -> Outputs:
        """The same for the page's button, which also offers wider lines."""
        try:
            if isinstance(image, dict) and image.get("path"):
                _check_in_cache(image["path"])
            with page.model_lock:
                return run_prediction(page.predictor, image, threshold, photo, page.forget,
                                      bool(draw), bool(wide))
        except UserError as exc:
            raise page.error(exc) from None

    def refresh(image: Any, threshold: Any, draw: bool = False, wide: bool = False,
                photo: dict[str, Any] | None = None) -> Outputs:
        """The same, for automatic re-runs: a cleared photo just clears the results."""
        if image is None:
            return None, None, "", None, None
        return page_predict(image, threshold, draw, wide, photo)

    def clear() -> tuple[None, None, str, None]:
        return None, None, "", None

    inputs = [photo_in, threshold, marks, thick, photo_state]
    outputs = [overlay_out, heatmap_out, summary, table, photo_state]
    common, private = page.common, {"api_visibility": "private", **page.common}
    run.click(page.settle, threshold, threshold, **page.settled).then(
        page_predict, inputs, outputs, **private)
    # The API's /predict: (photo, threshold, draw marks) as ever; the page's extras stay off.
    api_only = gr.Button(visible=False)
    api_only.click(predict, [photo_in, threshold, marks, photo_state], outputs,
                   api_name="predict", **common)
    photo_in.change(clear, None, outputs[:4], **page.quick).then(refresh, inputs, outputs,
                                                                 **private)
    threshold.release(page.settle, threshold, threshold, **page.settled).then(
        refresh, inputs, outputs, **private)
    marks.change(refresh, inputs, outputs, **private)
    thick.change(refresh, inputs, outputs, **private)

    def report(threshold: Any, photo: dict[str, Any] | None = None) -> str:
        """The visit report of the photo last analysed: the `/report` API endpoint."""
        try:
            with page.model_lock:
                return run_report(page.predictor, photo, threshold, _private_cache_dir())
        except UserError as exc:
            raise page.error(exc) from None

    report_btn.click(report, [threshold, photo_state], report_out, api_name="report", **common)
    return threshold


def _compare_tab(page: _Page, threshold: Any) -> None:
    """Compare: two photos of one person, region by region against the noise band; the
    `/compare` API endpoint. Uses the photo tab's threshold."""
    gr = page.gr
    gr.Markdown("Two photos of one person (before and after): each face is aligned into "
                "the same FFHQ frame and compared region by region. A change counts only "
                "beyond the noise band: what this method measures between two photos of "
                "the same unchanged face.")
    with gr.Row():
        before_in = gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath",
                             image_mode=None, label="Before", elem_id="before")
        after_in = gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath",
                            image_mode=None, label="After", elem_id="after")
    compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
    with gr.Row():
        pair_out = gr.Image(label="Aligned faces with their wrinkles", format="png",
                            interactive=False, elem_id="pair")
        diff_out = gr.Image(label="Difference", format="png", interactive=False,
                            elem_id="difference")
    compare_summary = gr.Markdown(elem_id="compare-summary")
    compare_table = gr.Dataframe(headers=COMPARE_HEADERS, interactive=False,
                                 label="Per region (share: % of the region's pixels)",
                                 elem_id="compare-table", max_height=TABLE_HEIGHT)
    compare_report = gr.File(label="Comparison report (HTML, printable)", interactive=False,
                             elem_id="compare-report")
    compare_state = gr.State(None, time_to_live=STATE_SECONDS)

    def compare(before: Any, after: Any, threshold: Any, photos: dict[str, Any] | None = None
                ) -> tuple[Any, Any, str, Any, str, dict]:
        """Compare two photos: the `/compare` API endpoint and the button."""
        try:
            for image in (before, after):
                if isinstance(image, dict) and image.get("path"):
                    _check_in_cache(image["path"])
            with page.model_lock:
                return run_comparison(page.predictor, before, after, threshold, page.forget,
                                      photos)
        except UserError as exc:
            raise page.error(exc) from None

    compare_btn.click(page.settle, threshold, threshold, **page.settled).then(
        compare, [before_in, after_in, threshold, compare_state],
        [pair_out, diff_out, compare_summary, compare_table, compare_report, compare_state],
        api_name="compare", **page.common)


def _video_tab(page: _Page) -> None:
    """Video: a clip's faces followed and measured, read by the frame model; the `/video`
    API endpoint."""
    gr = page.gr
    gr.Markdown(f"A clip (mp4, mov, webm, avi; up to {MAX_VIDEO_SECONDS} s): every face "
                "is followed from frame to frame and measured in each. At most "
                f"{VIDEO_FRAMES} frames are analysed (every n-th frame of a longer "
                "clip); `predict.py clip.mp4` does any clip in full. The upload is "
                "deleted once analysed.")
    with gr.Row():
        with gr.Column():
            clip_in = gr.Video(sources=["upload"], label="Clip", elem_id="clip")
            clip_threshold = page.slider(page.frames.threshold, "clip-threshold")
            clip_btn = gr.Button("Analyse clip", variant="primary", elem_id="analyse")
        with gr.Column():
            clip_out = gr.Video(label="Wrinkles (red), frame by frame", interactive=False,
                                elem_id="clip-overlay")
    clip_summary = gr.Markdown(elem_id="clip-summary")
    clip_plot = gr.Image(label="Wrinkle share per region over time", format="png",
                         interactive=False, elem_id="clip-plot")
    clip_table = gr.Dataframe(headers=VIDEO_HEADERS, interactive=False,
                              label="Per face and region, over the clip (share: % of "
                              "the region's pixels)", elem_id="clip-table",
                              max_height=TABLE_HEIGHT)
    clip_report = gr.File(label="Clip report (HTML, printable)", interactive=False,
                          elem_id="clip-report")

    def video(clip: Any, threshold: Any, progress: Any = gr.Progress(track_tqdm=True)
              ) -> tuple[Any, Any, str, Any, str]:
        """Analyse a clip: the `/video` API endpoint and the Video tab's button."""
        try:
            clip = clip.get("video", clip) if isinstance(clip, dict) else clip
            if isinstance(clip, dict) and clip.get("path"):
                _check_in_cache(clip["path"])
            with page.model_lock:
                return run_video(page.frames, clip, threshold, _private_cache_dir(),
                                 page.forget)
        except UserError as exc:
            raise page.error(exc) from None

    clip_btn.click(video, [clip_in, clip_threshold],
                   [clip_out, clip_plot, clip_summary, clip_table, clip_report], api_name="video",
                   **page.common)


def _live_tab(page: _Page) -> None:
    """Live: the webcam streamed frame by frame through the frame model (page-only)."""
    gr = page.gr
    gr.Markdown("The webcam, live: faces are followed as they move, and the overlay and "
                "each face's wrinkle share follow every frame the server can take. "
                f"Up to {LIVE_STREAMS} viewers stream at once, taking turns frame by frame; a "
                f"stream stops after {LIVE_SECONDS // 60} minutes (press Record again). "
                "Frames are analysed in memory, never kept.")
    with gr.Row():
        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera",
                       elem_id="camera")
        live_out = gr.Image(label="Wrinkles (red)", interactive=False, format="jpeg",
                            elem_id="live-overlay")
    live_threshold = page.slider(page.frames.threshold, "live-threshold")
    live_text = gr.Markdown(elem_id="live-text")
    live_state = gr.State(None, time_to_live=STATE_SECONDS)

    def live(frame: Any, threshold: Any, tracker: Any) -> tuple[Any, str, Any]:
        try:
            with page.model_lock:
                return run_live(page.frames, frame, threshold, tracker)
        except UserError as exc:
            return None, html.escape(str(exc)), tracker

    # Up to LIVE_STREAMS webcams stream at once (each asks for at most 10 frames a second
    # and streams for at most LIVE_SECONDS at a time); a further one waits for a free slot.
    cam.stream(live, [cam, live_threshold, live_state], [live_out, live_text, live_state],
               stream_every=0.1, time_limit=LIVE_SECONDS, api_visibility="private",
               concurrency_limit=LIVE_STREAMS, concurrency_id="live",
               show_progress="hidden")


def build_demo(predictor: WrinklePredictor, frames: WrinklePredictor | None = None) -> gr.Blocks:
    """The demo page around a loaded predictor of photos and one of clips and live frames
    (`frames`, by default the same; WrinklePredictor.for_frames), not launched (see `serve`).

    Uploads never go through gradio's own image decoding (preprocess=False on every event): the
    handler gets the upload's path, reads it with the project's loader, and deletes it at once.
    Blocks has no flagging, so nothing else writes inputs to disk."""
    gr = _gradio()
    with gr.Blocks(title="Wrinkle finder", analytics_enabled=False,
                   delete_cache=DELETE_CACHE) as demo:
        page = _Page(gr, demo, predictor, predictor if frames is None else frames)
        gr.Markdown("# Facial wrinkle finder\nUpload a photo (one face or several, any "
                    "framing or tilt), use the webcam or paste an image. Each face is aligned "
                    "as the training faces were, then measured per region. Photos are processed "
                    "in memory and deleted from the server once read.")
        gr.Markdown(model_info(predictor, page.frames), elem_id="model-info")
        with gr.Tab("Find wrinkles"):
            threshold = _photo_tab(page)
        with gr.Tab("Compare"):
            _compare_tab(page, threshold)
        with gr.Tab("Video"):
            _video_tab(page)
        with gr.Tab("Live"):
            _live_tab(page)
    demo.queue(default_concurrency_limit=1, max_size=16)
    return demo


def serve(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          block: bool = True) -> str:
    """Launch the demo with the project's settings and return its local URL; `block=False`
    returns at once (tests, notebooks).

    run_history=False: gradio 6 otherwise records every run (inputs and outputs) in the browser
    and offers to copy them to a Hugging Face bucket. No MCP server, no PWA, no monitoring page,
    no server-side rendering (it would need Node), and uploads capped at MAX_FILE_SIZE.
    """
    try:
        demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                    quiet=not block, show_error=True, max_file_size=MAX_FILE_SIZE,
                    enable_monitoring=False, ssr_mode=False, mcp_server=False, pwa=False,
                    run_history=False)
    except OSError as exc:
        if "port" in str(exc):
            raise UserError(f"cannot serve on {host}:{port}: the port is taken "
                            "(choose another with --port)") from None
        raise
    return str(demo.local_url)


