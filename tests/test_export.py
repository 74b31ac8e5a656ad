"""Exporting a checkpoint for shipping: slim, half precision, same masks, same loader."""

from __future__ import annotations

import pytest

from tests.conftest import IMAGES, labelled_ids
from utils.checkpoints import load_checkpoint
from utils.errors import UserError
from utils.export import export_checkpoint, main, mask_agreement
from utils.inference import load_any_checkpoint


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


# ---------------------------------------------------------------- ONNX and OpenVINO


def test_onnx_and_openvino_checks_in_their_own_process():
    """tests/openvino_checks.py (exports agree with torch fp32, .onnx/.xml load on their own,
    --backend openvino in predict.py and the app), run in a fresh process: OpenVINO's threads
    stay out of this one, whose later tests fork DataLoader workers."""
    import importlib.util
    import subprocess
    import sys

    from tests.conftest import REPO

    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino not installed")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(REPO / "tests" / "openvino_checks.py")], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "4 passed" in res.stdout, res.stdout[-1000:]
