"""Where the model runs: PyTorch (the predictor's fast path) or OpenVINO on a CPU, and the
deployable files (ONNX, OpenVINO IR) that carry their recipe.

OpenVINO compiles the model once for dynamic input shapes, in one of three precisions: int8
(NNCF's post-training quantisation, utils/inference/quantize.py; the CPU default wherever OpenVINO
runs int8 kernels, since it is the fastest on every CPU class measured), bf16 (its inference
precision hint, on CPUs with AVX-512 bf16 or AMX) or fp32. bench/bench_infer.py has the figures by
CPU class. `OpenVINOModule` wraps a compiled model as a torch module, so the predictor's code path
is the same for both backends.

An exported file stores the model's recipe (what LoadedModel holds: kind, name, preprocessing,
threshold, description) as JSON: ONNX in its metadata_props, OpenVINO IR in its rt_info, under
the key "wrinkle_model". `load_exported` reads either back without any config.
"""

from __future__ import annotations

import functools
import json
import platform
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.errors import UserError
from utils.inference.loading import LoadedModel, fold_batchnorm
from utils.runtime import amp_dtype, cpu_class, cpu_has_bf16

META_KEY = "wrinkle_model"
BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "int8", "bf16", "fp32")
EXPORTED_SUFFIXES = (".onnx", ".xml")


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def require_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise UserError("OpenVINO is not installed: pip install openvino (see requirements.txt),"
                        " or use --backend torch") from None
    return openvino


@functools.cache
def core() -> Any:
    """The process's one OpenVINO Core. With several Cores alive in one process (openvino
    2026.4), the next fork (torch's DataLoader workers) crashed the process with a segmentation
    fault; with one Core it never did (tests/test_openvino.py repeats that sequence)."""
    return require_openvino().Core()


def resolve_backend(backend: str, device: torch.device) -> str:
    """"auto" is OpenVINO on a CPU where it is installed (faster there: bench/bench_infer.py)
    and torch on CUDA; "torch" and "openvino" are taken as asked."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if backend == "openvino" and device.type != "cpu":
        raise UserError("the OpenVINO backend runs on the CPU: use --device cpu or --backend torch")
    return backend


def int8_kernels() -> bool:
    """True where OpenVINO's CPU plugin runs int8 convolutions (every x86-64 CPU: VNNI or AMX
    where present, AVX2 elsewhere)."""
    return platform.machine().lower() in ("x86_64", "amd64")


def resolve_precision(precision: str, backend: str, device: torch.device) -> str:
    """The precision a model runs in: "int8", "bf16", "fp16" or "fp32".

    auto: int8 on the OpenVINO backend where it runs int8 kernels and NNCF is installed (the
    fastest on every CPU class: bench/bench_infer.py), else bf16 where the device has it (CUDA:
    bf16 or fp16), else fp32. int8 is OpenVINO's only; bf16 on OpenVINO needs a CPU with it."""
    from utils.inference.quantize import nncf_available

    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "int8":
        if backend != "openvino":
            raise UserError("int8 runs on the OpenVINO backend (on the CPU): use --backend auto "
                            "or openvino, or another --precision")
        if not nncf_available():
            raise UserError("int8 needs NNCF: pip install nncf (see requirements.txt), or use "
                            "--precision fp32")
        return "int8"
    if precision == "auto" and backend == "openvino" and int8_kernels() and nncf_available():
        return "int8"
    if backend == "openvino" and precision == "bf16" and not cpu_has_bf16():
        raise UserError(f"bf16 needs a CPU with AVX-512 bf16 or AMX; this one is of class "
                        f"{cpu_class()}: use --precision auto, int8 or fp32")
    dtype = None if precision == "fp32" else amp_dtype(device, precision)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def is_quantized(ov_model: Any) -> bool:
    """True for an OpenVINO model that NNCF quantised (it holds FakeQuantize operations)."""
    return any(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())


class OpenVINOModule(torch.nn.Module):
    """A compiled OpenVINO model behind a torch module's interface (float32 NCHW in, logits
    out). The input shape is dynamic: one compilation serves every batch and size.
    `precision`: "int8" for a quantised model (its other operations in float32), "bf16" or
    "fp32" (OpenVINO's inference precision hint). `profile`: keep OpenVINO's per-layer counters
    (bench/bench_layers.py)."""

    def __init__(self, ov_model: Any, precision: str, profile: bool = False) -> None:
        super().__init__()
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": profile}
        self.precision = precision
        self.compiled = core().compile_model(ov_model, "CPU", config)
        # Calling a compiled model reuses one infer request: two threads (the app's two tabs,
        # or predictors sharing this module) must take turns.
        self._lock = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        with self._lock:
            return torch.from_numpy(np.array(self.compiled(arr)[0], dtype=np.float32))


_COMPILED: dict[tuple, OpenVINOModule] = {}


def to_openvino(model: torch.nn.Module, recipe: dict[str, Any], precision: str,
                cache_key: tuple | None = None, source: str | Path | None = None,
                variant: str = "", log: Any = None) -> OpenVINOModule:
    """Convert a (BatchNorm-folded, float32) torch model and compile it for the CPU in
    `precision` (int8: quantised once per `source` file and cached on disk, see
    utils/inference/quantize.py; `source` None quantises without caching; `variant` names what
    is served of the file, e.g. with flips).

    Converting and compiling take seconds; with a `cache_key` (the checkpoint file's path, size
    and time) a second predictor of the same file in this process reuses the compiled model.
    """
    in_channels = int(recipe.get("in_channels", 3))
    key = None if cache_key is None else (*cache_key, in_channels, precision)
    if key is not None and key in _COMPILED:
        return _COMPILED[key]
    model = model.float().eval().to(memory_format=torch.contiguous_format)
    ov_model = convert_model(model, in_channels)
    if precision == "int8":
        ov_model = int8_of(ov_model, recipe, source, variant, log)
    module = OpenVINOModule(ov_model, precision)
    if key is not None:
        _COMPILED[key] = module
    return module


def int8_of(ov_model: Any, recipe: dict[str, Any], source: str | Path | None,
            variant: str = "", log: Any = None) -> Any:
    """The quantised copy of a float OpenVINO model: from the disk cache when it came from the
    file `source`, else quantised now on the example faces."""
    from utils.inference.quantize import calibration_inputs, example_calibration, quantize

    if is_quantized(ov_model):
        return ov_model
    if source is None:
        return quantize(ov_model, calibration_inputs(example_calibration(recipe), recipe))
    return cached_int8(source, variant, ov_model, recipe, log)[0]


def cached_int8(model_file: str | Path, variant: str, ov_model: Any, recipe: dict[str, Any],
                log: Any = None) -> tuple[Any, str]:
    """The int8 OpenVINO model of `ov_model` (the float model of `model_file`): read from the
    cache, or quantised now on the example faces and cached. Returns it and a note that says
    which (with the seconds a new quantisation took)."""
    import time

    from utils.inference.quantize import (
        cache_dir,
        cache_key,
        calibration_inputs,
        example_calibration,
        nncf_available,
        quantize,
    )

    if not nncf_available():
        raise UserError("int8 needs NNCF: pip install nncf (see requirements.txt), or use "
                        "--precision fp32")
    path = cache_dir() / f"int8-{cache_key(model_file, variant)}.xml"
    if path.is_file() and path.with_suffix(".bin").is_file():
        try:
            return core().read_model(str(path)), f"int8 model read from the cache {path}"
        except RuntimeError:
            pass  # a damaged cache entry is made again
    t0 = time.perf_counter()
    q = quantize(ov_model, calibration_inputs(example_calibration(recipe), recipe))
    took = time.perf_counter() - t0
    try:
        save_ir(q, path)
        where = f"cached in {path}"
    except OSError as exc:
        where = f"not cached ({exc})"
    note = f"int8 model quantised in {took:.1f} s on the example faces, {where}"
    if log is not None:
        log(note)
    return q, note


def save_ir(ov_model: Any, dst: str | Path) -> Path:
    """Write an OpenVINO model as IR (dst.xml + dst.bin) atomically: both files appear whole
    or not at all (the .bin first, so that a .xml is never seen without its weights)."""
    ov = require_openvino()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.{threading.get_ident()}.partial.xml")
    ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(dst.with_suffix(".bin"))
    tmp.replace(dst)
    return dst


def file_key(path: str | Path) -> tuple:
    """What identifies a model file's content for the compiled-model cache."""
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def convert_model(model: torch.nn.Module, channels: int) -> Any:
    """torch -> OpenVINO with a dynamic batch and size (sizes must be multiples of 16, as the
    U-Net's skip connections are traced for them)."""
    import warnings

    ov = require_openvino()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return ov.convert_model(model, example_input=torch.zeros(1, channels, 64, 64),
                                input=[ov.PartialShape([-1, channels, -1, -1])])


def _meta(loaded: LoadedModel) -> str:
    return json.dumps({"kind": loaded.kind, "name": loaded.name, "recipe": loaded.recipe,
                       "threshold": loaded.threshold, "about": loaded.about,
                       "notes": loaded.notes})


def export_onnx(loaded: LoadedModel, dst: str | Path, opset: int = 18) -> Path:
    """Write the model as ONNX (dynamic batch, height and width) with its recipe as metadata."""
    import onnx

    from utils.io import write_with

    model = fold_batchnorm(loaded.model.float().eval())
    channels = int(loaded.recipe.get("in_channels", 3))
    example = torch.zeros(1, channels, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}

    def writer(tmp: Path) -> None:
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(tmp), opset_version=opset,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": axes, "logits": axes}, dynamo=False)
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, _meta(loaded)
        onnx.save(proto, str(tmp))

    write_with(dst, writer)
    return Path(dst)


def export_openvino(loaded: LoadedModel, dst: str | Path, int8: bool = False,
                    calibration: str | Path | None = None) -> Path:
    """Write the model as OpenVINO IR (dst.xml + dst.bin) with its recipe: float32, or int8
    (quantised on the example faces, or on the aligned faces of the folder `calibration`)."""
    from utils.inference.quantize import (
        calibration_images,
        calibration_inputs,
        example_calibration,
        quantize,
    )

    dst = Path(dst)
    if dst.suffix != ".xml":
        raise UserError(f"{dst}: an OpenVINO model is written as a .xml file (with its .bin)")
    model = fold_batchnorm(loaded.model.float().eval())
    ov_model = convert_model(model, int(loaded.recipe.get("in_channels", 3)))
    if int8:
        images = (example_calibration(loaded.recipe) if calibration is None
                  else calibration_images(calibration))
        inputs = calibration_inputs(images, loaded.recipe)
        ov_model = quantize(ov_model, inputs)
    ov_model.set_rt_info(_meta(loaded), META_KEY)
    return save_ir(ov_model, dst)


def load_exported(path: str | Path, precision: str) -> LoadedModel:
    """A LoadedModel from an exported .onnx or .xml file, compiled with OpenVINO in
    `precision` (a file exported as int8 runs as int8, whatever is asked; int8 asked of a float
    file quantises it once, cached)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    try:
        ov_model = core().read_model(str(path))
    except RuntimeError as exc:
        raise UserError(f"{path}: not a readable {path.suffix[1:].upper()} model "
                        f"({str(exc).splitlines()[0]})") from None
    meta = None
    if path.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        meta = next((p.value for p in proto.metadata_props if p.key == META_KEY), None)
    elif ov_model.has_rt_info(META_KEY):
        meta = ov_model.get_rt_info(META_KEY).astype(str)
    if meta is None:
        raise UserError(f"{path}: carries no wrinkle-model recipe (export it with "
                        "utils/inference/export.py, which stores one)")
    info = json.loads(meta)
    if is_quantized(ov_model):
        precision = "int8"
    elif precision == "int8":
        ov_model = int8_of(ov_model, info["recipe"], path, variant="exported")
    return LoadedModel(info["kind"], f"{info['name']} [{path.suffix[1:]}]", info["recipe"],
                       float(info["threshold"]), OpenVINOModule(ov_model, precision),
                       list(info.get("notes", [])), info.get("about", ""))
