"""Data preparation on real faces: png_parsing, face_masking, weak labels, the download and
masking shell scripts (with a stand-in gdown), face_parsing_extraction's CLI, face regions."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ffhq-wrinkle-256"
IMAGES = DATA / "images256x256"
MASKS = DATA / "manual_wrinkle_masks"

if not MASKS.is_dir() or not IMAGES.is_dir():
    pytest.skip(f"real data not found at {DATA} (the shared/ folder beside the repo)",
                allow_module_level=True)

from face_masking import mask_face_images  # noqa: E402
from make_weak_labels import make_weak_labels  # noqa: E402
from png_parsing import collect_face_images  # noqa: E402
from utils.data.images import load_image  # noqa: E402
from utils.data.texture import texture_map, texture_params  # noqa: E402

IDS = sorted(p.stem for p in MASKS.glob("*.png"))[:4]
SCRIPTS = ["png_parsing.py", "face_masking.py", "face_parsing_extraction.py",
           "make_weak_labels.py", "bench/bench_face_region.py", "bench/two_stage_experiment.py",
           "bench/bench_wild.py", "bench/bench_compare.py", "bench/make_compare_example.py", "bench/bench_openvino_options.py"]


def synthetic_labels(size: int = 512, seed: int = 0) -> np.ndarray:
    """A BiSeNet-like label map, constant over 4x4 blocks so any nearest rule gives one answer."""
    n = size // 4
    yy, xx = np.mgrid[0:n, 0:n] / n
    lab = np.zeros((n, n), np.uint8)
    lab[yy < 0.3] = 17  # hair
    lab[((xx - 0.5) / 0.28) ** 2 + ((yy - 0.55) / 0.38) ** 2 <= 1] = 1  # skin
    lab[((xx - 0.5) / 0.06) ** 2 + ((yy - 0.6) / 0.1) ** 2 <= 1] = 10  # nose
    lab[((xx - 0.37) / 0.05) ** 2 + ((yy - 0.47) / 0.02) ** 2 <= 1] = 4  # eyes
    lab[((xx - 0.63) / 0.05) ** 2 + ((yy - 0.47) / 0.02) ** 2 <= 1] = 5
    lab[((xx - 0.5) / 0.08) ** 2 + ((yy - 0.75) / 0.03) ** 2 <= 1] = 12  # lips
    lab[yy > 0.92] = 16 + seed % 2  # cloth or hair
    return np.kron(lab, np.ones((4, 4), np.uint8))


def expected_face(labels: np.ndarray, size: int) -> np.ndarray:
    """Skin + nose of a synthetic label map at `size` (a multiple of 128)."""
    return np.kron(np.isin(labels[::4, ::4], (1, 10)), np.ones((size // 128,) * 2, bool))


@pytest.fixture(scope="module")
def flat_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 256 jpgs of IDS, nested as FFHQ lays them out (00000/, 01000/)."""
    root = tmp_path_factory.mktemp("ffhq256")
    for i in IDS:
        sub = root / f"{int(i) // 1000 * 1000:05d}"
        sub.mkdir(exist_ok=True)
        shutil.copy(IMAGES / f"{i}.jpg", sub / f"{i}.jpg")
    return root


def _mask_dir(root: Path, ids: list[str]) -> Path:
    d = root / "manual_wrinkle_masks"
    d.mkdir(parents=True, exist_ok=True)
    for i in ids:
        shutil.copy(MASKS / f"{i}.png", d / f"{i}.png")
    return d


def _labels_dir(root: Path, ids: list[str]) -> Path:
    d = root / "face_parsed_labels"
    d.mkdir(parents=True, exist_ok=True)
    for n, i in enumerate(ids):
        np.save(d / f"{i}.npy", synthetic_labels(seed=n))
    return d


# ---------------------------------------------------------------- png_parsing


def test_png_parsing_copies_reencodes_and_reports(flat_images: Path, tmp_path: Path) -> None:
    masks = _mask_dir(tmp_path, IDS)
    shutil.copy(MASKS / f"{IDS[0]}.png", masks / "69999.png")  # a mask without an image
    out = tmp_path / "face_images"
    dry = collect_face_images(flat_images, masks, out, dry_run=True, progress=False)
    assert sorted(dry.done) == IDS and not out.exists()
    rep = collect_face_images(flat_images, masks, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.png" for i in IDS]
    assert rep.missing == [("69999", "mask without image")] and rep.exit_code == 0
    for i in IDS:
        with Image.open(out / f"{i}.png") as im:
            assert im.format == "PNG" and im.size == (256, 256)
        # re-encoded losslessly: the same pixels as the jpg decodes to
        np.testing.assert_array_equal(load_image(out / f"{i}.png"), load_image(IMAGES / f"{i}.jpg"))
    again = collect_face_images(flat_images, masks, out, progress=False)
    assert again.done == [] and sorted(again.skipped) == IDS


def test_png_parsing_links_png_inputs(tmp_path: Path) -> None:
    src = tmp_path / "images1024x1024" / "00000"
    src.mkdir(parents=True)
    for i in IDS[:2]:
        Image.open(IMAGES / f"{i}.jpg").save(src / f"{i}.png")
    masks = _mask_dir(tmp_path, IDS[:2])
    out = tmp_path / "face_images"
    rep = collect_face_images(src.parent, masks, out, link=True, progress=False)
    assert sorted(rep.done) == IDS[:2]
    for i in IDS[:2]:
        assert os.path.samefile(src / f"{i}.png", out / f"{i}.png")
        assert (out / f"{i}.png").stat().st_nlink == 2


# ---------------------------------------------------------------- face_masking


def test_face_masking_scales_labels_and_zeroes_the_rest(flat_images: Path,
                                                        tmp_path: Path) -> None:
    labels = _labels_dir(tmp_path, IDS[:3])  # the fourth image has no label map
    out = tmp_path / "masked"
    assert mask_face_images(flat_images, labels, out, dry_run=True, progress=False).done
    assert not out.exists()
    rep = mask_face_images(flat_images, labels, out, progress=False)
    assert sorted(rep.done) == IDS[:3] and rep.missing == [(IDS[3], "no label map")]
    assert rep.exit_code == 0
    for n, i in enumerate(IDS[:3]):
        masked = load_image(out / f"{i}.png")
        rgb = load_image(IMAGES / f"{i}.jpg")
        assert masked.shape == rgb.shape == (256, 256, 3)
        face = expected_face(synthetic_labels(seed=n), 256)  # 512 -> 256 by nearest
        assert not masked[~face].any()
        np.testing.assert_array_equal(masked[face], rgb[face])
    # The data set's own argument order (labels first) is recognised.
    rep2 = mask_face_images(labels, flat_images, tmp_path / "masked2", progress=False)
    assert sorted(rep2.done) == IDS[:3] and "swapped" in rep2.notes[0]


def test_face_masking_reports_a_broken_label_map(flat_images: Path, tmp_path: Path) -> None:
    labels = _labels_dir(tmp_path, IDS[:2])
    (labels / f"{IDS[1]}.npy").write_bytes(b"garbage")
    rep = mask_face_images(flat_images, labels, tmp_path / "out", progress=False)
    assert rep.done == [IDS[0]] and rep.exit_code == 1
    assert rep.failed[0][0].endswith(f"{IDS[1]}.npy")


# ---------------------------------------------------------------- texture maps and weak labels


def test_texture_maps_of_real_faces() -> None:
    assert texture_params(1024) == (21, 5.0)
    k, sigma = texture_params(256)
    assert k % 2 == 1 and k < 21 and sigma == pytest.approx(1.25)
    face = expected_face(synthetic_labels(), 256)
    for i in IDS[:2]:
        rgb = load_image(IMAGES / f"{i}.jpg")
        tex = texture_map(rgb)
        assert tex.dtype == np.uint8 and tex.shape == (256, 256)
        assert tex.max() > 100 and tex.mean() < 60
        masked = texture_map(rgb, face)
        assert not masked[~face].any() and masked[face].max() > 100


def test_make_weak_labels_in_worker_processes(flat_images: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in IDS[:3]:
        shutil.copy(IMAGES / f"{i}.jpg", images / f"{i}.jpg")
    out = tmp_path / "weak_wrinkle_masks"
    rep = make_weak_labels(images, out, workers=2, progress=False)
    assert sorted(rep.done) == IDS[:3] and rep.exit_code == 0
    assert any("2 worker processes" in n for n in rep.notes)
    for i in IDS[:3]:
        weak = np.asarray(Image.open(out / "00000" / f"{i}.png"))
        np.testing.assert_array_equal(weak, texture_map(load_image(images / f"{i}.jpg")))
    again = make_weak_labels(images, out, workers=2, progress=False)
    assert again.done == [] and sorted(again.skipped) == IDS[:3]


def test_make_weak_labels_masks_to_the_face_and_reports_failures(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in IDS[:2]:
        shutil.copy(IMAGES / f"{i}.jpg", images / f"{i}.jpg")
    (images / "69998.png").write_bytes(b"not an image")
    labels = _labels_dir(tmp_path, [*IDS[:1], "69998"])
    rep = make_weak_labels(images, tmp_path / "weak", labels, workers=1, progress=False)
    assert rep.done == [IDS[0]] and rep.exit_code == 1
    failed = dict(rep.failed)
    assert "not an image" in failed[str(images / "69998.png")]
    assert "no face-parsing label map" in failed[str(images / f"{IDS[1]}.jpg")]
    weak = np.asarray(Image.open(tmp_path / "weak" / "00000" / f"{IDS[0]}.png"))
    assert not weak[~expected_face(synthetic_labels(), 256)].any()


# ---------------------------------------------------------------- shell scripts

STAND_IN_GDOWN = """#!/usr/bin/env bash
# Stand-in for gdown: serves $GDOWN_SERVE/<id>.zip for "gdown -O OUT URL?id=<id>".
set -eu
out=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in -O) out="$2"; shift 2 ;; *) url="$1"; shift ;; esac
done
id="${url##*id=}"
echo "$id" >> "$GDOWN_SERVE/calls.log"
if [ "${GDOWN_FAIL:-}" = "$id" ]; then echo "stand-in gdown: refusing $id" >&2; exit 1; fi
cp "$GDOWN_SERVE/$id.zip" "$out"
"""


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.fixture(scope="module")
def gdown_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PATH with the stand-in gdown first, and zips in the data set's layout to serve."""
    root = tmp_path_factory.mktemp("gdown")
    bin_dir, serve = root / "bin", root / "serve"
    bin_dir.mkdir()
    serve.mkdir()
    gdown = bin_dir / "gdown"
    gdown.write_text(STAND_IN_GDOWN)
    gdown.chmod(gdown.stat().st_mode | stat.S_IEXEC)
    _zip(serve / "dummy-manual.zip",
         {f"manual_wrinkle_masks/{i}.png": (MASKS / f"{i}.png").read_bytes() for i in IDS})
    weak = {}
    for i in IDS:
        _, buf = cv2.imencode(".png", np.full((8, 8), int(i) % 255, np.uint8))
        weak[f"weak_wrinkle_masks/{int(i) // 1000 * 1000:05d}/{i}.png"] = buf.tobytes()
    _zip(serve / "dummy-weak.zip", weak)
    # The labels zip holds the .npy files themselves (no folder), as the data set's does.
    _zip(serve / "dummy-labels.zip",
         {f"{i}.npy": _npy_bytes(synthetic_labels(seed=n)) for n, i in enumerate(IDS)})
    (serve / "corrupt.zip").write_bytes((serve / "dummy-weak.zip").read_bytes()[:200])
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "GDOWN_SERVE": str(serve), "PYTHON": sys.executable,
            "FFHQ_WRINKLE_MANUAL_ID": "dummy-manual", "FFHQ_WRINKLE_WEAK_ID": "dummy-weak",
            "FFHQ_WRINKLE_LABELS_ID": "dummy-labels"}


def _bash(script: str, *args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO / script), *map(str, args)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def _tree(base: Path) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.rglob("*"))


def test_download_script_builds_the_data_set_layout(gdown_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    base = tmp_path / "data"
    res = _bash("download_ffhq_wrinkle.sh", base, env=gdown_env)
    assert res.returncode == 0, res.stderr
    sub = sorted({f"{int(i) // 1000 * 1000:05d}" for i in IDS})
    expected = (["etcs", "etcs/face_parsed_labels"]
                + [f"etcs/face_parsed_labels/{i}.npy" for i in IDS]
                + ["manual_wrinkle_masks"] + [f"manual_wrinkle_masks/{i}.png" for i in IDS]
                + ["weak_wrinkle_masks"] + [f"weak_wrinkle_masks/{s}" for s in sub]
                + [f"weak_wrinkle_masks/{int(i) // 1000 * 1000:05d}/{i}.png" for i in IDS])
    assert _tree(base) == sorted(expected)  # nothing else: no zips, no temporary folders
    assert (base / "manual_wrinkle_masks" / f"{IDS[0]}.png").read_bytes() == (
        MASKS / f"{IDS[0]}.png").read_bytes()
    log = Path(gdown_env["GDOWN_SERVE"]) / "calls.log"
    calls = log.read_text()
    again = _bash("download_ffhq_wrinkle.sh", base, env=gdown_env)
    assert again.returncode == 0 and again.stdout.count("skipped") == 3
    assert log.read_text() == calls  # nothing downloaded again


@pytest.mark.parametrize("damage", ["gdown fails", "corrupt zip", "no id"])
def test_download_script_fails_cleanly(gdown_env: dict[str, str], tmp_path: Path,
                                       damage: str) -> None:
    env = dict(gdown_env)
    if damage == "gdown fails":
        env["GDOWN_FAIL"] = "dummy-weak"
    elif damage == "corrupt zip":
        env["FFHQ_WRINKLE_WEAK_ID"] = "corrupt"
    else:
        env["FFHQ_WRINKLE_WEAK_ID"] = ""
    base = tmp_path / "data"
    res = _bash("download_ffhq_wrinkle.sh", base, env=env)
    assert res.returncode != 0
    assert "weak_wrinkle_masks.zip" in res.stderr and "by hand" in res.stderr
    assert str(base / "weak_wrinkle_masks") in res.stderr
    assert "Traceback" not in res.stderr
    # The part before the failure is complete; nothing half-written is left.
    assert _tree(base) == ["manual_wrinkle_masks"] + [f"manual_wrinkle_masks/{i}.png"
                                                      for i in IDS]


def test_face_masking_script_end_to_end(gdown_env: dict[str, str], tmp_path: Path) -> None:
    base = tmp_path / "data"
    ffhq = base / "images1024x1024" / "00000"
    ffhq.mkdir(parents=True)
    for i in IDS:
        Image.open(IMAGES / f"{i}.jpg").resize((1024, 1024), Image.BICUBIC).save(
            ffhq / f"{i}.png", compress_level=1)
    _mask_dir(base, IDS)
    res = _bash("face_masking.sh", base, env=gdown_env)  # fetches the labels first
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (base / "face_images").iterdir()) == [f"{i}.png" for i in IDS]
    assert sorted(p.name for p in (base / "masked_face_images").iterdir()) == [
        f"{i}.png" for i in IDS]
    for n, i in enumerate(IDS):
        masked = load_image(base / "masked_face_images" / f"{i}.png")
        assert masked.shape == (1024, 1024, 3)
        face = expected_face(synthetic_labels(seed=n), 1024)  # 512 -> 1024 by nearest
        assert not masked[~face].any() and masked[face].any()


def test_shell_scripts_pass_bash_n_and_shellcheck() -> None:
    for script in ("download_ffhq_wrinkle.sh", "face_masking.sh"):
        subprocess.run(["bash", "-n", str(REPO / script)], check=True)
        if shutil.which("shellcheck"):
            res = subprocess.run(["shellcheck", str(REPO / script)], capture_output=True,
                                 text=True)
            assert res.returncode == 0, res.stdout


# ---------------------------------------------------------------- command lines


def test_every_script_answers_help() -> None:
    for script in SCRIPTS:
        res = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, (script, res.stderr)
        assert "usage:" in res.stdout and "example" in res.stdout.lower()


def test_face_parsing_extraction_without_weights(tmp_path: Path) -> None:
    images = tmp_path / "photos"
    images.mkdir()
    shutil.copy(IMAGES / f"{IDS[0]}.jpg", images)
    res = subprocess.run([sys.executable, "face_parsing_extraction.py", str(images),
                          str(tmp_path / "out"), "--weights", str(tmp_path / "79999_iter.pth"),
                          "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: face-parsing weights not found")
    assert "79999_iter.pth" in res.stderr and "Google Drive" in res.stderr
    assert "res/cp/79999_iter.pth" in res.stderr
    assert not (tmp_path / "out").exists()
