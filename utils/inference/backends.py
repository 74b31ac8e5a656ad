"""Where the model runs: PyTorch (the predictor's fast path) or OpenVINO on a CPU, and the
deployable files (ONNX, OpenVINO IR) that carry their recipe.

OpenVINO compiles the model once for dynamic input shapes; with its bf16 inference-precision
hint on a CPU with bf16/AMX it ran the bundled model at 256 px in 0.03 s against 0.05 s for the
torch fast path (bench/bench_infer.py has the figures). `OpenVINOModule` wraps a compiled model as
a torch module, so the predictor's code path is the same for both backends.

An exported file stores the model's recipe (what LoadedModel holds: kind, name, preprocessing,
threshold, description) as JSON: ONNX in its metadata_props, OpenVINO IR in its rt_info, under
the key "wrinkle_model". `load_exported` reads either back without any config.
"""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.errors import UserError
from utils.inference.loading import LoadedModel, fold_batchnorm

META_KEY = "wrinkle_model"
BACKENDS = ("auto", "torch", "openvino")
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


class OpenVINOModule(torch.nn.Module):
    """A compiled OpenVINO model behind a torch module's interface (float32 NCHW in, logits
    out). The input shape is dynamic: one compilation serves every batch and size."""

    def __init__(self, ov_model: Any, bf16: bool) -> None:
        super().__init__()
        config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        self.precision = "bf16" if bf16 else "fp32"
        self.compiled = core().compile_model(ov_model, "CPU", config)
        # Calling a compiled model reuses one infer request: two threads (the app's two tabs,
        # or predictors sharing this module) must take turns.
        self._lock = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        with self._lock:
            return torch.from_numpy(np.array(self.compiled(arr)[0], dtype=np.float32))


_COMPILED: dict[tuple, OpenVINOModule] = {}


def to_openvino(model: torch.nn.Module, in_channels: int, bf16: bool,
                cache_key: tuple | None = None) -> OpenVINOModule:
    """Convert a (BatchNorm-folded, float32) torch model and compile it for the CPU.

    Converting and compiling take seconds; with a `cache_key` (the checkpoint file's path, size
    and time) a second predictor of the same file in this process reuses the compiled model.
    """
    key = None if cache_key is None else (*cache_key, in_channels, bf16)
    if key is not None and key in _COMPILED:
        return _COMPILED[key]
    model = model.float().eval().to(memory_format=torch.contiguous_format)
    module = OpenVINOModule(convert_model(model, in_channels), bf16)
    if key is not None:
        _COMPILED[key] = module
    return module


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


def export_openvino(loaded: LoadedModel, dst: str | Path) -> Path:
    """Write the model as OpenVINO IR (dst.xml + dst.bin), float32, with its recipe."""
    ov = require_openvino()

    dst = Path(dst)
    if dst.suffix != ".xml":
        raise UserError(f"{dst}: an OpenVINO model is written as a .xml file (with its .bin)")
    model = fold_batchnorm(loaded.model.float().eval())
    ov_model = convert_model(model, int(loaded.recipe.get("in_channels", 3)))
    ov_model.set_rt_info(_meta(loaded), META_KEY)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.partial.xml")
    ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(dst.with_suffix(".bin"))
    tmp.replace(dst)
    return dst


def load_exported(path: str | Path, bf16: bool) -> LoadedModel:
    """A LoadedModel from an exported .onnx or .xml file, compiled with OpenVINO."""
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
    return LoadedModel(info["kind"], f"{info['name']} [{path.suffix[1:]}]", info["recipe"],
                       float(info["threshold"]), OpenVINOModule(ov_model, bf16),
                       list(info.get("notes", [])), info.get("about", ""))
