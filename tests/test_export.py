"""Exporting a checkpoint for shipping: slim, half precision, same masks, same loader."""

from __future__ import annotations

import pytest

from export import main
from tests.conftest import IMAGES, labelled_ids
from utils.checkpoints import load_checkpoint
from utils.errors import UserError
from utils.inference.export import export_checkpoint, mask_agreement
from utils.inference.loading import load_any_checkpoint


def test_half_precision_export_keeps_the_masks(trained_run, tmp_path):
    dst = tmp_path / "model.pth"
    out = export_checkpoint(trained_run / "best.pth", dst, half=True, threshold=0.4, note="x")
    ckpt = load_checkpoint(dst)
    assert not {"optimizer", "rng", "history"} & set(ckpt)
    assert ckpt["threshold"] == 0.4 and ckpt["split"] == out["split"]
    assert all(str(v.dtype) == "torch.float16" for v in ckpt["state_dict"].values()
               if v.is_floating_point())
    assert dst.stat().st_size < 0.6 * (trained_run / "best.pth").stat().st_size
    assert load_any_checkpoint(dst).kind == "ours"
    faces = [IMAGES / f"{i}.jpg" for i in labelled_ids(3)]
    assert mask_agreement(trained_run / "best.pth", dst, faces) >= 0.995


def test_export_cli_refuses_to_overwrite_its_input(trained_run):
    src = str(trained_run / "best.pth")
    with pytest.raises(UserError, match="overwrite"):
        main([src, src])


def test_the_bundled_file_gives_its_float32_masks_and_carries_its_out_of_fold_figures():
    """The shipped float16 weights against the float32 masks stored at export (examples/ faces),
    in plain torch and in the default fast path; and the figures it quotes are out of fold."""
    from tests.conftest import REPO
    from utils.inference.export import check_reference
    from utils.inference.loading import DEFAULT_CHECKPOINT

    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    oof = ckpt["out_of_fold"]
    assert oof["k"] == 5 and oof["faces"] == 165 and ckpt["threshold"] == oof["threshold"]
    assert oof["f1_at_threshold"] >= oof["pooled_at_report_threshold"]["f1"] - 1e-9
    assert len(ckpt["split"]["train"]) == 165 and not ckpt["split"]["val"]
    assert ckpt["fp32_reference"]["threshold"] == ckpt["threshold"]
    plain = check_reference(DEFAULT_CHECKPOINT, REPO / "examples")
    assert len(plain) == 3 and min(plain.values()) >= 0.999, plain
    fast = check_reference(DEFAULT_CHECKPOINT, REPO / "examples", backend="auto", precision="auto")
    assert min(fast.values()) >= 0.995, fast
