"""Self-describing checkpoints: written atomically, read with torch.load(weights_only=True).

A checkpoint of ours is a dict of plain types and tensors (no pickled classes), so it loads with
weights_only=True and needs no config file: it names the model recipe (architecture, channels,
classes), the input recipe (size, normalisation, texture, face masking), the decision threshold, the
metrics it reached, the epoch, everything needed to resume (optimizer, scheduler, AMP scaler, RNG
states, history) and the package versions that wrote it.
"""

from __future__ import annotations

import pickle
import platform
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from utils.errors import UserError
from utils.io import atomic_path

FORMAT = "wrinkle-segmentation-checkpoint"
FORMAT_VERSION = 1


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a checkpoint's numbers."""
    import albumentations
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "numpy": str(np.__version__),
        "albumentations": str(albumentations.__version__),
    }


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and ints (safe for weights_only loading)."""
    np_state = np.random.get_state()
    state = {
        "python": torch.tensor(list(random.getstate()[1]), dtype=torch.int64),
        "python_gauss": random.getstate()[2],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() captured."""
    internal = tuple(int(v) for v in state["python"].tolist())
    random.setstate((3, internal, state.get("python_gauss")))
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_dict_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A real copy of the weights on the CPU (not references to the live, still-training tensors)."""
    module = model.module if hasattr(model, "module") else model
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically; `payload` must hold "model", "state_dict" and "preprocess"."""
    for key in ("model", "state_dict", "preprocess"):
        if key not in payload:
            raise ValueError(f"checkpoint payload lacks '{key}'")
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": package_versions()}
    data.update(payload)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


# File signatures of what people give by mistake where a checkpoint belongs.
_SIGNATURES = [(b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG\r\n\x1a\n", "a PNG image"),
               (b"GIF8", "a GIF image"), (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"),
               (b"MM\x00*", "a TIFF image"), (b"%PDF", "a PDF document"),
               (b"\x1f\x8b", "a gzip archive"), (b"\x08", "an ONNX model (protobuf)")]
EXPECTED = ("expected a .pth or .safetensors model written by train.py or export.py, or a "
            "published wrinkle model: see res/cp/README.md")


def file_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is, when that is plainly not a checkpoint."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "a text file"
    return None


def check_checkpoint_file(path: str | Path) -> Path:
    """A checkpoint path that names an existing, non-empty file that is not plainly something
    else (an image, a text file); the error says what was found and what is expected."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a checkpoint file ({EXPECTED})")
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: checkpoint file is empty")
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the checkpoint ({exc.strerror})") from None
    kind = file_kind(head)
    if kind is not None and not (kind.startswith("an ONNX") and path.suffix == ".onnx"):
        raise UserError(f"{path}: this is {kind}, not a checkpoint ({EXPECTED})")
    return path


def read_checkpoint_file(path: str | Path) -> Any:
    """torch.load with weights_only=True; a missing, empty, foreign or unsafe file is a
    UserError that says what the file is."""
    path = check_checkpoint_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notes on foreign files
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        detail = f"it needs {found.group(1)}" if found else "an unsafe pickle"
        raise UserError(f"{path}: refused to load: the file holds Python objects other than "
                        f"tensors and plain values ({detail.strip()})") from None
    except Exception as exc:  # any other failure: not a file torch.load understands
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{path}: not a readable PyTorch checkpoint "
                        f"({type(exc).__name__} {detail})") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load one of this project's checkpoints; anything else gets an error naming what was found."""
    data = read_checkpoint_file(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = (f"a dict with keys {sorted(map(str, data))[:8]}" if isinstance(data, dict)
                 else f"a {type(data).__name__}")
        raise UserError(f"{path}: not a checkpoint of this project (found {found})")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path}: written by a newer version of this project "
                        f"(format {data['format_version']}); update the code")
    return data


def build_model_from_recipe(recipe: dict[str, Any]) -> nn.Module:
    """Instantiate the architecture a checkpoint's model recipe names (random weights)."""
    from unet import build_model

    return build_model(recipe["name"], n_channels=recipe["n_channels"],
                       n_classes=recipe["n_classes"], base_channels=recipe["base_channels"],
                       bilinear=recipe["bilinear"])


def model_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Build the checkpoint's model and load its weights strictly, in eval mode."""
    model = build_model_from_recipe(ckpt["model"])
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise UserError(f"{source}: weights do not fit the model recipe {ckpt['model']} "
                        f"({str(exc).splitlines()[0]})") from None
    return model.eval()
