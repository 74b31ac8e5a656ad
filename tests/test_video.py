"""Video: faces tracked with stable ids, one row per frame and face, a playable overlay video,
smoothing that steadies a still face, and clear failures, on clips made from real FFHQ faces."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import IMAGES, REPO
from utils.data.images import load_image
from utils.faces.photos import make_clip
from utils.faces.tracking import FaceTracker, OneEuroFilter

pytestmark = pytest.mark.skipif(not IMAGES.is_dir(), reason=f"{IMAGES} not present (../shared)")
av = pytest.importorskip("av", reason="PyAV not installed (requirements.txt)")

FACES = ("00016", "00155")  # two labelled faces of ../shared, frontal, well apart in looks
STILL = ("00013", "00023", "00035")  # faces held still for the smoothing test


def _faces() -> list[np.ndarray]:
    return [load_image(IMAGES / f"{i}.jpg") for i in FACES]


def _save(frames: list[np.ndarray], path: Path, fps: float = 25.0) -> Path:
    from utils.inference.video import H264Writer

    w = H264Writer(path, fps)
    for f in frames:
        w.write(f)
    assert w.close()
    return path


def _decoded_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "predict.py", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=600)


def test_one_euro_filter_steadies_noise_and_follows_motion() -> None:
    rng = np.random.default_rng(0)
    f = OneEuroFilter()
    still = [f(np.array([100.0, 50.0]) + rng.normal(0, 1, 2), i / 25, 50.0)
             for i in range(100)]
    assert np.std(np.array(still)[20:], axis=0).max() < 0.5  # sd 1 px in, under half out
    f = OneEuroFilter()
    moving = [f(np.array([4.0 * i, 0.0]), i / 25, 50.0) for i in range(50)]
    assert abs(moving[-1][0] - 4.0 * 49) < 4.0 * 3  # a steady walk: less than 3 frames behind


def test_two_faces_moving_side_by_side_keep_their_ids(tmp_path: Path) -> None:
    clip = make_clip(_faces(), 24, motion="across", face_px=180, seed=1)
    tracker = FaceTracker()
    owner: dict[int, int] = {}
    for i, frame in enumerate(clip.frames):
        found = tracker.update(frame, i / clip.fps)
        assert len(found) == 2, f"frame {i}: {len(found)} faces"
        truth = [m[:, 2] + m[:, :2] @ np.array([127.5, 127.5]) for m in clip.matrices[i]]
        for track_id, face in found:
            centre = face.alignment.quad.mean(axis=0)
            which = int(np.argmin([np.hypot(*(centre - t)) for t in truth]))
            assert owner.setdefault(track_id, which) == which, f"frame {i}: id {track_id} moved"
    assert sorted(owner) == [0, 1] and sorted(owner.values()) == [0, 1]
    assert tracker.next_id == 2  # no track was lost and restarted


def test_a_still_face_in_low_light_keeps_one_id_and_its_place(tmp_path: Path) -> None:
    """Landmarks fitted on a dark, noisy face wander; followed with its last motion, a still
    face's points once ran off by 80 px and the face came back under a second id. Now the
    detector's passes re-anchor them."""
    clip = make_clip(_faces()[:1], 40, face_px=200, seed=7)
    dark = []
    for f in clip.frames:  # a quarter of the light, a third of the contrast
        x = f.astype(np.float32) / 255
        x = 0.5 + 0.3 * (x - x.mean())
        dark.append(np.round(255 * np.clip(0.25 * np.clip(x, 0, 1) ** 1.6, 0, 1)).astype(np.uint8))
    cap = cv2.VideoCapture(str(_save(dark, tmp_path / "dark.mp4")))
    tracker = FaceTracker()
    ids, off = set(), []
    for i in range(len(dark)):
        ok, bgr = cap.read()
        assert ok
        for track_id, face in tracker.update(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), i / 25):
            ids.add(track_id)
            m = clip.matrices[i][0]
            truth = m[:, 2] + m[:, :2] @ np.array([127.5, 127.5])
            off.append(np.hypot(*(face.alignment.quad.mean(axis=0) - truth)))
    assert ids == {0}
    assert len(off) == len(dark) and max(off) < 12, max(off)  # px, for a 200 px face


def test_predict_py_on_a_clip_writes_rows_video_plot_and_summary(tmp_path: Path) -> None:
    clip = make_clip(_faces(), 16, motion="across", face_px=170, seed=2)
    src = _save(clip.frames, tmp_path / "walk.mp4")
    named = tmp_path / "walk.dat"  # a video whatever its name says
    named.write_bytes(src.read_bytes())
    out = tmp_path / "out"
    r = _predict(str(named), "--out", str(out), "--every", "2", "--no-progress", "--report")
    assert r.returncode == 0, r.stderr
    rows = _rows(out / "walk_frames.csv")
    frames = sorted({int(x["frame"]) for x in rows})
    assert frames == list(range(0, 16, 2))
    assert len(rows) == len(frames) * 2  # frames x faces
    assert {x["face"] for x in rows} == {"0", "1"}
    assert all(float(x["time_s"]) == pytest.approx(int(x["frame"]) / 25, abs=1e-3) for x in rows)
    assert {x["detector"] for x in rows} >= {"hog", "track"}
    assert _decoded_frames(out / "walk_overlay.mp4") == len(frames)
    cap = cv2.VideoCapture(str(out / "walk_overlay.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5, abs=0.01)
    with av.open(str(out / "walk_overlay.mp4")) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.format.name == "yuv420p"
    summary = _rows(out / "walk_summary.csv")
    whole = {x["face"]: x for x in summary if x["region"] == "face"}
    assert set(whole) == {"0", "1"} and all(x["frames"] == str(len(frames)) for x in whole.values())
    for face_id, s in whole.items():
        shares = [float(x["wrinkle_share"]) for x in rows if x["face"] == face_id]
        assert float(s["mean_share"]) == pytest.approx(np.mean(shares), abs=1e-6)
        assert float(s["max_share"]) == pytest.approx(max(shares), abs=1e-6)
    png = cv2.imread(str(out / "walk_regions.png"))
    assert png is not None and png.shape[0] > 400  # two panels
    # the clip's report: the time series inlined, per face the regions' mean share and length
    page = (out / "walk_report.html").read_text(encoding="utf-8")
    assert page.count("data:image/jpeg;base64,") == 1 and page.count("<h2>Face ") == 2
    for face_id, s in whole.items():
        lengths = [float(x["length_mm"]) for x in rows if x["face"] == face_id]
        assert float(s["mean_length_mm"]) == pytest.approx(np.mean(lengths), abs=0.01)
        assert f"<td>whole face</td><td>{len(frames)}</td>" in page
        assert f"<td>{s['mean_length_mm']}</td>" in page


def test_smoothing_steadies_a_still_face(tmp_path: Path) -> None:
    """Faces held still in front of a camera in steady light (sensor noise of 3 grey levels,
    compression): with the landmarks smoothed, the aligned frame moves less and the wrinkle
    share's coefficient of variation is lower, on every clip. (Under exposure flicker the
    share's changes come from the picture and smoothing does not lower them:
    docs/results/benchmarks.md, "Video".)"""
    from utils.inference.predictor import FoundFaces, WrinklePredictor

    predictor = WrinklePredictor()
    cvs: dict[bool, list[float]] = {False: [], True: []}
    for seed, face_id in enumerate(STILL):
        face = load_image(IMAGES / f"{face_id}.jpg")
        clip = make_clip([face], 40, face_px=220, jitter_px=0, jitter_deg=0, flicker=0,
                         noise=3, seed=seed)
        cap = cv2.VideoCapture(str(_save(clip.frames, tmp_path / f"still{seed}.mp4")))
        frames = []
        while (got := cap.read())[0]:
            frames.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
        wobble = {}
        for smooth in (False, True):
            tracker = FaceTracker(smooth=smooth)
            centres, shares = [], []
            for i, frame in enumerate(frames):
                (_, found), = tracker.update(frame, i / clip.fps)
                centres.append(found.alignment.quad.mean(axis=0))
                res = predictor.finish([FoundFaces(frame, [], [(found, found.alignment)])])[0]
                shares.append(res.faces[0].stats["wrinkle_share"])
            wobble[smooth] = np.std(centres, axis=0).mean()
            cvs[smooth].append(float(np.std(shares) / np.mean(shares)))
        assert wobble[True] < 0.8 * wobble[False], (face_id, wobble)
        assert cvs[True][-1] < cvs[False][-1], (face_id, cvs)


def test_a_clip_without_faces_is_rows_with_notes_and_a_failure(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur((rng.random((240, 320, 3)) * 255).astype(np.uint8), (0, 0), 8)
              for _ in range(6)]
    src = _save(frames, tmp_path / "empty.mp4")
    out = tmp_path / "out"
    r = _predict(str(src), "--out", str(out), "--no-progress")
    assert r.returncode == 1
    assert "no face" in r.stdout + r.stderr and "Traceback" not in r.stderr
    rows = _rows(out / "empty_frames.csv")
    assert [x["frame"] for x in rows] == [str(i) for i in range(6)]
    assert all(x["face"] == "" and "no face" in x["notes"] for x in rows)
    assert _decoded_frames(out / "empty_overlay.mp4") == 6


def test_bad_clips_fail_plainly_or_are_noted(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n")
    r = _predict(str(fake), "--out", str(tmp_path / "o1"), "--no-progress")
    assert r.returncode == 1 and str(fake) in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert not list((tmp_path / "o1").glob("notes_*"))

    clip = make_clip(_faces()[:1], 40, face_px=200, seed=4)
    whole = _save(clip.frames, tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[:len(whole) // 2])  # the header promises 40 frames
    out = tmp_path / "o2"
    r = _predict(str(cut), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = _rows(out / "cut_frames.csv")
    assert 0 < len(rows) < 40
    assert "truncated" in r.stdout
    assert "truncated" in _rows(out / "cut_summary.csv")[0]["notes"]


def test_a_4k_clip_is_scaled_and_noted(tmp_path: Path) -> None:
    clip = make_clip(_faces()[:1], 3, size=(3840, 2160), face_px=900, seed=5)
    src = _save(clip.frames, tmp_path / "big.mp4")
    out = tmp_path / "out"
    r = _predict(str(src), "--out", str(out), "--no-progress", "--max-frames", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "scaled from 3840x2160 to 1280x720" in r.stdout
    rows = _rows(out / "big_frames.csv")
    assert len(rows) == 2 and rows[0]["width"] == "1280" and rows[0]["height"] == "720"


def test_ctrl_c_keeps_a_playable_video_and_the_rows_so_far(tmp_path: Path) -> None:
    clip = make_clip(_faces()[:1], 150, face_px=200, seed=6)
    src = _save(clip.frames, tmp_path / "long.mp4")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "predict.py", str(src), "--out", str(out),
                             "--no-progress"], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 240
    while not list(out.glob(".long_overlay.part*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no frame was written"
        time.sleep(0.05)
    # The first frame is being encoded: hold the run there (SIGSTOP), so that the signal lands
    # while most of the clip is certainly left, whatever the CPU's speed; then let it go on.
    proc.send_signal(signal.SIGSTOP)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    said, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, said + err
    assert "Traceback" not in err
    rows = _rows(out / "long_frames.csv")
    n = len({x["frame"] for x in rows})
    assert 0 < n < 150
    assert _decoded_frames(out / "long_overlay.mp4") == n
    assert "interrupted" in _rows(out / "long_summary.csv")[0]["notes"]
    assert not list(out.glob(".long_overlay.part*"))


def test_the_frame_model_is_chosen_as_the_flag_says() -> None:
    """--frame-model auto: the bundled frame model when photos use the bundled model, else the
    photo model; photo: the photo model; a file: that file. The frame predictor shares the
    photo predictor's face parser and settings."""
    from utils.demo import model_info
    from utils.inference.loading import FRAME_CHECKPOINT
    from utils.inference.predictor import WrinklePredictor

    photo = WrinklePredictor(faces="largest")
    frames = photo.for_frames("auto", quiet=True)
    assert frames is not photo and Path(frames.checkpoint) == FRAME_CHECKPOINT
    assert frames.parser is photo.parser and frames.faces_mode == "largest"
    assert frames.loaded.recipe["image_size"] == photo.loaded.recipe["image_size"]
    assert "width 16" in frames.description and "width 32" in photo.description
    assert frames.short_name.startswith("frames_ffhq256 (")
    assert photo.for_frames("photo") is photo
    other = WrinklePredictor(FRAME_CHECKPOINT)  # a photo model that is not the bundled one
    assert other.for_frames("auto") is other
    assert WrinklePredictor(baseline=True).for_frames("auto").is_baseline
    named = photo.for_frames(str(FRAME_CHECKPOINT), quiet=True)
    assert Path(named.checkpoint) == FRAME_CHECKPOINT
    info = model_info(photo, frames)
    assert "Clips and the webcam" in info and "frames_ffhq256" in info
    assert "Clips and the webcam" not in model_info(photo, photo)


def test_a_clip_says_which_model_read_each_frame(tmp_path: Path) -> None:
    """The frames CSV's model column and the overlay's caption name the frame model (or the
    photo model with --frame-model photo)."""
    clip = make_clip(_faces()[:1], 6, face_px=200, seed=7, jitter_px=0, jitter_deg=0)
    src = _save(clip.frames, tmp_path / "one.mp4")
    models, bands = {}, {}
    for choice in ("auto", "photo"):
        out = tmp_path / choice
        r = _predict(str(src), "--out", str(out), "--no-progress", "--frame-model", choice)
        assert r.returncode == 0, r.stdout + r.stderr
        models[choice] = {x["model"] for x in _rows(out / "one_frames.csv")}
        cap = cv2.VideoCapture(str(out / "one_overlay.mp4"))
        ok, first = cap.read()
        cap.release()
        assert ok
        h, w = first.shape[:2]
        source = cv2.cvtColor(clip.frames[0], cv2.COLOR_RGB2BGR).astype(int)
        diff = np.abs(first.astype(int) - source).mean(axis=2)
        bands[choice] = (diff[h - 24:, : w // 3].mean(), diff[:24, -w // 3:].mean())
    assert len(models["auto"]) == 1 and next(iter(models["auto"])).startswith("frames_ffhq256")
    assert len(models["photo"]) == 1 and next(iter(models["photo"])).startswith("default_ffhq256")
    for caption, corner in bands.values():
        # the caption's letters in the bottom-left corner; the top-right corner, with no face
        # and no caption, differs from the source by compression alone
        assert caption > 4 * corner and caption > 8, bands
