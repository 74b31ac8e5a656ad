"""Faces in photos: FFHQ alignment from 68 landmarks on real faces, its inverse, the landmark
face region and regions, and the photo maker the wild benchmark uses."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.conftest import IMAGES, MASKS, labelled_ids, needs_data
from utils.data.images import load_image
from utils.data.masks import read_mask, resize_mask
from utils.errors import UserError
from utils.faces.alignment import Alignment, ffhq_quad
from utils.faces.detection import detect_faces, faces_available, landmark_model_path
from utils.faces.photos import make_photo
from utils.faces.regions import REGION_NAMES, landmark_face_region, region_masks, wrinkle_stats

pytestmark = [needs_data, pytest.mark.skipif(not faces_available(),
                                             reason="dlib or face_recognition_models missing")]
FRAME = np.array([[0, 0], [0, 256], [256, 256], [256, 0]], dtype=np.float64)


def faces(n: int) -> list[np.ndarray]:
    return [load_image(IMAGES / f"{i}.jpg") for i in labelled_ids(n)]


def frame_errors(quads: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Centre offset (px), mean corner distance (px), side ratio and roll (degrees)."""
    out: dict[str, list[float]] = {"centre": [], "corners": [], "side": [], "roll": []}
    for q, t in zip(quads, truths, strict=True):
        a, b = Alignment(q), Alignment(t)
        out["centre"].append(float(np.hypot(*(q.mean(axis=0) - t.mean(axis=0)))))
        out["corners"].append(float(np.linalg.norm(q - t, axis=1).mean()))
        out["side"].append(a.side / b.side)
        out["roll"].append(abs(a.angle - b.angle))
    return {k: np.array(v) for k, v in out.items()}


def test_landmark_model_is_found_without_importing_its_package() -> None:
    import sys

    path = landmark_model_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.stat().st_size > 1e7
    assert "face_recognition_models" not in sys.modules  # it needs pkg_resources to import


def test_an_ffhq_face_aligns_to_itself() -> None:
    """Alignment is decided by the landmarks: an FFHQ image's own square is the image."""
    found = [detect_faces(rgb) for rgb in faces(40)]
    assert all(len(f) >= 1 for f in found)
    err = frame_errors([f[0].alignment.quad for f in found], [FRAME] * len(found))
    assert np.median(err["centre"]) < 1.0 and np.mean(err["centre"] < 2.0) >= 0.85
    assert np.median(err["corners"]) < 3.0
    assert np.percentile(np.abs(err["side"] - 1), 90) < 0.04 and np.median(err["roll"]) < 1.0


def test_a_rotated_scaled_shifted_face_aligns_back_to_its_frame() -> None:
    quads, truths = [], []
    for i, rgb in enumerate(faces(16)):
        photo = make_photo(rgb, seed=i, canvas="4:3" if i % 2 else "square")
        found = detect_faces(photo.rgb)
        assert found, f"no face in photo {i} (roll {photo.angle:.0f} degrees)"
        inv = cv2.invertAffineTransform(photo.matrix)  # photo pixels -> the face's own frame
        quads.append((found[0].alignment.quad - 0.5) @ inv[:, :2].T + inv[:, 2] + 0.5)
        truths.append(FRAME)
        assert abs(found[0].alignment.angle - photo.angle) < 3
    err = frame_errors(quads, truths)
    assert np.median(err["corners"]) < 2.5 and np.median(err["centre"]) < 1.5
    assert np.percentile(np.abs(err["side"] - 1), 90) < 0.04


def test_paste_back_is_the_inverse_of_alignment() -> None:
    rgb = faces(1)[0]
    photo = make_photo(rgb, seed=3, canvas="4:3")
    al = detect_faces(photo.rgb)[0].alignment
    size = 256
    # A map whose value is the aligned x coordinate, pasted back, tells each photo pixel where
    # it sits in the aligned frame: it must agree with the alignment transform.
    xs = np.tile(np.arange(size, dtype=np.float32), (size, 1))
    (x0, y0, x1, y1), values, inside = al.paste_back(xs, photo.rgb.shape, "map")
    yy, xx = np.mgrid[y0:y1, x0:x1]
    pts = np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float64)
    where = al.to_aligned(pts, size)
    expect = where[:, 0].reshape(xx.shape)
    ay = where[:, 1].reshape(xx.shape)
    core = inside & (expect > 2) & (expect < size - 3) & (ay > 2) & (ay < size - 3)
    assert core.sum() > 0.5 * al.side ** 2
    assert np.abs(values[core] - expect[core]).max() < 0.05
    # The aligned face pasted back is the photo again (up to two resamplings).
    aligned = al.align(photo.rgb, size).astype(np.float32)
    back = np.dstack([al.paste_back(aligned[:, :, c], photo.rgb.shape, "map")[1]
                      for c in range(3)])
    diff = np.abs(back[core] - photo.rgb[y0:y1, x0:x1][core].astype(np.float32))
    assert diff.mean() < 4.0
    # Points go there and back exactly; a 1-px line survives the round trip.
    p = np.array([[10.5, 20.0], [200.0, 130.25]])
    np.testing.assert_allclose(al.to_aligned(al.to_photo(p, size), size), p, atol=1e-9)
    line = np.zeros((size, size), bool)
    line[120, 40:200] = True
    (bx0, by0, bx1, by1), pasted, _ = al.paste_back(line, photo.rgb.shape, "mask")
    full = np.zeros(photo.rgb.shape[:2], bool)
    full[by0:by1, bx0:bx1] = pasted
    assert full.sum() >= 0.9 * 160 * al.side / size


def test_ffhq_quad_follows_the_landmarks() -> None:
    lm = detect_faces(faces(1)[0])[0].landmarks
    t = np.radians(30)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    turned = lm @ rot.T * 2 + [100, 50]
    np.testing.assert_allclose(ffhq_quad(turned), ffhq_quad(lm) @ rot.T * 2 + [100, 50],
                               atol=1e-9)
    assert Alignment(ffhq_quad(turned)).angle == pytest.approx(
        Alignment(ffhq_quad(lm)).angle + 30, abs=1e-6)
    with pytest.raises(ValueError, match="68"):
        ffhq_quad(lm[:60])


def test_no_face_and_bad_input() -> None:
    assert detect_faces(np.full((300, 400, 3), 127, np.uint8)) == []
    with pytest.raises(UserError, match="RGB uint8"):
        detect_faces(np.zeros((64, 64), np.uint8))


def test_several_faces_are_found_largest_first() -> None:
    a, b = faces(2)
    big = cv2.resize(a, (400, 400), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((420, 720, 3), 90, np.uint8)
    canvas[10:410, 10:410] = big
    canvas[100:356, 440:696] = b
    found = detect_faces(canvas)
    assert len(found) == 2
    assert found[0].side > found[1].side
    assert found[0].box[0] < 410 <= found[1].box[0]


def test_landmark_face_region_keeps_the_annotated_wrinkles() -> None:
    """The figure bench/bench_face_region.py reports (98.2 % kept, 36.5 % covered), on every
    labelled face: the region is drawn in the aligned frame and mapped back onto the image."""
    kept = total = covered = pixels = 0
    for i in labelled_ids():
        rgb = load_image(IMAGES / f"{i}.jpg")
        truth = resize_mask(read_mask(MASKS / f"{i}.png"), (256, 256))
        face = detect_faces(rgb)[0]
        region = landmark_face_region(face.alignment.to_aligned(face.landmarks, 256), (256, 256))
        (x0, y0, x1, y1), values, square = face.alignment.paste_back(region, rgb.shape, "mask")
        mask = np.zeros((256, 256), bool)
        mask[y0:y1, x0:x1] = values & square
        kept, total = kept + int((mask & truth).sum()), total + int(truth.sum())
        covered, pixels = covered + int(mask.sum()), pixels + mask.size
    assert kept / total >= 0.98
    assert covered / pixels < 0.371  # smaller than the Haar ellipse it replaces


def test_regions_are_disjoint_inside_the_face_and_on_the_right_side() -> None:
    face = detect_faces(faces(1)[0])[0]
    lm = face.alignment.to_aligned(face.landmarks, 256)
    region = landmark_face_region(lm, (256, 256))
    masks = region_masks(lm, (256, 256), region)
    assert list(masks) == list(REGION_NAMES)
    total = np.zeros((256, 256), np.int32)
    for name, m in masks.items():
        assert m.sum() > 100, name
        assert not (m & ~region).any(), name
        total += m
    assert total.max() == 1
    centre_x = lm[27:31, 0].mean()
    x = {name: np.nonzero(m)[1].mean() for name, m in masks.items()}
    # "right" is the person's own right: the image's left
    for part in ("crows_feet", "under_eye", "nasolabial"):
        assert x[f"{part}_right"] < centre_x < x[f"{part}_left"], part
    ys = {name: np.nonzero(m)[0].mean() for name, m in masks.items()}
    assert ys["forehead"] < ys["between_brows"] < ys["under_eye_right"] < ys["around_mouth"]
    # statistics: the shares are wrinkle pixels over region pixels, in the aligned frame
    wr = np.zeros((256, 256), bool)
    fy, fx = (round(v) for v in np.argwhere(masks["forehead"]).mean(axis=0))
    wr[fy, fx - 30:fx - 10] = True
    assert masks["forehead"][wr].all()
    st = wrinkle_stats(wr, region, masks)
    fh = next(r for r in st["regions"] if r["region"] == "forehead")
    assert fh["lines"] == 1 and fh["wrinkle_px"] == int((wr & masks["forehead"]).sum())
    assert fh["share"] == pytest.approx(fh["wrinkle_px"] / masks["forehead"].sum())
    assert st["frame_px"] == 256 and st["face_px"] == int(region.sum())


def test_photo_maker_round_trips_maps() -> None:
    rgb = faces(1)[0]
    truth = resize_mask(read_mask(MASKS / f"{labelled_ids(1)[0]}.png"), (256, 256))
    photo = make_photo(rgb, seed=5, canvas="square")
    assert photo.rgb.shape[0] == photo.rgb.shape[1] and 320 <= photo.face_px <= 520
    back = photo.to_aligned(photo.from_aligned(truth), 256)
    # thin lines survive two warps (the mask rule keeps every line, at the cost of some width)
    assert (back & truth).sum() >= 0.95 * truth.sum() and back.sum() < 2.5 * truth.sum()
    again = make_photo(rgb, seed=5, canvas="square")
    assert np.array_equal(again.rgb, photo.rgb)  # reproducible by seed


def _bench_faces():
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("bench_faces", REPO / "bench" / "bench_faces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_second_detector_finds_a_dark_face_hog_misses_and_waits_otherwise() -> None:
    from utils.faces import detection

    bench = _bench_faces()
    missed = None
    for k, face in enumerate(faces(12)):
        lm = detect_faces(face, second=False)[0].landmarks
        rgb, where, side = bench.make_variant(face, lm, "dark", 1000 * k)
        calls = detection.detector_calls["cnn"]
        if not detect_faces(rgb, second=False):
            missed = (rgb, where, side)
            break
        assert detection.detector_calls["cnn"] == calls  # HOG alone never calls it
    assert missed is not None, "HOG found every dark face: the test needs a harder variant"
    rgb, where, side = missed
    calls = detection.detector_calls["cnn"]
    found = detect_faces(rgb)
    assert detection.detector_calls["cnn"] == calls + 1
    assert found and found[0].detector == "cnn"
    assert np.hypot(*(found[0].alignment.quad.mean(axis=0) - where)) < 0.1 * side
    assert abs(found[0].side / side - 1) < 0.15
    # a plain photo: HOG finds the face, the CNN is never called
    photo = make_photo(faces(1)[0], 3, "4:3").rgb
    calls = detection.detector_calls["cnn"]
    assert detect_faces(photo)[0].detector == "hog"
    assert detection.detector_calls["cnn"] == calls


def test_asymmetry_indices_on_real_regions() -> None:
    """Wrinkles only in the right crow's feet read +1 right against left and +1 upper against
    lower; a mirrored mask (left only) reads -1; nothing anywhere reads None."""
    from utils.faces.regions import PAIRED, asymmetry_text

    face = faces(1)[0]
    lm = detect_faces(face, second=False)[0].landmarks
    region = landmark_face_region(lm, face.shape[:2])
    regs = region_masks(lm, face.shape[:2], region)
    right = wrinkle_stats(regs["crows_feet_right"], region, regs)["asymmetry"]
    assert right["crows_feet"] == 1.0 and right["upper_vs_lower"] == 1.0
    assert right["under_eye"] is None and right["nasolabial"] is None
    left = wrinkle_stats(regs["crows_feet_left"] | regs["nasolabial_left"], region,
                         regs)["asymmetry"]
    assert left["crows_feet"] == -1.0 and left["nasolabial"] == -1.0
    both = regs["under_eye_right"] | regs["under_eye_left"]
    even = wrinkle_stats(both, region, regs)["asymmetry"]
    shares = {r["region"]: r["share"] for r in wrinkle_stats(both, region, regs)["regions"]}
    assert shares["under_eye_right"] == shares["under_eye_left"] == 1.0
    assert even["under_eye"] == 0.0
    none = wrinkle_stats(np.zeros_like(region), region, regs)["asymmetry"]
    assert set(none) == {*PAIRED, "upper_vs_lower"} and all(v is None for v in none.values())
    assert "crow's feet +1.00" in asymmetry_text(right) and "nasolabial folds -" in \
        asymmetry_text(right)
