"""Exporting a checkpoint for shipping: slim, half precision, same masks, same loader."""

from __future__ import annotations

import pytest

from tests.conftest import IMAGES, labelled_ids
from utils.backends import openvino_available
from utils.checkpoints import load_checkpoint
from utils.errors import UserError
from utils.export import export_checkpoint, main, mask_agreement
from utils.images import load_image
from utils.inference import DEFAULT_CHECKPOINT, WrinklePredictor, load_any_checkpoint


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


def _aligned_masks(predictor, faces):
    return [predictor.predict_aligned(load_image(f)).mask for f in faces]


@pytest.mark.skipif(not openvino_available(), reason="openvino not installed")
@pytest.mark.parametrize("suffix", [".onnx", ".xml"])
def test_exported_bundled_model_agrees_with_torch_fp32(tmp_path, suffix):
    dst = tmp_path / f"wrinkle{suffix}"
    assert main([str(DEFAULT_CHECKPOINT), str(dst)]) == 0
    faces = [IMAGES / f"{i}.jpg" for i in labelled_ids(4)]
    reference = _aligned_masks(WrinklePredictor(precision="fp32", backend="torch"), faces)
    exported = WrinklePredictor(dst)  # the deployment setting: OpenVINO, bf16 where the CPU has it
    assert exported.backend == "openvino" and f"[{suffix[1:]}]" in exported.description
    assert exported.threshold == load_checkpoint(DEFAULT_CHECKPOINT)["threshold"]
    assert exported.loaded.recipe["image_size"] == 256 and "trained on" in exported.loaded.about
    for a, b in zip(reference, _aligned_masks(exported, faces), strict=True):
        assert (a == b).mean() >= 0.995
    with pytest.raises(UserError, match="runs on the OpenVINO backend"):
        WrinklePredictor(dst, backend="torch")


@pytest.mark.skipif(not openvino_available(), reason="openvino not installed")
def test_official_unet_exports_with_its_recipe_and_bare_onnx_is_refused(tmp_path):
    import torch

    from tests.test_inference import OFFICIAL, state_dict_from_manifest

    src = tmp_path / "stage2_unet.pth"
    torch.save({"model": state_dict_from_manifest(OFFICIAL)}, src)
    xml = tmp_path / "official.xml"
    assert main([str(src), str(xml), "--format", "openvino"]) == 0
    assert xml.with_suffix(".bin").is_file()
    loaded = WrinklePredictor(xml).loaded
    assert loaded.kind == "official_unet" and loaded.recipe["in_channels"] == 4
    assert loaded.recipe["image_size"] == 1024 and loaded.recipe["texture"]
    bare = tmp_path / "bare.onnx"
    model = load_any_checkpoint(src).model
    torch.onnx.export(model, (torch.zeros(1, 4, 64, 64),), str(bare), dynamo=False)
    with pytest.raises(UserError, match="carries no wrinkle-model recipe"):
        WrinklePredictor(bare)
    with pytest.raises(UserError, match=r"\.xml file"):
        main([str(src), str(tmp_path / "x.onnx"), "--format", "openvino"])


@pytest.mark.skipif(not openvino_available(), reason="openvino not installed")
def test_backend_flag_in_predict_and_app(tmp_path):
    from app import parse_args as app_args
    from predict import main as predict_main
    from utils.demo import run_prediction

    assert app_args(["--backend", "openvino"]).backend == "openvino"
    out = tmp_path / "out"
    face = IMAGES / f"{labelled_ids(1)[0]}.jpg"
    assert predict_main([str(face), "-o", str(out), "--backend", "openvino",
                         "--no-progress"]) == 0
    assert (out / f"{face.stem}_mask.png").is_file()
    ov = WrinklePredictor(backend="openvino")
    torch_fp32 = WrinklePredictor(backend="torch", precision="fp32")
    assert "OpenVINO" in ov.description
    _, _, summary, table, _ = run_prediction(ov, str(face), 0.5)
    assert "% of the face" in summary and len(table) == 11
    a = ov.predict(load_image(face)).mask
    b = torch_fp32.predict(load_image(face)).mask
    assert (a == b).mean() >= 0.995
