"""Folder runs of predict.py that survive Ctrl-C and kill -9: every finished photo keeps its rows,
a rerun goes on without duplicates, and the output folder is never read as input."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from tests.conftest import IMAGES, REPO, labelled_ids, needs_data

pytestmark = needs_data
PHOTOS = 10


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of photos as people take them (faces of ../shared, rotated, on a backdrop), and
    one photo without a face."""
    from utils.data.images import load_image
    from utils.faces.photos import make_photo

    folder = tmp_path / "photos"
    folder.mkdir()
    for k, i in enumerate(labelled_ids(PHOTOS - 1)):
        rgb = make_photo(load_image(IMAGES / f"{i}.jpg"), k, "4:3").rgb
        cv2.imwrite(str(folder / f"p{k:02d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "wall.jpg"), cv2.GaussianBlur(
        cv2.imread(str(folder / "p00.jpg")), (0, 0), 40))
    return folder


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start(photos: Path, out: Path, *extra: str) -> subprocess.Popen:
    """predict.py on a folder, started with SIGINT ignored, as a non-interactive shell starts a
    background job (where Python leaves SIGINT ignored unless the script says otherwise)."""
    return subprocess.Popen([sys.executable, str(REPO / "predict.py"), str(photos), "-o",
                             str(out), "-b", "1", "--no-progress", *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ignore_sigint)


def _committed(out: Path) -> list[dict[str, str]]:
    log = out / "predict_log.csv"
    if not log.is_file():
        return []
    with log.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "wrinkles.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _stop_after(proc: subprocess.Popen, out: Path, commits: int, sig: int
                ) -> tuple[int, str, int]:
    """Once `commits` photos are committed, hold the run (SIGSTOP: nothing in it moves), send
    `sig` while it certainly has work left, and let it go on (SIGCONT) to handle the signal.
    Returns its exit code, what it said, and the photos committed when it was held."""
    deadline = time.monotonic() + 240
    while len(_committed(out)) < commits and proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run made no progress")
        time.sleep(0.02)
    proc.send_signal(signal.SIGSTOP)
    held = len(_committed(out))
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    said, err = proc.communicate(timeout=120)
    return proc.returncode, said + err, held


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_folder_run_keeps_its_rows_and_resumes(photos: Path, sig: int) -> None:
    from utils.inference.batch import PENDING_WRITES

    out = photos / "out"  # inside the input folder: never read as input
    code, said, held = _stop_after(_start(photos, out), out, 2, sig)
    if sig == signal.SIGINT:
        assert code == 130 and "interrupted:" in said and "Traceback" not in said, said
    else:
        assert code == -signal.SIGKILL
    done = {r["file"] for r in _committed(out) if r["status"] == "done"}
    # what was committed stays; at most the photos the model had run ahead are added
    assert held - 1 <= len(done) <= held + PENDING_WRITES + 2 and len(done) < PHOTOS - 1
    # every finished photo's rows are in wrinkles.csv (a half-written line may follow them)
    with (out / "wrinkles.csv").open(newline="") as fh:
        kept = {r["file"] for r in csv.DictReader(fh) if r.get("notes") is not None}
    assert done <= kept
    again = subprocess.run([sys.executable, str(REPO / "predict.py"), str(photos), "-o", str(out),
                            "--no-progress"], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 1  # the photo without a face
    assert f"already done in {out}" in again.stdout
    rows = _rows(out)
    keys = [(r["file"], r["face"]) for r in rows]
    assert len(keys) == len(set(keys))  # no duplicate
    files = {r["file"] for r in rows}
    assert files == {str(p) for p in photos.glob("p*.jpg")}  # every photo, nothing of out/
    log = _committed(out)
    assert len(log) == PHOTOS and {r["status"] for r in log} == {"done", "failed"}
    assert all((out / f"{Path(f).stem}_overlay.png").is_file() for f in files)
    # a third run has nothing left to do; --overwrite redoes everything
    third = subprocess.run([sys.executable, str(REPO / "predict.py"), str(photos), "-o",
                            str(out), "--no-progress"], cwd=REPO, capture_output=True,
                           text=True, timeout=600)
    assert f"{PHOTOS} of {PHOTOS} photos already done" in third.stdout
    assert "0 photos (0 faces) predicted" in third.stdout
    assert _rows(out) == rows


def test_overwrite_redoes_and_other_settings_are_not_mixed(photos: Path, tmp_path: Path) -> None:
    from utils.inference.batch import predict_files
    from utils.inference.predictor import WrinklePredictor

    predictor = WrinklePredictor(faces="largest")
    out = tmp_path / "out"
    pick = [str(photos / "p00.jpg"), str(photos / "p01.jpg")]
    first = predict_files(predictor, pick, out, progress=False, log=lambda s: None)
    assert first["predicted"] == 2 and first["skipped"] == 0
    again = predict_files(predictor, pick, out, progress=False, log=lambda s: None)
    assert again["predicted"] == 0 and again["skipped"] == 2
    other = predict_files(predictor, pick, out, threshold=0.3, progress=False,
                          log=lambda s: None)  # another threshold: not the same outputs
    assert other["predicted"] == 2
    redo = predict_files(predictor, pick, out, threshold=0.3, progress=False,
                         log=lambda s: None, overwrite=True)
    assert redo["predicted"] == 2 and len(_rows(out)) == 2
    (out / "p00_overlay.png").unlink()  # a half-done photo is done again
    fix = predict_files(predictor, pick, out, threshold=0.3, progress=False, log=lambda s: None)
    assert fix["predicted"] == 1 and (out / "p00_overlay.png").is_file()
    assert sorted(r["file"] for r in _rows(out)) == sorted(pick)
    for r in _rows(out):  # side against side, upper against lower: in -1..1 or empty
        for k in ("crows_feet", "under_eye", "nasolabial", "upper_vs_lower"):
            assert r[f"{k}_asymmetry"] == "" or -1 <= float(r[f"{k}_asymmetry"]) <= 1
