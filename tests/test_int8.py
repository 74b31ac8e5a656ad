"""int8 on the CPU: the precision each CPU class gets (asked the way the predictor asks it), the
quantised bundled model against float32 on real faces, the on-disk cache, and int8 exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import IMAGES, MASKS, REPO, labelled_ids, needs_data
from utils.data.dataset import to_input
from utils.data.images import load_image
from utils.data.masks import read_mask, resize_mask
from utils.errors import UserError
from utils.inference.backends import core, int8_kernels, is_quantized, resolve_precision
from utils.inference.loading import DEFAULT_CHECKPOINT
from utils.inference.predictor import WrinklePredictor
from utils.runtime import CPU_CLASSES, cpu_class, cpu_has_bf16, machine_facts

pytestmark = needs_data
CPU = torch.device("cpu")
EXAMPLES = sorted((REPO / "examples").glob("*.jpg"))


def test_the_cpu_class_follows_the_isa_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    native = cpu_class()
    assert native in CPU_CLASSES
    assert cpu_has_bf16() == (native in ("avx512_bf16", "amx"))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # what .ci/avx2 sets
    assert cpu_class() == "avx2" and not cpu_has_bf16()
    assert machine_facts()["cpu_class"] == "avx2" and machine_facts()["isa_cap"] == "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    assert cpu_class() == min(native, "avx512", key=CPU_CLASSES.index)


def test_precision_by_cpu_class_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # as on an AVX2-only CPU, on any CPU
    assert resolve_precision("auto", "torch", CPU) == "fp32"
    assert resolve_precision("auto", "openvino", CPU) == ("int8" if int8_kernels() else "fp32")
    with pytest.raises(UserError, match="class avx2"):
        resolve_precision("bf16", "openvino", CPU)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert resolve_precision("auto", "torch", CPU) == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("int8", "openvino", CPU) == "int8"
    assert resolve_precision("fp32", "openvino", CPU) == "fp32"
    with pytest.raises(UserError, match="OpenVINO backend"):
        resolve_precision("int8", "torch", CPU)
    with pytest.raises(UserError, match="unknown precision"):
        resolve_precision("fp8", "openvino", CPU)


def _f1(pred: list[np.ndarray], truth: list[np.ndarray]) -> float:
    tp = sum(int((p & t).sum()) for p, t in zip(pred, truth, strict=True))
    return 2 * tp / sum(int(p.sum() + t.sum()) for p, t in zip(pred, truth, strict=True))


def test_int8_keeps_the_fp32_masks_and_f1_on_real_faces() -> None:
    ids = labelled_ids(12)
    faces = [load_image(IMAGES / f"{i}.jpg") for i in ids]
    truth = [resize_mask(read_mask(MASKS / f"{i}.png"), (256, 256)) for i in ids]
    fp32 = WrinklePredictor(backend="openvino", precision="fp32", face_region="none")
    int8 = WrinklePredictor(precision="int8", face_region="none")
    assert int8.precision == "int8" and "(int8)" in int8.description
    a = [fp32.predict_aligned(f).mask for f in faces]
    b = [int8.predict_aligned(f).mask for f in faces]
    assert min(float((x == y).mean()) for x, y in zip(a, b, strict=True)) >= 0.995
    assert abs(_f1(b, truth) - _f1(a, truth)) < 0.01
    assert _f1(b, truth) > 0.3  # it finds the annotator's lines, not noise


def test_int8_is_quantised_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    from utils.inference.backends import cached_int8, convert_model
    from utils.inference.loading import fold_batchnorm, load_any_checkpoint

    monkeypatch.setenv("WRINKLE_CACHE", str(tmp_path / "cache"))
    loaded = load_any_checkpoint(DEFAULT_CHECKPOINT)
    ov_model = convert_model(fold_batchnorm(loaded.model.eval()), 3)
    first, said = cached_int8(DEFAULT_CHECKPOINT, "plain", ov_model, loaded.recipe)
    assert "quantised in" in said and is_quantized(first) and not is_quantized(ov_model)
    (entry,) = (tmp_path / "cache").glob("int8-*.xml")
    assert entry.with_suffix(".bin").is_file()
    again, said = cached_int8(DEFAULT_CHECKPOINT, "plain", ov_model, loaded.recipe)
    assert "read from the cache" in said
    x = to_input(load_image(EXAMPLES[0]), loaded.recipe).unsqueeze(0).numpy()
    outs = [np.array(core().compile_model(m, "CPU")(x)[0]) for m in (first, again)]
    assert np.array_equal(outs[0], outs[1])
    _, said = cached_int8(DEFAULT_CHECKPOINT, "flip", ov_model, loaded.recipe)
    assert "quantised in" in said  # another served variant is another entry
    entry.write_text("not a model")  # a damaged entry is made again
    _, said = cached_int8(DEFAULT_CHECKPOINT, "plain", ov_model, loaded.recipe)
    assert "quantised in" in said


def test_int8_export_runs_as_int8_wherever_it_is_loaded(tmp_path: Path) -> None:
    from export import main

    dst = tmp_path / "wrinkle_int8.xml"
    assert main([str(DEFAULT_CHECKPOINT), str(dst), "--int8", "--check-images",
                 *map(str, EXAMPLES)]) == 0
    served = WrinklePredictor(dst, precision="fp32", face_region="none")
    assert served.precision == "int8" and is_quantized(core().read_model(str(dst)))
    own = tmp_path / "faces"
    own.mkdir()
    for i in labelled_ids(6):
        (own / f"{i}.jpg").symlink_to(IMAGES / f"{i}.jpg")
    mine = tmp_path / "mine.xml"
    assert main([str(DEFAULT_CHECKPOINT), str(mine), "--int8", "--calibration", str(own)]) == 0
    face = load_image(IMAGES / f"{labelled_ids(1)[0]}.jpg")
    a = served.predict_aligned(face).mask
    b = WrinklePredictor(mine, face_region="none").predict_aligned(face).mask
    assert (a == b).mean() >= 0.99
    with pytest.raises(UserError, match=r"name the output \.xml"):
        main([str(DEFAULT_CHECKPOINT), str(tmp_path / "w.onnx"), "--int8"])
    with pytest.raises(UserError, match="give --int8"):
        main([str(DEFAULT_CHECKPOINT), str(tmp_path / "w.xml"), "--calibration", str(own)])
    with pytest.raises(UserError, match="calibration folder not found"):
        main([str(DEFAULT_CHECKPOINT), str(tmp_path / "w.xml"), "--int8", "--calibration",
              str(tmp_path / "nowhere")])


def test_predict_says_int8_and_refuses_it_on_torch(tmp_path: Path) -> None:
    import csv
    import subprocess
    import sys

    face = IMAGES / f"{labelled_ids(1)[0]}.jpg"
    out = tmp_path / "out"
    ok = subprocess.run([sys.executable, "predict.py", str(face), "-o", str(out),
                         "--precision", "int8", "--no-progress"], cwd=REPO, capture_output=True,
                        text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    assert "(int8)" in ok.stdout
    with (out / "wrinkles.csv").open(newline="") as fh:
        assert "(int8)" in next(csv.DictReader(fh))["model"]
    bad = subprocess.run([sys.executable, "predict.py", str(face), "-o", str(tmp_path / "o2"),
                          "--precision", "int8", "--backend", "torch"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "int8 runs on the OpenVINO backend" in bad.stderr


def test_large_inputs_are_calibrated_on_fewer_examples_each_face_once() -> None:
    """The official U-Net at 1024 px took a minute to quantise on all 12 example inputs; it is
    calibrated on 3 (each example face once, in different variants), the 256 px model on all."""
    from utils.inference.quantize import calibration_images, example_calibration

    every = calibration_images()
    assert len(example_calibration({"image_size": 256})) == len(every) == 4 * len(EXAMPLES)
    chosen = example_calibration({"image_size": 1024})
    assert len(chosen) == len(EXAMPLES)
    index = [next(i for i, im in enumerate(every) if np.array_equal(im, c)) for c in chosen]
    assert sorted(i // 4 for i in index) == list(range(len(EXAMPLES)))  # every face once
    assert len({i % 4 for i in index}) == len(EXAMPLES)  # each in another variant
