"""annotate.py: the labelling loop on real faces. The library (order, resuming, ids, reopening,
two pages on one folder), the saved folder read by the project's own data code, and headless
Chromium drawing a stroke with the mouse on the page."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.conftest import IMAGES, needs_data
from tests.test_app import CHROMIUM, CHROMIUM_ARGS, free_port

pytestmark = needs_data
FACES = ("00016", "00155")
STATUS_HAS = "(t) => (document.querySelector('#status') || {innerText: ''}).innerText.includes(t)"


@pytest.fixture(scope="module")
def predictor() -> Any:
    from utils.inference.predictor import WrinklePredictor

    return WrinklePredictor()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in FACES:
        shutil.copy(IMAGES / f"{i}.jpg", folder / f"{i}.jpg")
    return folder


def _session(photos: Path, out: Path, predictor: Any, **kw: Any) -> Any:
    from utils.annotate import AnnotationSession

    return AnnotationSession(sorted(photos.glob("*.jpg")), out, "ana", predictor, **kw)


def test_save_resume_reopen_and_the_layout_trains(photos: Path, tmp_path: Path,
                                                  predictor: Any) -> None:
    from utils.annotate import SIDE
    from utils.data.masks import read_mask
    from utils.data.pairs import find_pairs

    out = tmp_path / "labels"
    s = _session(photos, out, predictor)
    assert s.progress() == (0, 2)
    item = s.open(s.next_item("p1"))
    assert item.photo.name == "00016.jpg" and item.aligned.shape == (SIDE, SIDE, 3)
    assert any("upsampled 4.0x" in n for n in item.notes)
    proposal = s.proposal(item)
    assert 0 < proposal.mean() < 0.1  # the model proposes lines, not the face
    mask = proposal.copy()
    mask[500:504, 300:700] = True  # a line the annotator adds
    mask[:100] = False  # and whatever the model marked there, removed
    first = s.save(item, mask, proposal, seconds=12.5)
    assert first == "l00001"
    assert np.array_equal(read_mask(out / "manual_wrinkle_masks" / f"{first}.png"), mask)
    line = json.loads((out / "annotations.jsonl").read_text().splitlines()[0])
    assert line["id"] == first and line["photo"] == "00016.jpg" and line["face"] == 0
    assert line["annotator"] == "ana" and line["threshold"] == pytest.approx(s.threshold)
    assert line["added_px"] == int((mask & ~proposal).sum()) > 0
    assert line["removed_px"] == int((proposal & ~mask).sum())
    assert line["seconds"] == 12.5 and len(line["sha256"]) == 64
    # a rerun (a new session on the same folder) opens the face without a label
    again = _session(photos, out, predictor)
    assert again.progress() == (1, 2)
    assert again.next_item("p2").photo.name == "00155.jpg"
    # the saved face reopens with its mask, and a correction keeps its id
    item2, saved = again.reopen(first)
    assert np.array_equal(saved, mask)
    saved[600:603, 400:600] = True
    assert again.save(item2, saved, mask, 3.0, face_id=first) == first
    assert len((out / "annotations.jsonl").read_text().splitlines()) == 2
    # the project's data code reads the folder as it is
    report = find_pairs(out / "face_images", out / "manual_wrinkle_masks")
    assert [p.id for p in report.pairs] == [first]


def test_two_pages_never_take_one_face_or_one_id(photos: Path, tmp_path: Path,
                                                 predictor: Any) -> None:
    out = tmp_path / "labels"
    a, b = _session(photos, out, predictor), _session(photos, out, predictor, start="empty")
    ia, ib = a.next_item("page-a"), a.next_item("page-b")
    assert ia.key != ib.key  # one server: each page gets its own face
    for s, item in ((a, ia), (b, a.items[0])):  # two servers may open the same face
        s.open(item)
        assert s.proposal(item).any() == (s is a)  # --start empty proposes nothing
    ids = {a.save(ia, a.proposal(ia), a.proposal(ia), 1.0),
           b.save(a.items[0], np.zeros((1024, 1024), bool), np.zeros((1024, 1024), bool), 1.0)}
    assert ids == {"l00001", "l00002"}  # both saves kept, no overwrite
    assert len(list((out / "manual_wrinkle_masks").glob("*.png"))) == 2


def test_browser_stroke_is_saved_where_it_was_drawn(photos: Path, tmp_path: Path,
                                                    predictor: Any) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; .ci/install_browser.sh)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright not installed (see requirements-dev.txt)")
    from utils.annotate import build_page
    from utils.data.masks import read_mask
    from utils.demo import serve

    out = tmp_path / "labels"
    session = _session(photos, out, predictor)
    page_app = build_page(session)
    url = serve(page_app, "127.0.0.1", free_port(), block=False)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1100})
                page.goto(url)
                page.wait_for_function(STATUS_HAS, arg="00016.jpg", timeout=60_000)
                # The editor draws the face and its layer after the status: on a busy CPU
                # that takes seconds, so look until the face is on the canvas.
                deadline = time.monotonic() + 60
                while True:
                    time.sleep(1)
                    box = page.locator("#editor canvas").first.bounding_box()
                    shot = cv2.imdecode(np.frombuffer(page.screenshot(clip=box), np.uint8),
                                        cv2.IMREAD_COLOR)
                    h, w = shot.shape[:2]
                    # where the face lies on the canvas: the non-white span across its middle
                    ink = np.abs(shot.astype(int) - 255).max(axis=2) > 6
                    cols = np.nonzero(ink[h // 2 - 20:h // 2 + 20].any(axis=0))[0]
                    rows = np.nonzero(ink[:, w // 2 - 20:w // 2 + 20].any(axis=1))[0]
                    if (cols.size and rows.size) or time.monotonic() > deadline:
                        break
                assert cols.size and rows.size, "the face never appeared in the editor"
                time.sleep(1)  # and its layer above it
                x0, y0 = cols.min(), rows.min()
                k = (cols.max() + 1 - x0) / 1024
                assert k == pytest.approx((rows.max() + 1 - y0) / 1024, abs=0.01)

                def screen(x: float, y: float) -> tuple[float, float]:
                    return box["x"] + x0 + (x + 0.5) * k, box["y"] + y0 + (y + 0.5) * k

                page.get_by_role("button", name="Brush").first.click()
                page.mouse.move(*screen(300, 700))
                page.mouse.down()
                for x in np.linspace(300, 700, 21):
                    page.mouse.move(*screen(x, 700))
                page.mouse.up()
                page.click("#save")
                page.wait_for_function(STATUS_HAS, arg="saved l00001", timeout=60_000)
                assert "00155.jpg" in page.inner_text("#status")  # the next face is open
                assert "1 of 2 faces labelled" in page.inner_text("#status")
            finally:
                browser.close()
    finally:
        page_app.close()
    mask = read_mask(out / "manual_wrinkle_masks" / "l00001.png")
    item = session.items[0]
    proposal = session.proposal(session.open(item))
    added = mask & ~proposal
    ys, xs = np.nonzero(added)
    assert abs(ys.mean() - 700) <= 2 and abs(xs.min() - 300) <= 8 and abs(xs.max() - 700) <= 8
    covered = added[:, 310:690].any(axis=0)
    assert covered.mean() > 0.9  # the stroke runs the whole way (the proposal may hold parts)
    far = np.ones_like(mask)
    far[680:720] = False
    assert np.array_equal(mask & far, proposal & far)  # the proposal is kept elsewhere
    line = json.loads((out / "annotations.jsonl").read_text().splitlines()[0])
    assert line["added_px"] == int(added.sum()) and line["removed_px"] == 0
    # a rerun of the page opens the second face
    assert _session(photos, out, predictor).next_item("again").photo.name == "00155.jpg"


def test_finetune_config_trains_on_the_saved_folder(photos: Path, tmp_path: Path,
                                                    predictor: Any) -> None:
    """configs/finetune_small.yaml from the bundled model on annotate.py's folder as it is
    (1024 px faces and masks, l-ids): one epoch runs and moves the weights."""
    import subprocess
    import sys

    import torch

    from tests.conftest import REPO
    from utils.checkpoints import load_checkpoint

    out = tmp_path / "labels"
    s = _session(photos, out, predictor)
    for _ in range(2):
        item = s.open(s.next_item("p"))
        s.save(item, s.proposal(item), s.proposal(item), 1.0)
    r = subprocess.run([sys.executable, "train.py", "--config", "configs/finetune_small.yaml",
                        "--init", "res/cp/default_ffhq256.pth", "--image-dir",
                        str(out / "face_images"), "--mask-dir", str(out / "manual_wrinkle_masks"),
                        "--out-dir", str(tmp_path / "runs"), "--epochs", "1", "--no-progress"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "initialised 110/110 tensors" in r.stdout + r.stderr
    assert "train 2, val 0" in r.stdout + r.stderr
    base = load_checkpoint(REPO / "res/cp/default_ffhq256.pth")["state_dict"]
    tuned = load_checkpoint(tmp_path / "runs/finetune_small/last.pth")["state_dict"]
    moved = [k for k in base if not torch.equal(base[k].float(), tuned[k].float())]
    assert moved  # it learned from the two faces
