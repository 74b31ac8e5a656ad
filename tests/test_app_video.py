"""The demo's Video tab and live webcam mode: the handlers on clips made from real faces, the
limits checked before decoding, and headless Chromium uploading a clip and streaming a fake
camera (a .y4m file) from two browsers at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.conftest import IMAGES, needs_data
from tests.test_app import CHROMIUM, CHROMIUM_ARGS, free_port
from utils.data.images import load_image
from utils.errors import UserError
from utils.faces.photos import make_clip

pytestmark = needs_data
pytest.importorskip("av", reason="PyAV not installed (requirements.txt)")

FACES = ("00016", "00155")


def _clip(path: Path, n: int = 12, faces: int = 2, seed: int = 0) -> Path:
    from utils.inference.video import H264Writer

    clip = make_clip([load_image(IMAGES / f"{i}.jpg") for i in FACES[:faces]], n,
                     motion="across" if faces > 1 else "still", face_px=170, seed=seed)
    w = H264Writer(path, clip.fps)
    for f in clip.frames:
        w.write(f)
    w.close()
    return path


def _y4m(path: Path, frames: int = 50) -> Path:
    """A fake camera for Chromium: a face held in front of it, 640x480 at 25 frames a second."""
    clip = make_clip([load_image(IMAGES / f"{FACES[0]}.jpg")], frames, face_px=220, seed=1)
    with path.open("wb") as fh:
        fh.write(b"YUV4MPEG2 W640 H480 F25:1 Ip A1:1 C420jpeg\n")
        for f in clip.frames:
            fh.write(b"FRAME\n" + cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def predictor() -> Any:
    from utils.inference.predictor import WrinklePredictor

    return WrinklePredictor()


def test_video_handler_tracks_two_faces_and_deletes_the_upload(predictor: Any,
                                                               tmp_path: Path) -> None:
    from utils.demo import VIDEO_HEADERS, run_video

    src = _clip(tmp_path / "upload.mp4")
    forgotten: list[str] = []
    video, plot, text, table, report = run_video(
        predictor, {"path": str(src), "orig_name": "walk.mp4"}, 0.8, tmp_path / "work",
        forgotten.append)
    assert "<h2>Face 0</h2>" in Path(report).read_text(encoding="utf-8")  # the clip report
    assert forgotten == [str(src)]
    cap = cv2.VideoCapture(video)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 12
    assert cv2.imread(plot) is not None
    assert "12 frames analysed" in text and "2 faces followed" in text
    assert list(table.columns) == VIDEO_HEADERS
    whole = table[table["region"] == "whole face"]
    assert sorted(whole["face"]) == [0, 1] and set(whole["frames"]) == {12}


def test_video_limits_are_checked_before_decoding(predictor: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import utils.demo as demo
    import utils.inference.video as video

    src = _clip(tmp_path / "long.mp4", n=30, faces=1)  # 1.2 s at 25 frames a second

    def no_decoding(*_: Any, **__: Any) -> None:
        raise AssertionError("decoded a clip that should have been refused")

    monkeypatch.setattr(video, "predict_video", no_decoding)
    monkeypatch.setattr(demo, "MAX_VIDEO_SECONDS", 1)
    forgotten: list[str] = []
    with pytest.raises(UserError, match=r"long\.mp4: the clip lasts 1 s.*up to 1 s"):
        demo.run_video(predictor, {"path": str(src)}, 0.8, tmp_path, forgotten.append)
    assert forgotten == [str(src)]
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(UserError, match=r"notes\.mp4: not a video"):
        demo.run_video(predictor, {"path": str(text)}, 0.8, tmp_path)


def test_live_handler_follows_a_face_across_frames(predictor: Any) -> None:
    from utils.demo import run_live

    clip = make_clip([load_image(IMAGES / f"{FACES[0]}.jpg")], 6, size=(1280, 720),
                     face_px=400, seed=2)
    tracker = None
    for frame in clip.frames:
        shown, text, tracker = run_live(predictor, frame, 0.8, tracker)
        assert shown.shape == (360, 640, 3)  # analysed at most 640 px wide
        assert text.startswith("face 0: wrinkles cover")
    assert tracker.next_id == 1
    _, text, _ = run_live(predictor, np.full((480, 640, 3), 90, np.uint8), 0.8, None)
    assert "no face" in text


@pytest.fixture(scope="module")
def server(predictor: Any) -> Iterator[str]:
    from utils.demo import build_demo, serve

    demo = build_demo(predictor)
    yield serve(demo, "127.0.0.1", free_port(), block=False)
    demo.close()


def _browser_ready() -> Any:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; .ci/install_browser.sh)")
    return pytest.importorskip("playwright.sync_api",
                               reason="playwright not installed (see requirements-dev.txt)")


def test_browser_video_tab_plays_the_overlay(server: str, tmp_path: Path) -> None:
    sync_api = _browser_ready()
    src = _clip(tmp_path / "walk.mp4")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server)
            page.get_by_role("tab", name="Video").click()
            page.set_input_files("#clip input[type=file]", str(src))
            page.wait_for_selector("#clip video", timeout=20_000)
            page.click("#analyse")
            page.wait_for_function("() => document.querySelector('#clip-summary').innerText"
                                   ".includes('frames analysed')", timeout=120_000)
            assert "2 faces followed" in page.inner_text("#clip-summary")
            # the browser decodes the H.264 overlay: it knows its length and its picture size
            page.wait_for_function("() => { const v = document.querySelector('#clip-overlay "
                                   "video'); return v && v.readyState >= 1 && v.videoWidth === "
                                   "640 && Math.abs(v.duration - 12 / 25) < 0.05; }",
                                   timeout=20_000)
            assert page.locator("#clip-plot img").count() == 1
            assert page.inner_text("#clip-table").count("whole face") == 2
            assert page.locator(".toast-body.error").count() == 0
        finally:
            browser.close()


def test_browser_webcam_streams_from_two_browsers_at_once(server: str, tmp_path: Path) -> None:
    """Two browsers stream a fake camera at once: both keep getting overlays and a share, in
    turns, without an error (the rate on this machine: bench/bench_video.py, live)."""
    sync_api = _browser_ready()
    cam = _y4m(tmp_path / "cam.y4m")
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={cam}"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            pages = []
            for _ in range(2):
                page = browser.new_context(permissions=["camera"]).new_page()
                page.goto(server)
                page.get_by_role("tab", name="Live").click()
                page.get_by_text("Click to Access Webcam").click()
                page.get_by_role("button", name="capture photo").click()
                pages.append(page)
            seen: list[set[str]] = [set(), set()]
            deadline = time.monotonic() + 60
            while min(len(s) for s in seen) < 5 and time.monotonic() < deadline:
                for page, s in zip(pages, seen, strict=True):
                    img = page.locator("#live-overlay img")
                    if img.count() and "face 0: wrinkles cover" in page.inner_text("#live-text"):
                        s.add(img.get_attribute("src") or "")
                time.sleep(0.05)
            assert all(len(s) >= 5 for s in seen), [len(s) for s in seen]
            for page in pages:
                assert page.locator(".toast-body.error").count() == 0
        finally:
            browser.close()
