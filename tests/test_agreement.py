"""evaluate.py --agreement: two folders of real masks scored against each other equal the
project's metrics computed independently, per image and per face region."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import IMAGES, MASKS, REPO, labelled_ids, needs_data
from utils.data.masks import read_mask, resize_mask

pytestmark = needs_data


def _no_forehead(ids: list[str], folder: Path) -> Path:
    """The manual masks with every forehead line removed (an annotator who never marks the
    forehead), at 1024 px like the originals; the forehead placed by the face's landmarks."""
    from utils.data.images import load_image
    from utils.faces.detection import detect_faces
    from utils.faces.regions import region_masks

    folder.mkdir()
    for i in ids:
        mask = read_mask(MASKS / f"{i}.png")
        face = detect_faces(load_image(IMAGES / f"{i}.jpg"))[0]
        lm = (face.landmarks + 0.5) * (mask.shape[1] / 256) - 0.5
        mask &= ~region_masks(lm, mask.shape)["forehead"]
        cv2.imwrite(str(folder / f"{i}.png"), mask.astype(np.uint8) * 255)
    return folder


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn)


def test_agreement_equals_independent_counts(tmp_path: Path) -> None:
    ids = labelled_ids(6)
    a = tmp_path / "ana"
    a.mkdir()
    for i in ids:  # annotator A: the manual masks, shrunk to 256 as the model's outputs are
        m = resize_mask(read_mask(MASKS / f"{i}.png"), (256, 256))
        cv2.imwrite(str(a / f"{i}_mask.png"), m.astype(np.uint8) * 255)  # predict.py's names
        cv2.imwrite(str(a / f"{i}_overlay.png"), np.zeros((256, 256, 3), np.uint8))  # ignored
    b = _no_forehead(ids, tmp_path / "bo")
    out = tmp_path / "agree"
    r = subprocess.run([sys.executable, "evaluate.py", "--agreement", str(a), str(b), "-o",
                        str(out), "--image-dir", str(IMAGES), "--no-progress"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "agreement.json").read_text())
    tp = fp = fn = 0
    near_a = near_b = 0
    kernel = np.ones((3, 3), np.uint8)
    per_image = {}
    for i in ids:
        x = read_mask(a / f"{i}_mask.png")
        y = resize_mask(read_mask(b / f"{i}.png"), (256, 256))  # compared at the smaller size
        t, p, n = int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum())
        tp, fp, fn = tp + t, fp + p, fn + n
        per_image[i] = _f1(t, p, n)
        near_a += int((x & (cv2.dilate(y.astype(np.uint8), kernel) > 0)).sum())
        near_b += int((y & (cv2.dilate(x.astype(np.uint8), kernel) > 0)).sum())
    assert report["images"] == len(ids) and not report["notes"]
    assert report["f1"] == pytest.approx(_f1(tp, fp, fn), abs=1e-6)
    assert report["precision"] == pytest.approx(tp / (tp + fp), abs=1e-6)
    assert report["recall"] == pytest.approx(tp / (tp + fn), abs=1e-6)
    p_tol, r_tol = near_a / (tp + fp), near_b / (tp + fn)
    assert report["f1_tol1"] == pytest.approx(2 * p_tol * r_tol / (p_tol + r_tol), abs=1e-6)
    assert report["f1"] < 1 < 1 + report["f1_tol1"]
    with (out / "per_image.csv").open(newline="") as fh:
        rows = {row["id"]: row for row in csv.DictReader(fh)}
    assert set(rows) == set(ids)
    for i in ids:
        assert float(rows[i]["f1"]) == pytest.approx(per_image[i], abs=1e-6)
    with (out / "per_region.csv").open(newline="") as fh:
        regions = {row["region"]: row for row in csv.DictReader(fh)}
    # B never marks the forehead (a few pixels of its edge survive the shrinking to 256):
    # there they hardly share a pixel; elsewhere they agree
    fore = regions["forehead"]
    assert int(fore["b_px"]) < 0.02 * int(fore["a_px"]) and float(fore["f1"]) < 0.05
    assert float(regions["cheeks"]["f1"]) > 0.99
    assert float(regions["crows_feet_left"]["f1"]) > 0.99


def test_agreement_errors_name_the_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, said in ((["--agreement", str(tmp_path / "none"), str(MASKS)], "not a folder"),
                       (["--agreement", str(empty), str(MASKS)], "holds no mask")):
        r = subprocess.run([sys.executable, "evaluate.py", *args, "-o", str(tmp_path / "o")],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and said in r.stderr and "Traceback" not in r.stderr
