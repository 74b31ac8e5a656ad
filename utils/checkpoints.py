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


TTA_MODES = ("none", "flip")


class Averaged(nn.Module):
    """Several models, or one model and its mirror image, averaged: the mean wrinkle probability
    of the members (and of each face's left-right flip, flipped back, with `flip`), returned as
    one logit, so every caller treats it as a 1-logit model.

    Faces are nearly symmetric and training flips them, so a face and its mirror are two honest
    views whose errors differ; models trained on different faces (the K fold models) differ more.
    Both views run as one batch and every member in one graph, so each backend (torch, ONNX,
    OpenVINO) runs the whole average as one model.
    """

    def __init__(self, members: list[nn.Module], flip: bool = False) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.flip = flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.flip:
            x = torch.cat([x, torch.flip(x, dims=[3])], dim=0)
        p = None
        for member in self.members:
            logits = member(x).float()
            q = (torch.sigmoid(logits[:, :1]) if logits.shape[1] == 1
                 else torch.softmax(logits, dim=1)[:, 1:2])
            p = q if p is None else p + q
        p = p / len(self.members)
        if self.flip:
            p = (p[:n] + torch.flip(p[n:], dims=[3])) * 0.5
        p = p.clamp(1e-6, 1.0 - 1e-6)
        return torch.log(p) - torch.log1p(-p)


def with_tta(model: nn.Module, tta: str | None) -> nn.Module:
    """The model as served with test-time augmentation `tta` ("none" or "flip"); an ensemble
    keeps its members and only changes its flip."""
    if tta not in (None, *TTA_MODES):
        raise UserError(f"unknown test-time augmentation {tta!r}; known: {', '.join(TTA_MODES)}")
    flip = tta == "flip"
    if isinstance(model, Averaged):
        if len(model.members) == 1 and not flip:
            return model.members[0]
        model.flip = flip
        return model
    return Averaged([model], flip=True) if flip else model


def model_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Build the checkpoint's model and load its weights strictly, in eval mode.

    The model recipe may name an ensemble ("members": K, weights under "members.<i>.") and a
    test-time augmentation ("tta": "flip"); both are served as one Averaged model.
    """
    recipe = ckpt["model"]
    k = int(recipe.get("members", 1))
    sd = ckpt["state_dict"]
    parts = ([sd] if k == 1 else
             [{key[len(f"members.{i}."):]: v for key, v in sd.items()
               if key.startswith(f"members.{i}.")} for i in range(k)])
    models = []
    for part in parts:
        model = build_model_from_recipe(recipe)
        try:
            model.load_state_dict(part, strict=True)
        except RuntimeError as exc:
            raise UserError(f"{source}: weights do not fit the model recipe {recipe} "
                            f"({str(exc).splitlines()[0]})") from None
        models.append(model.eval())
    model = models[0] if k == 1 else Averaged(models)
    return with_tta(model, recipe.get("tta")).eval()


def _serving(recipe: dict[str, Any]) -> dict[str, Any]:
    """What of a recipe changes what a model is fed or returns (not how its masks were made)."""
    return {k: v for k, v in recipe.items() if k != "mask_rule"}


def ensemble_checkpoint(ckpts: list[dict[str, Any]], sources: list[str]) -> dict[str, Any]:
    """One checkpoint that serves the average of several models of one recipe (e.g. the K fold
    models of a cross-validation): the first one's recipe and metadata, every one's weights."""
    first = ckpts[0]
    for c, src in zip(ckpts[1:], sources[1:], strict=True):
        for key in ("model", "preprocess"):
            if _serving(c[key]) != _serving(first[key]):
                raise UserError(f"{src}: its {key} recipe differs from {sources[0]}'s; an "
                                "ensemble needs models of one recipe")
        if int(c["model"].get("members", 1)) != 1:
            raise UserError(f"{src}: already an ensemble")
    # The first member's figures (metrics, out-of-fold report, reference masks) are not the
    # ensemble's: they go.
    out = {k: v for k, v in first.items()
           if k not in ("metrics", "out_of_fold", "fp32_reference", "best_score", "note")}
    out["model"] = dict(first["model"], members=len(ckpts))
    out["state_dict"] = {f"members.{i}.{k}": v for i, c in enumerate(ckpts)
                         for k, v in c["state_dict"].items()}
    splits = [c.get("split") or {} for c in ckpts]
    trained = set().union(*(s.get("train", []) for s in splits))
    # A face is held out from the ensemble only when no member trained on it.
    held = {key: sorted(set.intersection(*(set(s.get(key, [])) for s in splits)) - trained)
            for key in ("val", "test")}
    out["split"] = {"train": sorted(trained), **held, "members": splits}
    out["ensemble_of"] = list(sources)
    return out
