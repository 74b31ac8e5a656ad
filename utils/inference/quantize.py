"""int8 models for the CPU: NNCF's post-training quantisation of the OpenVINO model, done once
per model file and kept in a cache on disk.

Why int8: on an AVX2-only CPU float32 is at the hardware's roofline, and int8 kernels halve the
bundled model's time there (56.7 against 111 ms on an AMD Zen 3; 26.5 against 96 ms on a Zen 4);
its masks agree with float32's on 99.9 % of pixels and its out-of-fold F1 stays within the
noise (docs/results/benchmarks.md, "Every CPU class"). Only the convolutions' inputs and weights are
quantised (NNCF's MIXED preset: symmetric per-channel weights, asymmetric activations) and the
biases corrected; activation ranges are calibrated on aligned faces.

Calibration faces: the three FFHQ faces of examples/ (shipped with the code, never a face any
figure is measured on), each also mirrored, darkened and as a grey copy, 12 inputs in all: the
first call for a model file quantises in a few seconds (NNCF's import included) and every later
one reads the cached int8 model. Models of larger inputs are calibrated on fewer of them
(`example_calibration`): the official U-Net at 1024 px on 3, which takes about 23 s once on 2
cores with AMX. export.py can calibrate on a folder of the user's own aligned
faces instead (`--calibration DIR`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# Bumped when the calibration or the quantisation settings change: older cached files no longer
# match any key and are made again.
RECIPE_VERSION = 2


def nncf_available() -> bool:
    """NNCF is installed (found without importing it: its import takes seconds)."""
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def cache_dir() -> Path:
    """Where quantised models are kept: $WRINKLE_CACHE, else $XDG_CACHE_HOME/wrinkle-seg, else
    ~/.cache/wrinkle-seg."""
    if os.environ.get("WRINKLE_CACHE"):
        return Path(os.environ["WRINKLE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wrinkle-seg"


def calibration_images(folder: str | Path | None = None, limit: int = 300) -> list[np.ndarray]:
    """Aligned faces to calibrate on: the images of `folder` (at most `limit`), or the shipped
    examples with a mirrored, a darker and a grey copy of each."""
    from utils.data.images import IMAGE_EXTENSIONS, load_image

    src = Path(folder) if folder is not None else EXAMPLES
    if not src.is_dir():
        raise UserError(f"{src}: calibration folder not found")
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:limit]
    if not files:
        raise UserError(f"{src}: no images to calibrate the int8 model on")
    faces = [load_image(p) for p in files]
    if folder is not None:
        return faces
    out = []
    for rgb in faces:
        grey = rgb.mean(axis=2, keepdims=True).round().astype(np.uint8).repeat(3, axis=2)
        out += [rgb, rgb[:, ::-1].copy(), (rgb * 0.7).round().astype(np.uint8), grey]
    return out


def example_calibration(recipe: dict[str, Any]) -> list[np.ndarray]:
    """The example faces a model is calibrated on by default: all 12 at 256 px; at larger input
    sizes fewer (at least 3, one of each face and each a different variant), so that the
    statistics pass costs about as many pixels as at 256 px. Calibrating the official U-Net at
    1024 px on all 12 took 62 s on first use on 2 AMX cores (12 float32 passes), on 3 a quarter
    of that."""
    images = calibration_images()  # 4 variants of each face, in face order
    size = int(recipe.get("image_size") or 1024)
    n = max(3, round(len(images) * (256 / size) ** 2))
    if n >= len(images):
        return images
    faces = len(images) // 4  # face i % faces in variant i % 4: never the same pair twice
    return [images[4 * (i % faces) + i % 4] for i in range(n)]


def calibration_inputs(images: Iterable[np.ndarray], recipe: dict[str, Any]) -> list[np.ndarray]:
    """Model inputs (1, C, S, S) float32 of aligned faces, prepared as the predictor prepares
    them (its face region is the landmark-free whole frame here: masking only zeroes pixels)."""
    from utils.data.dataset import to_input
    from utils.data.images import resize_image

    size = int(recipe.get("image_size") or 1024)
    out = []
    for rgb in images:
        if rgb.shape[:2] != (size, size):
            rgb = resize_image(rgb, (size, size))
        out.append(to_input(rgb, recipe, None).unsqueeze(0).numpy())
    return out


def quantize(ov_model: Any, inputs: list[np.ndarray]) -> Any:
    """NNCF post-training quantisation (MIXED preset, fast bias correction) of an OpenVINO
    model, calibrated on `inputs`."""
    import contextlib
    import io
    import logging

    # NNCF's import makes torch warn that there is no CUDA, and its progress bars would land
    # in predict.py's output: both are kept quiet (the caller says what was done and how long).
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import nncf

        logging.getLogger("nncf").setLevel(logging.ERROR)
        return nncf.quantize(ov_model, nncf.Dataset(inputs),
                             preset=nncf.QuantizationPreset.MIXED, subset_size=len(inputs),
                             fast_bias_correction=True)


def _digest(path: Path) -> str:
    """The content of a model file (an IR's .xml with its .bin)."""
    h = hashlib.sha256()
    for part in [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else []):
        with part.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def cache_key(model_file: str | Path, variant: str) -> str:
    """A name for the int8 model of a file's content (and the served variant, e.g. flips), the
    quantisation recipe and the library versions."""
    from importlib.metadata import version

    parts = [_digest(Path(model_file)), variant, str(RECIPE_VERSION), version("nncf"),
             version("openvino")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
