"""Wrinkles as lines: thinning, tracing and pruning on drawn shapes of known length, and the
line lengths of the annotator's real masks at 1024 px against the same masks max-pooled to 256."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import MASKS, REPO, labelled_ids, needs_data
from utils.faces.lines import (
    IPD_MM,
    frame_scale,
    measure_lines,
    polyline_length,
    prune,
    simplify,
    thin,
)


def _length(mask: np.ndarray, spur_px: float = 1.0) -> float:
    return sum(polyline_length(simplify(p)) for p, _, _ in prune(thin(mask), spur_px))


def test_a_drawn_line_of_known_length_measures_within_3_percent() -> None:
    """Lines 60-220 px long, 1-3 px wide, at any angle (a 256 px face's wrinkles; a shorter
    thick line loses about a pixel at its ends to thinning, so its error is about 1-2 px)."""
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(40):
        img = np.zeros((300, 300), np.uint8)
        angle, length = rng.uniform(0, np.pi), rng.uniform(60, 220)
        width = int(rng.integers(1, 4))
        d = np.array([np.cos(angle), np.sin(angle)]) * length / 2
        a, b = np.round(150 - d).astype(int), np.round(150 + d).astype(int)
        cv2.line(img, tuple(int(v) for v in a), tuple(int(v) for v in b), 1, width)
        errors.append(_length(img.astype(bool)) / np.hypot(*(b - a)) - 1)
    assert np.median(np.abs(errors)) < 0.01 and np.max(np.abs(errors)) < 0.035, errors
    # a curve: half an ellipse (Ramanujan's perimeter)
    img = np.zeros((300, 300), np.uint8)
    cv2.ellipse(img, (150, 150), (80, 40), 0, 0, 180, 1, 2)
    h = (40 / 120) ** 2
    half = np.pi * 120 * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h))) / 2
    assert _length(img.astype(bool)) == pytest.approx(half, rel=0.03)


def test_lines_split_at_junctions_lose_their_whiskers_and_keep_short_strokes() -> None:
    t = np.zeros((100, 100), bool)
    t[50, 10:90] = True  # a bar
    t[10:50, 50] = True  # and a stem meeting it: three lines from one junction
    lines = prune(thin(t), 3)
    assert len(lines) == 3
    assert sorted(round(polyline_length(simplify(p))) for p, _, _ in lines) == [39, 40, 40]
    whisker = np.zeros((100, 100), bool)
    whisker[50, 10:90] = True
    whisker[48:50, 40] = True  # a 2 px whisker: pruned, and the bar is one line again
    (line, at_a, at_b), = prune(thin(whisker), 3)
    assert not at_a and not at_b and polyline_length(simplify(line)) == pytest.approx(79, abs=1)
    dot = np.zeros((20, 20), bool)
    dot[5, 5:8] = True  # a stroke free at both ends stays, however short
    assert len(prune(thin(dot), 10)) == 1
    ring = np.zeros((100, 100), np.uint8)
    cv2.circle(ring, (50, 50), 30, 1, 1)
    (loop, _, _), = prune(thin(ring.astype(bool)), 3)
    assert polyline_length(loop) == pytest.approx(2 * np.pi * 30, rel=0.1)


@needs_data
def test_the_annotators_lines_measure_alike_at_1024_and_max_pooled_to_256() -> None:
    """The same hand-drawn lines, measured at 1024 and in the mask max-pooled to 256 (in mm by
    the same face's scale, the ratio of the two lengths): within 10 % per face (median) on a
    eighth of the 165 faces (all 165: 2.3 %, bench/bench_lines.py, docs/explanation/lines.md)."""
    from utils.data.masks import read_mask, resize_mask

    ratios = []
    for i in labelled_ids()[::8]:
        full = read_mask(MASKS / f"{i}.png")
        long = _length(full, 4) / 4
        if long > 0:
            ratios.append(_length(resize_mask(full, (256, 256)), 1) / long)
    assert len(ratios) >= 18
    assert np.median(np.abs(np.array(ratios) - 1)) < 0.10


def test_the_scale_comes_from_the_pupils_and_a_measured_ipd_replaces_the_mean() -> None:
    lm = np.zeros((68, 2))
    lm[36:42] = (100, 120)
    lm[42:48] = (164, 120)
    s = frame_scale(lm)
    assert s.ipd_px == pytest.approx(64) and s.mm_per_px == pytest.approx(IPD_MM / 64)
    assert s.source == "default" and 0.04 < s.uncertainty < 0.08 and "63" in s.describe()
    own = frame_scale(lm, ipd_mm=58.0)
    assert own.mm_per_px == pytest.approx(58 / 64) and own.uncertainty == 0
    assert own.source == "measured"


def test_measured_lines_carry_region_width_angle_and_probability() -> None:
    mask = np.zeros((120, 120), bool)
    mask[30:33, 20:100] = True  # a horizontal line, 3 px wide
    probs = np.where(mask, 0.9, 0.1)
    regions = {"forehead": np.zeros_like(mask), "cheeks": np.zeros_like(mask)}
    regions["forehead"][:60] = True
    regions["cheeks"][60:] = True
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48] = (40, 80), (80, 80)  # 40 px between the pupils
    (line,) = measure_lines(mask, frame_scale(lm), probs, regions)
    assert line.region == "forehead" and line.mean_prob == pytest.approx(0.9)
    assert abs(line.angle_deg) < 1
    assert line.length_px == pytest.approx(78, abs=2)
    assert line.width_px == pytest.approx(3, rel=0.1)


@needs_data
def test_predict_py_writes_each_faces_lines_in_mm_and_their_points_on_the_photo(
        tmp_path: Path) -> None:
    """A rotated photo of a real face: <name>_lines.csv has a row per line whose lengths add up
    to wrinkles.csv's length_mm (and per region likewise); <name>_lines.json puts every line on
    the mask pasted into the photo; every row says the scale came from the --ipd-mm given, and a
    distance no adult has is refused."""
    from tests.conftest import IMAGES
    from utils.data.images import load_image
    from utils.faces.photos import make_photo
    from utils.visualize import write_png

    photo = make_photo(load_image(IMAGES / f"{labelled_ids()[3]}.jpg"), seed=5,
                       face_px=(420, 440))
    src = tmp_path / "rotated.png"
    write_png(src, photo.rgb)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "predict.py", str(src), "--out", str(out),
                        "--no-progress", "--ipd-mm", "58"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    with (out / "wrinkles.csv").open() as fh:
        (face,) = list(csv.DictReader(fh))
    with (out / "rotated_lines.csv").open() as fh:
        lines = list(csv.DictReader(fh))
    assert face["scale_source"] == "measured" and face["ipd_mm"] == "58"
    assert {x["scale_source"] for x in lines} == {"measured"}
    assert len(lines) == int(face["line_count"]) > 5
    assert sum(float(x["length_mm"]) for x in lines) == pytest.approx(
        float(face["length_mm"]), abs=0.01 * len(lines))
    fore = [x for x in lines if x["region"] == "forehead"]
    assert len(fore) == int(face["forehead_line_count"])
    assert all(-90 <= float(x["angle_deg"]) <= 90 and 0 < float(x["mean_prob"]) <= 1
               for x in lines)
    points = json.loads((out / "rotated_lines.json").read_text())
    mask = cv2.imread(str(out / "rotated_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    pts = np.array([p for f in points["faces"] for ln in f["lines"] for p in ln["points"]])
    assert (points["width"], points["height"]) == (mask.shape[1], mask.shape[0])
    on = near[np.clip(pts[:, 1].round().astype(int), 0, mask.shape[0] - 1),
              np.clip(pts[:, 0].round().astype(int), 0, mask.shape[1] - 1)]
    assert on.mean() > 0.95  # the lines lie on the mask pasted back into the photo
    bad = subprocess.run([sys.executable, "predict.py", str(src), "--ipd-mm", "6.3"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "interpupillary" in bad.stderr


@needs_data
def test_a_large_face_shows_thin_lines_where_a_small_one_shows_its_mask() -> None:
    """On a face three times the model's frame the overlay draws the traced lines, thin and on
    the mask; on a face near the model's size it is the pasted mask as before."""
    from tests.conftest import IMAGES
    from utils.data.images import load_image
    from utils.faces.photos import make_photo
    from utils.inference.predictor import WrinklePredictor
    from utils.report import visit_report
    from utils.visualize import overlay, wrinkle_view

    predictor = WrinklePredictor(faces="largest")
    face = load_image(IMAGES / f"{labelled_ids()[3]}.jpg")
    for side, lines_view in (((760, 780), True), ((300, 320), False)):
        photo = make_photo(face, seed=3, face_px=side, angle_max=10).rgb
        res = predictor.predict(photo)
        masked, view = overlay(photo, res.mask), wrinkle_view(photo, res.mask, res.faces)
        # the visit report says which of the two its photo panel shows
        page = visit_report("photo.jpg", photo, res, predictor.description, "")
        assert ("The photo, wrinkle lines in red" in page) is lines_view
        assert ("The photo, wrinkle pixels" in page) is not lines_view
        if not lines_view:
            assert np.array_equal(view, masked)
            continue
        drawn = np.abs(view.astype(int) - photo).sum(axis=2) > 30
        pasted = np.abs(masked.astype(int) - photo).sum(axis=2) > 30
        assert drawn.sum() < 0.6 * pasted.sum()  # thin lines, not blobs
        near = cv2.dilate(res.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert (drawn & near).sum() > 0.9 * drawn.sum()  # and where the wrinkles are


@needs_data
def test_a_line_of_known_length_on_a_real_face_measures_within_3_percent_in_mm() -> None:
    """A 40 mm line drawn across the forehead of a real face (the scale from its own pupils,
    with the person's IPD given as 60 mm) measures 40 mm within 3 %."""
    from tests.conftest import IMAGES
    from utils.data.images import load_image
    from utils.faces.detection import detect_faces

    rgb = load_image(IMAGES / f"{labelled_ids()[3]}.jpg")
    (face,) = detect_faces(rgb)[:1]
    scale = frame_scale(face.landmarks, ipd_mm=60.0)
    px = 40.0 / scale.mm_per_px
    mask = np.zeros(rgb.shape[:2], np.uint8)
    y = int(face.landmarks[19, 1] - 0.25 * scale.ipd_px)  # above the brows
    x0 = int(face.landmarks[27, 0] - px / 2)
    cv2.line(mask, (x0, y), (round(x0 + px), y + 3), 1, 2)
    (line,) = measure_lines(mask.astype(bool), scale)
    true_mm = np.hypot(round(x0 + px) - x0, 3) * scale.mm_per_px
    assert line.length_px * scale.mm_per_px == pytest.approx(true_mm, rel=0.03)
