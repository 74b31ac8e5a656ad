"""Shared fixtures: the real FFHQ-Wrinkle sample in ../shared, small copies of it, configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ffhq-wrinkle-256"
IMAGES = DATA / "images256x256"
MASKS = DATA / "manual_wrinkle_masks"

# int8 models quantised by the tests (and the scripts they start) go to a cache of this run's
# own, so that every run quantises the bundled model once, as a user's first call does.
_OWN_CACHE = None
if "WRINKLE_CACHE" not in os.environ:
    import tempfile

    _OWN_CACHE = os.environ["WRINKLE_CACHE"] = tempfile.mkdtemp(prefix="wrinkle-cache-")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run's own int8 cache goes with the run."""
    if _OWN_CACHE is not None:
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)

needs_data = pytest.mark.skipif(
    not MASKS.is_dir(), reason=f"real data not found at {DATA} (the shared/ folder beside the repo)"
)


def labelled_ids(n: int | None = None) -> list[str]:
    """The first n ids that have a real manual mask."""
    ids = sorted(p.stem for p in MASKS.glob("*.png"))
    return ids[:n] if n else ids


def link_pairs(root: Path, ids: list[str], nested: bool = False) -> tuple[Path, Path]:
    """A data folder of symlinks to real pairs (FFHQ 1000-per-subfolder layout if `nested`)."""
    img_dir, mask_dir = root / "images", root / "masks"
    for i in ids:
        sub = f"{int(i) // 1000 * 1000:05d}" if nested else ""
        (img_dir / sub).mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        os.symlink(IMAGES / f"{i}.jpg", img_dir / sub / f"{i}.jpg")
        os.symlink(MASKS / f"{i}.png", mask_dir / f"{i}.png")
    return img_dir, mask_dir


@pytest.fixture
def small_data(tmp_path: Path) -> tuple[Path, Path]:
    """16 real image/mask pairs."""
    if not MASKS.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return link_pairs(tmp_path / "data", labelled_ids(16))


def tiny_config(img_dir: Path, mask_dir: Path, out_dir: Path, **train: object) -> dict:
    """A config that trains a narrow U-Net at 64 px in seconds, deterministically (fp32)."""
    from utils.config import load_config

    overrides = {
        "data.image_dir": str(img_dir), "data.mask_dir": str(mask_dir), "data.image_size": 64,
        "data.num_workers": 0, "data.val_fraction": 0.25, "model.base_channels": 8,
        "train.out_dir": str(out_dir), "train.run_name": "t", "train.batch_size": 4,
        "train.epochs": 3, "train.amp": "off", "train.lr": 0.003, "train.warmup_epochs": 0,
        "eval.batch_size": 4,
    }
    overrides.update({f"train.{k}": v for k, v in train.items()})
    return load_config(overrides=overrides)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder trained for 2 epochs on 16 real pairs (shared by evaluation and CLI tests)."""
    if not MASKS.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    from utils.training.loop import train

    root = tmp_path_factory.mktemp("trained")
    cfg = tiny_config(*link_pairs(root / "data", labelled_ids(16)), root / "cp", epochs=2)
    train(cfg, progress=False, log=lambda s: None)
    return root / "cp" / "t"
