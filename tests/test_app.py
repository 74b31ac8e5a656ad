"""The browser demo: its handler on real faces and bad inputs, a real server called through
gradio_client, a real (headless Debian) Chromium driving the page, and the command line."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.conftest import IMAGES, REPO, labelled_ids, needs_data

pytestmark = needs_data

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
EXAMPLE_IDS = {"00264", "00406", "00541"}


def face_id() -> str:
    """A labelled face that is not one of the bundled examples (so its upload is recognisable)."""
    return next(i for i in labelled_ids() if i not in EXAMPLE_IDS)


def face_path() -> Path:
    return IMAGES / f"{face_id()}.jpg"


def face() -> np.ndarray:
    from utils.data.images import load_image

    return load_image(face_path())


def handler_of(demo: Any) -> Callable[..., tuple]:
    """The function behind the demo's /predict endpoint (the button uses it too)."""
    return next(f.fn for f in demo.fns.values() if f.api_name == "predict")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_header_only(w: int, h: int) -> bytes:
    """A small PNG file that claims w x h pixels (a decompression bomb's shape, not its size)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (w + 1) * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def baseline() -> tuple[Any, Any]:
    """The texture-map baseline predictor and its demo (built once for the module)."""
    from app import build_demo
    from utils.inference.predictor import WrinklePredictor

    predictor = WrinklePredictor(baseline=True, device="cpu")
    return predictor, build_demo(predictor)


@pytest.fixture(scope="module")
def server(baseline: tuple[Any, Any]) -> Iterator[str]:
    """The baseline demo served on a free local port, closed at the end."""
    from app import serve

    url = serve(baseline[1], "127.0.0.1", free_port(), block=False)
    yield url
    baseline[1].close()


# 1. the handler on a real face ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["baseline", "default"])
def test_handler_on_a_real_face(kind: str, baseline: tuple[Any, Any]) -> None:
    import app
    from utils.faces.regions import REGION_LABELS
    from utils.inference.loading import DEFAULT_CHECKPOINT
    from utils.inference.predictor import WrinklePredictor

    if kind == "default":
        if not DEFAULT_CHECKPOINT.is_file():
            pytest.skip(f"no bundled model at {DEFAULT_CHECKPOINT} (train one to test it)")
        predictor = WrinklePredictor(device="cpu")
        demo = app.build_demo(predictor)
    else:
        predictor, demo = baseline
    rgb = face()
    overlay, heat, summary, table, state = handler_of(demo)(str(face_path()), predictor.threshold)
    mask = predictor.predict(rgb, predictor.threshold).mask
    assert overlay.shape == rgb.shape and overlay.dtype == np.uint8
    assert heat.shape[0] == rgb.shape[0] and heat.shape[1] > rgb.shape[1]  # + colour scale
    assert mask.any()
    assert (overlay[mask] != rgb[mask]).any(axis=1).all()  # every wrinkle pixel is drawn
    assert (overlay[~mask] == rgb[~mask]).all()
    assert not (heat[:, :rgb.shape[1]] == rgb).all()
    assert list(table.columns) == app.TABLE_HEADERS
    assert list(table["region"]) == ["whole face", *REGION_LABELS.values()]
    # the lines in mm: the regions hold the face's lines, or fewer (some lie in no region)
    whole = table[table["region"] == "whole face"].iloc[0]
    regions = table[table["region"] != "whole face"]
    assert whole["lines"] >= regions["lines"].sum() and whole["length mm"] > 0
    assert whole["length mm"] >= regions["length mm"].sum() - 0.1 * len(regions)
    assert set(table["face"]) == {0}
    assert "% of the face" in summary and f"threshold {predictor.threshold:.2f}" in summary
    assert state["rgb"].shape == rgb.shape
    assert (face_path()).is_file()  # a plain path (not an upload) is never deleted
    info = app.model_info(predictor)
    assert "landmark face region" in info
    assert ("⚠ no trained wrinkle weights" in info) == predictor.is_baseline
    if kind == "default":
        from utils.checkpoints import load_checkpoint

        ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
        assert f"trained on {len(ckpt['split']['train'])} FFHQ faces" in info
        assert f"F1 {ckpt['out_of_fold']['f1_at_threshold']:.3f}" in info
        assert "cross-validation" in info and "two human annotators" in info
    # landmarks and region outlines on request
    drawn = handler_of(demo)(str(face_path()), predictor.threshold, True)[0]
    assert (drawn != overlay).any(axis=2).sum() > 500


def test_no_face_says_so_in_the_headline(baseline: tuple[Any, Any]) -> None:
    _, demo = baseline
    wall = np.full((300, 400, 3), 140, np.uint8)
    overlay, heat, summary, table, _ = handler_of(demo)(wall, 0.5)
    assert summary.startswith("### No face found") and "% of the face" not in summary
    assert heat is None and len(table) == 0 and overlay is None  # no photo under "Wrinkles"


def test_several_faces_are_numbered_in_one_table(baseline: tuple[Any, Any]) -> None:
    from utils.data.images import load_image

    _, demo = baseline
    a, b = (load_image(IMAGES / f"{i}.jpg") for i in labelled_ids(2))
    photo = np.full((420, 760, 3), 100, np.uint8)
    photo[10:410, 10:410] = cv2.resize(a, (400, 400), interpolation=cv2.INTER_CUBIC)
    photo[100:356, 460:716] = b
    _, _, summary, table, _ = handler_of(demo)(photo, 0.5)
    assert summary.startswith("### 2 faces") and "(face 1)" in summary and "(face 2)" not in summary
    assert sorted(set(table["face"])) == [0, 1] and len(table) == 22


def test_compare_tab_on_two_photos_of_one_face(baseline: tuple[Any, Any]) -> None:
    import gradio as gr

    from utils.faces.photos import make_photo

    _, demo = baseline
    compare = next(f.fn for f in demo.fns.values() if f.api_name == "compare")
    rgb = face()
    before = make_photo(rgb, 1, "square").rgb
    after = make_photo(rgb, 2, "4:3").rgb
    pair, diff, summary, table, report, _ = compare(before, after, 0.5)
    assert pair.shape[1] > 2 * 256 and diff.shape[0] > 256
    page = Path(report).read_text(encoding="utf-8")  # the comparison report, for download
    assert "Wrinkle comparison" in page and page.count("<tr><td>") == 11
    assert "noise band" in summary and "after vs before" in summary
    assert table["region"].iloc[0] == "whole face" and len(table) == 11
    assert set(table["verdict"]) <= {"within measurement noise", "decrease", "increase"}
    with pytest.raises(gr.Error, match="after: no face found"):
        compare(before, np.full((200, 300, 3), 90, np.uint8), 0.5)
    with pytest.raises(gr.Error, match="no before photo"):
        compare(None, after, 0.5)


def _upload(demo: Any, name: str, data: bytes) -> dict[str, Any]:
    """A file as gradio's upload route leaves it: in the cache, recorded, as a payload."""
    folder = Path(os.environ["GRADIO_TEMP_DIR"]) / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    demo.upload_file_set.add(str(path))
    return {"path": str(path), "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def test_compare_twice_and_a_photo_with_itself(baseline: tuple[Any, Any]) -> None:
    """The same upload as before and after (one cached file), and the button clicked again
    after the uploads were deleted: both work from the session's decoded photos."""
    _, demo = baseline
    compare = next(f.fn for f in demo.fns.values() if f.api_name == "compare")
    payload = _upload(demo, "me.jpg", face_path().read_bytes())
    first = compare(payload, payload, 0.5)
    assert not Path(payload["path"]).exists()  # read once, deleted
    again = compare(payload, payload, 0.5, first[5])
    for _, _, summary, table, _, _ in (first, again):
        assert set(table["verdict"]) == {"within measurement noise"}
        assert (table["change (points)"] == 0).all()
        assert "may show different people" not in summary
    assert (again[0] == first[0]).all()


def test_a_face_at_the_models_size_is_not_called_small(baseline: tuple[Any, Any]) -> None:
    _, demo = baseline
    summary = handler_of(demo)(face(), 0.5)[2]
    assert "is small in this photo" not in summary  # an FFHQ face of 256 px: 252 px across
    assert "Asymmetry of the wrinkle share, (a - b) / (a + b): right vs left crow's feet" in summary
    small = np.full((400, 400, 3), 120, np.uint8)
    small[130:270, 130:270] = cv2.resize(face(), (140, 140), interpolation=cv2.INTER_AREA)
    assert "is small in this photo" in handler_of(demo)(small, 0.5)[2]


def test_thicker_lines_are_a_view_only(baseline: tuple[Any, Any]) -> None:
    from utils.demo import page_threshold, run_prediction, thicken

    predictor, _ = baseline
    thin = run_prediction(predictor, face(), 0.5)
    wide = run_prediction(predictor, face(), 0.5, thick=True)
    changed = [(o != face()).any(axis=2).sum() for o in (thin[0], wide[0])]
    assert changed[1] > 1.5 * changed[0]
    assert wide[2] == thin[2] and wide[3].equals(thin[3])  # the numbers are the same
    mask = np.zeros((1200, 900), bool)
    mask[600, 100:800] = True
    assert thicken(mask)[598:603, 450].all() and not thicken(mask)[596, 450]
    with pytest.warns(UserWarning, match="threshold 2 is outside 0.05-0.95: 0.95 is used"):
        assert page_threshold(2) == 0.95
    assert page_threshold("0.3") == 0.3


def test_pair_captions_sit_below_the_faces(baseline: tuple[Any, Any]) -> None:
    """A viewer's own label covers a picture's top left corner: captions go underneath."""
    from utils.compare import compare_photos, side_by_side

    predictor, _ = baseline
    comp = compare_photos(predictor, [("before", face()), ("after", face())])
    pic = side_by_side(comp)
    assert (pic[-28:, :, :] == 255).mean() > 0.9 and (pic[-28:, :60] < 128).any()
    assert (pic[:28, :256] == 255).mean() < 0.5  # the top rows are the face, not a caption


# 2. bad and unusual inputs ----------------------------------------------------------------


def test_bad_inputs_are_clear_errors(baseline: tuple[Any, Any], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    import utils.data.images

    _, demo = baseline
    predict = handler_of(demo)
    with pytest.raises(gr.Error, match="no photo"):
        predict(None, 0.5)
    with pytest.raises(gr.Error, match=r"1x1 px is too small to analyse \(at least 16 px"):
        predict(np.zeros((1, 1, 3), np.uint8), 0.5)
    with pytest.raises(gr.Error, match="between 0 and 1"):
        predict(face(), 0.0)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    with pytest.raises(gr.Error, match=r"notes\.jpg: not an image file"):
        predict(str(text), 0.5)
    # A file that claims 20000x20000 px is refused from its header, before anything is decoded.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20_000, 20_000))

    def must_not_decode(*_: object) -> None:
        raise AssertionError("the oversized image was decoded")

    monkeypatch.setattr(utils.data.images.cv2, "imdecode", must_not_decode)
    monkeypatch.setattr(utils.data.images.Image.Image, "load", must_not_decode)
    with pytest.raises(gr.Error, match="20000x20000 px is too large"):
        predict(str(bomb), 0.5)


def test_large_grey_rgba_and_16bit_inputs(baseline: tuple[Any, Any]) -> None:
    predictor, demo = baseline
    predict = handler_of(demo)
    rgb = face()
    big = np.full((4000, 6000, 3), 110, np.uint8)
    big[500:3500, 1500:4500] = cv2.resize(rgb, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    overlay, heat, summary, table, _ = predict(big, 0.5)
    assert overlay.shape == (1365, 2048, 3) and heat.shape[0] == 1365
    assert "scaled down from 6000x4000 to 2048x1365" in summary
    assert len(table) == 11
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    deep = rgb.astype(np.uint16) * 257
    for arr in (grey, rgba, deep, grey[:, :, None]):
        overlay, heat, *_ = predict(arr, 0.5)
        assert overlay.shape == (*rgb.shape[:2], 3) and overlay.dtype == np.uint8
        assert heat.shape[0] == rgb.shape[0]
    mask = predictor.predict(rgb, 0.5).mask
    assert (predict(rgba, 0.5)[0][~mask] == rgb[~mask]).all()  # alpha dropped, colours kept
    assert (predict(deep, 0.5)[0][~mask] == rgb[~mask]).all()  # 16-bit scaled to 8-bit


def test_uploads_are_deleted_once_read_and_rethresholding_reuses_the_photo(
        baseline: tuple[Any, Any]) -> None:
    import gradio as gr

    _, demo = baseline
    predict = handler_of(demo)
    folder = Path(os.environ["GRADIO_TEMP_DIR"]) / "0123456789abcdef"
    folder.mkdir()
    upload = folder / "me.jpg"
    shutil.copyfile(face_path(), upload)
    demo.upload_file_set.add(str(upload))  # as gradio's upload route records it
    payload = {"path": str(upload), "orig_name": "me.jpg", "meta": {"_type": "gradio.FileData"}}
    first = predict(payload, 0.2)
    assert not upload.exists() and not folder.exists()
    assert str(upload) not in demo.upload_file_set
    # The slider re-runs with the same payload: the session's decoded copy is used.
    again = predict(payload, 0.6, photo=first[4])
    assert "threshold 0.60" in again[2]
    assert (again[0] != face()).any(axis=2).sum() < (first[0] != face()).any(axis=2).sum()
    with pytest.raises(gr.Error, match="upload it again"):
        predict(payload, 0.6, photo=None)  # another session cannot read it any more
    # A non-image upload is deleted too.
    folder.mkdir()
    junk = folder / "junk.png"
    junk.write_bytes(b"hello")
    demo.upload_file_set.add(str(junk))
    with pytest.raises(gr.Error, match="not an image"):
        predict({"path": str(junk), "orig_name": "junk.png"}, 0.5)
    assert not junk.exists()
    # The bundled examples are in the same cache and are kept.
    kept = {p for b in demo.blocks.values() for p in getattr(b, "keep_in_cache", set())}
    assert {Path(p).name for p in kept} >= {f"{i}.jpg" for i in EXAMPLE_IDS}
    assert all(Path(p).is_file() for p in kept)


# 3. a real server, called through gradio_client -------------------------------------------


def test_server_api_errors_and_keeps_serving(server: str, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False, download_files=str(tmp_path / "dl"),
                    analytics_enabled=False)
    overlay, heat, summary, table = client.predict(handle_file(str(face_path())), 0.3,
                                                   api_name="/predict")
    for path in (overlay, heat):
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        assert Path(path).suffix == ".png" and img.shape[0] == 256 and img.shape[2] == 3
    assert cv2.imread(overlay).shape == (256, 256, 3)
    assert "% of the face" in summary and "threshold 0.30" in summary
    assert [row[1] for row in table["data"]][:4] == ["whole face", "between the brows",
                                                     "forehead", "crow's feet (right)"]
    text = tmp_path / "notes.txt"
    text.write_text("this is not a photo")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(text)), 0.3, api_name="/predict")
    again = client.predict(handle_file(str(face_path())), 0.5, api_name="/predict")
    assert "threshold 0.50" in again[2]
    # A raw call that names a server file instead of uploading one is refused.
    import httpx

    raw = {"path": str(face_path())}  # no FileData marker, so gradio does not check the path
    event = httpx.post(f"{server}gradio_api/call/predict",
                       json={"data": [raw, 0.5, False]}).json()
    reply = httpx.get(f"{server}gradio_api/call/predict/{event['event_id']}", timeout=30).text
    assert "event: error" in reply and "must be uploaded" in reply
    # Neither upload is left in gradio's cache, a private folder of the demo's own.
    cache = Path(os.environ["GRADIO_TEMP_DIR"])
    if cache.name.startswith("wrinkle-demo-"):
        assert cache.stat().st_mode & 0o777 == 0o700
    left = {p.name for p in cache.rglob("*") if p.is_file()}
    assert face_path().name not in left and text.name not in left


def test_port_in_use_is_a_user_error(baseline: tuple[Any, Any]) -> None:
    from app import build_demo, serve
    from utils.errors import UserError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(UserError, match="port is taken"):
            serve(build_demo(baseline[0]), "127.0.0.1", s.getsockname()[1], block=False)


# 4. a real browser --------------------------------------------------------------------------


def test_browser_upload_shows_the_overlay(server: str, tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; .ci/install_browser.sh)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright not installed (see requirements-dev.txt)")
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a photo")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(server)
            assert "landmark face region" in page.inner_text("#model-info")
            page.set_input_files("#photo input[type=file]", str(face_path()))
            page.wait_for_selector("#overlay img[src]", timeout=30_000)
            page.wait_for_function(
                "() => { const i = document.querySelector('#overlay img');"
                " return i && i.complete && i.naturalWidth === 256; }", timeout=10_000)
            assert "/gradio_api/file=" in page.get_attribute("#overlay img", "src")
            assert page.locator("#heatmap img").count() == 1
            assert "threshold 0.25" in page.inner_text("#summary")
            assert "crow's feet (right)" in page.inner_text("#regions")
            # A new threshold re-runs on the photo the session kept (its upload is gone by now).
            box = page.locator("#threshold input[type=number]")
            box.fill("0.5")
            box.press("Tab")
            page.wait_for_function("() => document.querySelector('#summary').innerText"
                                   ".includes('threshold 0.50')", timeout=10_000)
            assert page.locator(".toast-body.error").count() == 0
            # A file that only looks like a photo: a clear error, and the page keeps working.
            page.set_input_files("#photo input[type=file]", str(fake))
            page.wait_for_selector(".toast-body.error", timeout=10_000)
            assert "fake.jpg: not an image file" in page.inner_text(".toast-body.error")
            page.set_input_files("#photo input[type=file]", str(face_path()))
            page.wait_for_selector("#overlay img[src]", timeout=10_000)
            assert "threshold 0.50" in page.inner_text("#summary")
        finally:
            browser.close()


def test_browser_threshold_two_faces_and_compare_twice(server: str, tmp_path: Path) -> None:
    """A typed threshold of 2 runs as the 0.95 the box shows; a photo of two faces lists every
    row; Compare works twice on the same photo given as before and after."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; .ci/install_browser.sh)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright not installed (see requirements-dev.txt)")
    from utils.data.images import load_image

    a, b = (load_image(IMAGES / f"{i}.jpg") for i in labelled_ids(2))
    two = np.full((420, 760, 3), 100, np.uint8)
    two[10:410, 10:410] = cv2.resize(a, (400, 400), interpolation=cv2.INTER_CUBIC)
    two[100:356, 460:716] = b
    two_path = tmp_path / "two.png"
    cv2.imwrite(str(two_path), cv2.cvtColor(two, cv2.COLOR_RGB2BGR))
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server)
            page.set_input_files("#photo input[type=file]", str(two_path))
            page.wait_for_function("() => document.querySelector('#summary').innerText"
                                   ".includes('2 faces')", timeout=30_000)
            rows = page.inner_text("#regions")
            assert rows.count("cheeks") == 2 and rows.count("whole face") == 2, rows
            box = page.locator("#threshold input[type=number]")
            box.fill("2")
            box.press("Tab")
            page.wait_for_function("() => document.querySelector('#summary').innerText"
                                   ".includes('threshold 0.95')", timeout=10_000)
            assert box.input_value() == "0.95"
            assert page.locator(".toast-body.error").count() == 0
            page.get_by_role("tab", name="Compare").click()
            page.set_input_files("#before input[type=file]", str(face_path()))
            page.set_input_files("#after input[type=file]", str(face_path()))
            page.wait_for_selector("#after img", timeout=10_000)
            for _ in range(2):
                page.click("#compare")
                with contextlib.suppress(sync_api.TimeoutError):  # a fast run may hide it
                    page.wait_for_selector("#pair .progress-text", timeout=5_000)
                page.wait_for_function("() => !document.querySelector('#pair .progress-text')",
                                       timeout=30_000)
                assert "noise band" in page.inner_text("#compare-summary")
                assert page.locator(".toast-body.error").count() == 0
            assert "within measurement noise" in page.inner_text("#compare-summary")
        finally:
            browser.close()


# 5. the command line ------------------------------------------------------------------------


def test_cli_help_is_fast_and_import_is_light() -> None:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, str(REPO / "app.py"), "--help"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "--checkpoint" in res.stdout and "--share" in res.stdout
    assert time.perf_counter() - start < 10
    res = subprocess.run([sys.executable, "-c", "import sys, app; "
                          "print(sorted({'torch', 'gradio'} & set(sys.modules)))"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 0 and res.stdout.strip() == "[]"


def test_cli_missing_checkpoint_fails_before_serving(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(REPO / "app.py"), "--checkpoint", "missing.pth",
                          "--port", str(free_port())], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 1
    assert "error: missing.pth: checkpoint not found" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert "Running on" not in res.stdout


def test_app_serves_on_the_host_and_port_a_space_sets(tmp_path: Path) -> None:
    """A Hugging Face Space (or a container) sets GRADIO_SERVER_NAME and GRADIO_SERVER_PORT."""
    import httpx

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_TEMP_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--baseline"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("the app did not answer on the port GRADIO_SERVER_PORT named")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    card = (REPO / "space" / "README.md").read_text()
    assert card.startswith("---\n") and "sdk: gradio" in card and "app_file: app.py" in card
    bad = subprocess.run([sys.executable, str(REPO / "app.py"), "--help"], cwd=REPO,
                         env={**os.environ, "GRADIO_SERVER_PORT": "eighty"}, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and "not a port number" in bad.stderr


def test_the_photo_tab_offers_the_visit_report_of_the_photo_it_analysed() -> None:
    """The report button: the photo last analysed, as one self-contained HTML page whose
    table is the page's own (the /report endpoint); without a photo, a plain error."""
    import gradio as gr

    import app
    from utils.inference.predictor import WrinklePredictor

    predictor = WrinklePredictor(device="cpu")
    demo = app.build_demo(predictor)
    report = next(f.fn for f in demo.fns.values() if f.api_name == "report")
    *_, table, state = handler_of(demo)(str(face_path()), predictor.threshold)
    path = Path(report(predictor.threshold, state))
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Wrinkle report" in page
    whole = table[table["region"] == "whole face"].iloc[0]
    assert f"<tr><td>whole face</td><td>{whole['lines']}</td>" in page
    with pytest.raises(gr.Error, match="no photo analysed yet"):
        report(predictor.threshold, None)
