"""ONNX and OpenVINO: exports agree with torch fp32 on real faces, load on their own, the
OpenVINO backend works in predict.py and the app, and a process that compiled several models
can still fork DataLoader workers."""

from __future__ import annotations

import pytest

from export import main
from tests.conftest import IMAGES, labelled_ids, needs_data
from utils.checkpoints import load_checkpoint
from utils.data.images import load_image
from utils.errors import UserError
from utils.inference.loading import DEFAULT_CHECKPOINT, load_any_checkpoint
from utils.inference.predictor import WrinklePredictor

pytestmark = needs_data


def _aligned_masks(predictor, faces):
    return [predictor.predict_aligned(load_image(f)).mask for f in faces]


@pytest.mark.parametrize("suffix", [".onnx", ".xml"])
def test_exported_bundled_model_agrees_with_torch_fp32(tmp_path, suffix):
    dst = tmp_path / f"wrinkle{suffix}"
    assert main([str(DEFAULT_CHECKPOINT), str(dst)]) == 0
    faces = [IMAGES / f"{i}.jpg" for i in labelled_ids(4)]
    reference = _aligned_masks(WrinklePredictor(precision="fp32", backend="torch"), faces)
    exported = WrinklePredictor(dst)  # the deployment setting: OpenVINO, int8 on x86 CPUs
    assert exported.backend == "openvino" and f"[{suffix[1:]}]" in exported.description
    assert exported.threshold == load_checkpoint(DEFAULT_CHECKPOINT)["threshold"]
    assert exported.loaded.recipe["image_size"] == 256 and "trained on" in exported.loaded.about
    for a, b in zip(reference, _aligned_masks(exported, faces), strict=True):
        assert (a == b).mean() >= 0.995
    with pytest.raises(UserError, match="runs on the OpenVINO backend"):
        WrinklePredictor(dst, backend="torch")


def test_official_unet_exports_with_its_recipe_and_bare_onnx_is_refused(tmp_path):
    import torch

    from tests.test_inference import OFFICIAL, state_dict_from_manifest

    src = tmp_path / "stage2_unet.pth"
    torch.save({"model": state_dict_from_manifest(OFFICIAL)}, src)
    xml = tmp_path / "official.xml"
    assert main([str(src), str(xml), "--format", "openvino"]) == 0
    assert xml.with_suffix(".bin").is_file()
    loaded = WrinklePredictor(xml, precision="fp32").loaded  # the recipe, not int8, is tested
    assert loaded.kind == "official_unet" and loaded.recipe["in_channels"] == 4
    assert loaded.recipe["image_size"] == 1024 and loaded.recipe["texture"]
    bare = tmp_path / "bare.onnx"
    model = load_any_checkpoint(src).model
    torch.onnx.export(model, (torch.zeros(1, 4, 64, 64),), str(bare), dynamo=False)
    with pytest.raises(UserError, match="carries no wrinkle-model recipe"):
        WrinklePredictor(bare)
    with pytest.raises(UserError, match=r"\.xml file"):
        main([str(src), str(tmp_path / "x.onnx"), "--format", "openvino"])


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


FORK_AFTER_COMPILES = """
import gc
import sys
sys.path.insert(0, {repo!r})
import torch
from torch.utils.data import DataLoader
from utils.inference.backends import to_openvino
from utils.data.dataset import WrinkleDataset
from utils.inference.loading import DEFAULT_CHECKPOINT, fold_batchnorm, load_any_checkpoint
from utils.data.pairs import find_pairs
model = fold_batchnorm(load_any_checkpoint(DEFAULT_CHECKPOINT).model.eval())
compiled = [to_openvino(model, {{"in_channels": 3}}, "fp32") for i in range(5)]  # five compilations
for c in compiled:
    c(torch.zeros(1, 3, 64, 64))
del compiled, c
gc.collect()
report = find_pairs({images!r}, {masks!r}, None, progress=False)
ds = WrinkleDataset(report.pairs[:8], {{"image_size": 256, "normalize": "symmetric",
                    "texture": False, "face_labels": [1, 10], "in_channels": 3}})
for _ in range(2):
    n = sum(len(b["id"]) for b in DataLoader(ds, batch_size=4, num_workers=2))
print("read", n)
"""


def test_compiled_models_then_forked_workers_do_not_crash(tmp_path):
    """Several compiled models, released, then DataLoader workers forked from the same process (what a
    test run, or a notebook that predicts and then trains, does). With one OpenVINO Core per
    model this segfaulted every time; the process shares one Core now. Run in a child process,
    since a failure here is a crash."""
    import subprocess
    import sys

    from tests.conftest import MASKS, REPO

    script = tmp_path / "fork_after_compiles.py"
    script.write_text(FORK_AFTER_COMPILES.format(repo=str(REPO), images=str(IMAGES),
                                                 masks=str(MASKS)))
    res = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-2000:]}"
    assert "read 8" in res.stdout


def test_predictors_of_one_file_share_a_compiled_model_safely_across_threads():
    """A second predictor of the same checkpoint reuses the compilation (seconds saved at each
    app or script start); calls from two threads at once (the app's two tabs) take turns."""
    import threading

    from utils.inference.backends import int8_kernels
    from utils.runtime import cpu_has_bf16

    first = WrinklePredictor(backend="openvino")
    again = WrinklePredictor(backend="openvino")
    fp32 = WrinklePredictor(backend="openvino", precision="fp32")
    assert again.loaded.model is first.loaded.model
    # the default precision is the CPU class's (int8 on every x86 CPU): one compilation each
    assert first.precision == ("int8" if int8_kernels() else "bf16" if cpu_has_bf16() else "fp32")
    assert (fp32.loaded.model is first.loaded.model) == (first.precision == "fp32")
    faces = [IMAGES / f"{i}.jpg" for i in labelled_ids(4)]
    alone = _aligned_masks(first, faces)
    got: dict[int, list] = {}

    def work(n: int, predictor: WrinklePredictor) -> None:
        got[n] = _aligned_masks(predictor, faces * 2)

    threads = [threading.Thread(target=work, args=(n, p)) for n, p in enumerate((first, again))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [0, 1]  # without the lock one thread failed ("infer request busy")
    for masks in got.values():
        assert all((a == b).all() for a, b in zip(masks, alone * 2, strict=True))
