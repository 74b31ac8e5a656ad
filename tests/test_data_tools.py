"""The data tools on real pairs: dataset_metrics (wrinkle share) and sanity_check_dimensions."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared/data/ffhq-wrinkle-256"
IMAGES = DATA / "images256x256"
MASKS = DATA / "manual_wrinkle_masks"
N_PAIRS = 10

if not MASKS.is_dir() or not IMAGES.is_dir():
    pytest.skip(f"real data not found at {DATA} (the shared/ folder beside the repo)",
                allow_module_level=True)

from utils.data.dataset_metrics import (  # noqa: E402
    CSV_NAME,
    HIST_NAME,
    SUMMARY_NAME,
    dataset_metrics,
)
from utils.data.sanity_check_dimensions import sanity_check  # noqa: E402

IDS = sorted(p.stem for p in MASKS.glob("*.png"))[:N_PAIRS]
UNLABELLED = next(p.stem for p in sorted(IMAGES.glob("*.jpg"))
                  if not (MASKS / f"{p.stem}.png").exists())


def _link_set(root: Path, ids: list[str]) -> tuple[Path, Path]:
    """A data folder of symlinks to real pairs, in the data set's own layout."""
    img_dir, mask_dir = root / "images256x256", root / "manual_wrinkle_masks"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for i in ids:
        os.symlink(IMAGES / f"{i}.jpg", img_dir / f"{i}.jpg")
        os.symlink(MASKS / f"{i}.png", mask_dir / f"{i}.png")
    return img_dir, mask_dir


def _run(script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def clean_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _link_set(tmp_path_factory.mktemp("clean"), IDS)


@pytest.fixture(scope="module")
def broken_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """The clean pairs with five kinds of damage, each on its own id; returns what broke where."""
    img_dir, mask_dir = _link_set(tmp_path_factory.mktemp("broken"), IDS)
    truncated, wrong_aspect, grey, not_image = IDS[:4]

    def replace(path: Path, data: bytes) -> None:
        path.unlink()
        path.write_bytes(data)

    half = (IMAGES / f"{truncated}.jpg").stat().st_size // 2
    replace(img_dir / f"{truncated}.jpg", (IMAGES / f"{truncated}.jpg").read_bytes()[:half])
    (mask_dir / f"{wrong_aspect}.png").unlink()
    Image.new("L", (1000, 700), 0).save(mask_dir / f"{wrong_aspect}.png")
    real = np.asarray(Image.open(MASKS / f"{grey}.png"))
    blurred = cv2.GaussianBlur(real, (0, 0), 1.5)
    (mask_dir / f"{grey}.png").unlink()
    Image.fromarray(blurred).save(mask_dir / f"{grey}.png")
    replace(mask_dir / f"{not_image}.png", b"id,share\n00000,0.01\n" * 50)
    os.symlink(IMAGES / f"{UNLABELLED}.jpg", img_dir / f"{UNLABELLED}.jpg")
    broken = {truncated: f"{truncated}.jpg", wrong_aspect: f"{wrong_aspect}.png",
              grey: f"{grey}.png", not_image: f"{not_image}.png",
              UNLABELLED: f"{UNLABELLED}.jpg"}
    return img_dir, mask_dir, broken


# ---------------------------------------------------------------- dataset_metrics


def test_dataset_metrics_matches_numpy_and_writes_its_files(clean_set, tmp_path):
    img_dir, mask_dir = clean_set
    out = tmp_path / "dm"
    summary = dataset_metrics(img_dir, mask_dir, out, size=256, progress=False)

    with (out / CSV_NAME).open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == IDS
    total_pos = total_px = 0
    for r in rows:
        truth = np.asarray(Image.open(MASKS / f"{r['id']}.png")) > 127  # independent reading
        assert float(r["share_native"]) == pytest.approx(truth.mean(), abs=1e-7)
        assert int(r["positives_native"]) == truth.sum()
        assert r["mask_size"] == "1024x1024" and r["eval_size"] == "256x256"
        total_pos, total_px = total_pos + truth.sum(), total_px + truth.size
    assert summary["pooled_share_native"] == pytest.approx(total_pos / total_px)
    # Max-pooling to 256 thickens 1-3 px lines: the share grows, and stays plausible.
    assert summary["pooled_share_at_size"] > summary["pooled_share_native"]
    assert 0.001 < summary["pooled_share_at_size"] < 0.05
    assert summary["images"] == N_PAIRS

    saved = json.loads((out / SUMMARY_NAME).read_text())
    for key in ("images", "pooled_share_native", "pooled_share_at_size", "per_image_share_native",
                "per_image_share_at_size", "empty_masks", "mask_rule", "resize_rule"):
        assert key in saved, key
    assert set(saved["per_image_share_at_size"]) == {"mean", "median", "min", "max"}
    assert saved["empty_masks"] == 0
    with Image.open(out / HIST_NAME) as img:
        assert img.format == "PNG"
        img.verify()


def test_dataset_metrics_default_size_is_the_image_size(clean_set, tmp_path):
    summary = dataset_metrics(*clean_set, tmp_path / "dm", progress=False)
    assert summary["eval_size"] == "256x256"  # the images are 256x256


# ---------------------------------------------------------------- sanity_check


def test_sanity_check_clean_set_has_no_problems(clean_set):
    assert sanity_check(*clean_set, progress=False) == []


def test_sanity_check_names_each_broken_file(broken_set):
    img_dir, mask_dir, broken = broken_set
    rows = sanity_check(img_dir, mask_dir, progress=False)
    by_id: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_id.setdefault(r["id"], []).append(r)
    assert set(by_id) == set(broken), rows
    for key, name in broken.items():
        assert any(Path(r["file"]).name == name for r in by_id[key]), by_id[key]
    truncated, wrong_aspect, grey, not_image = IDS[:4]
    assert any("truncated" in r["problem"] for r in by_id[truncated])
    assert any(r["check"] == "size" and "1000x700" in r["problem"] for r in by_id[wrong_aspect])
    assert any(r["check"] == "binary" and "grey" in r["problem"] for r in by_id[grey])
    assert any("not an image" in r["problem"] for r in by_id[not_image])
    assert [r["problem"] for r in by_id[UNLABELLED]] == ["image has no mask"]


def test_sanity_check_label_maps(clean_set, tmp_path):
    img_dir, mask_dir = clean_set
    labels = tmp_path / "labels"
    labels.mkdir()
    good, out_of_range, three_d, floats = IDS[:4]
    np.save(labels / f"{good}.npy", np.random.default_rng(0).integers(0, 19, (512, 512)))
    np.save(labels / f"{out_of_range}.npy", np.full((512, 512), 25, dtype=np.uint8))
    np.save(labels / f"{three_d}.npy", np.zeros((512, 512, 3), dtype=np.uint8))
    np.save(labels / f"{floats}.npy", np.zeros((512, 512), dtype=np.float32))
    rows = sanity_check(img_dir, mask_dir, labels_dir=labels, progress=False)
    problems = {r["id"]: r["problem"] for r in rows}
    assert good not in problems
    assert "25..25" in problems[out_of_range]
    assert "2-D" in problems[three_d]
    assert "integer" in problems[floats]
    assert all(problems[i] == "no face-parsing label map" for i in IDS[4:])


def test_sanity_check_missing_folder_is_a_user_error(clean_set, tmp_path):
    from utils.errors import UserError

    with pytest.raises(UserError, match="nowhere"):
        sanity_check(tmp_path / "nowhere", clean_set[1], progress=False)


# ---------------------------------------------------------------- the scripts


def test_sanity_script_exit_codes(clean_set, broken_set, tmp_path):
    bad = _run("utils/data/sanity_check_dimensions.py", "--image-dir", broken_set[0],
               "--mask-dir", broken_set[1], "--no-progress")
    assert bad.returncode == 1, bad.stderr
    assert "problem" in bad.stdout and IDS[0] in bad.stdout
    ok = _run("utils/data/sanity_check_dimensions.py", "--image-dir", clean_set[0],
              "--mask-dir", clean_set[1], "--no-progress")
    assert ok.returncode == 0, ok.stderr
    assert f"all {N_PAIRS} pairs OK" in ok.stdout
    missing = tmp_path / "no-such-images"
    gone = _run("utils/data/sanity_check_dimensions.py", "--image-dir", missing,
                "--mask-dir", clean_set[1])
    assert gone.returncode == 1
    assert "error:" in gone.stderr and str(missing) in gone.stderr
    assert "Traceback" not in gone.stderr


@pytest.mark.parametrize("script", ["utils/data/dataset_metrics.py", "utils/data/sanity_check_dimensions.py"])
def test_help(script):
    result = _run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "--image-dir" in result.stdout


def test_help_as_module():
    result = subprocess.run([sys.executable, "-m", "utils.data.dataset_metrics", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--size" in result.stdout
