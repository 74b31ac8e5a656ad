"""Model loading: this project's checkpoints and the third-party ones, recognised by their content.

`load_any_checkpoint` reads a file and says what it is:

- this project's own self-describing checkpoints (.pth, or .safetensors with the recipe in the
  file's metadata);
- the FFHQ-Wrinkle authors' official U-Net (`stage2_unet.pth`: key "model" or a bare state dict,
  names possibly prefixed "module."; 4 channels, masked RGB + texture map in [-1, 1]; 2 classes;
  1024 px);
- the original wrinkle repo's ResNet-50 U-Net (key "model_state_dict"; RGB, ImageNet normalisation;
  1 logit; 512 px);
- other classic U-Net state dicts (channels, classes and width read off the weights);
- no checkpoint at all: the texture-map baseline, which needs no training and says so.

Files are read with torch.load(weights_only=True) or safetensors: never unpickled unsafely. Also
here: saving as .safetensors and BatchNorm folding (what every backend runs first).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils.checkpoints import (
    FORMAT,
    check_checkpoint_file,
    model_from_checkpoint,
    read_checkpoint_file,
)
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = REPO / "res" / "cp" / "default_ffhq256.pth"
# The bundled frame model: a width-16 student of the bundled model, for clips and the live
# webcam on two cores (configs/frames_ffhq256.yaml, MODEL_CARD.md "The frame model").
FRAME_CHECKPOINT = REPO / "res" / "cp" / "frames_ffhq256.pth"

OFFICIAL_RECIPE = {"image_size": 1024, "normalize": "symmetric", "texture": True,
                   "face_labels": [1, 10], "face_masking": True, "in_channels": 4}
SEED_RECIPE = {"image_size": 512, "normalize": "imagenet", "texture": False,
               "face_labels": [1, 10], "face_masking": False, "in_channels": 3}
# The texture-map baseline: the map itself is the wrinkle score. Its threshold was chosen on the
# validation ids of the bundled model (docs/results/recipes.md).
BASELINE_RECIPE = {"image_size": 256, "normalize": "symmetric", "texture": True,
                   "face_labels": [1, 10], "face_masking": False, "in_channels": 4}
BASELINE_THRESHOLD = 0.25


class TextureBaseline(torch.nn.Module):
    """The texture map as a wrinkle score: no training, the floor any model must beat.

    It reads the texture channel (the 4th input channel, in [-1, 1]) and returns it as a logit of
    the probability (t + 1) / 2, so evaluation and inference treat it like any 1-logit model.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = ((x[:, 3:4].float() + 1.0) / 2.0).clamp(1e-6, 1 - 1e-6)
        return torch.log(p) - torch.log1p(-p)


@dataclass
class LoadedModel:
    """What a checkpoint turned out to be, and how to run it."""

    kind: str  # ours | official_unet | seed_resnet50 | classic_unet | texture_baseline
    name: str
    recipe: dict[str, Any]
    threshold: float
    model: torch.nn.Module | None
    notes: list[str] = field(default_factory=list)
    about: str = ""  # what it is and what it was trained on, in plain words


def _strip_module(sd: dict[str, Any]) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = sorted(map(str, obj))
        more = f" (+{len(keys) - 6} more)" if len(keys) > 6 else ""
        return f"a dict with keys {', '.join(keys[:6])}{more}"
    return f"a {type(obj).__name__}"


def classify_state_dict(sd: dict[str, torch.Tensor], source: str) -> LoadedModel:
    """Recognise a bare state dict by its parameter names and shapes, and build its model."""
    from unet import ResNetUNet, UNet

    sd = _strip_module(sd)
    if "encoder1.0.conv1.weight" in sd and "up5.up.weight" in sd:
        n_classes = sd["outc.conv.weight"].shape[0]
        n_channels = sd["input_layer.0.weight"].shape[1]
        model = ResNetUNet(n_classes=n_classes, n_channels=n_channels)
        kind, name, recipe, thr = ("seed_resnet50", "ResNet-50 U-Net (original wrinkle repo)",
                                   dict(SEED_RECIPE), 0.5)
    elif "inc.double_conv.0.weight" in sd and "outc.conv.weight" in sd:
        base, n_channels = sd["inc.double_conv.0.weight"].shape[:2]
        n_classes = sd["outc.conv.weight"].shape[0]
        bilinear = "up1.up.weight" not in sd
        model = UNet(n_channels, n_classes, bilinear=bilinear, base_channels=base)
        if n_channels == 4 and n_classes == 2 and bilinear and base == 64:
            kind, name, recipe = "official_unet", "FFHQ-Wrinkle official U-Net", dict(OFFICIAL_RECIPE)
        else:
            kind = "classic_unet"
            name = f"U-Net ({n_channels} ch in, {n_classes} out, width {base})"
            recipe = {**SEED_RECIPE, "normalize": "symmetric", "in_channels": n_channels,
                      "texture": n_channels == 4}
        thr = 0.5
    else:
        raise UserError(f"{source}: not a wrinkle model this toolkit knows (found "
                        f"{_describe(sd)}); expected this project's checkpoint, the FFHQ-Wrinkle "
                        "U-Net or the ResNet-50 wrinkle U-Net")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{source}: looks like a {name} but its weights do not fit "
                        f"({str(exc).splitlines()[0]})") from None
    loaded = LoadedModel(kind, name, recipe, thr, model.eval(), about={
        "official_unet": "the FFHQ-Wrinkle authors' U-Net (trained on their 1,000 manual and "
                         "50,000 weak masks), on 1024 px aligned faces",
        "seed_resnet50": "the original wrinkle repository's ResNet-50 U-Net, on 512 px faces",
    }.get(kind, "a U-Net of unknown training (its file stores no recipe)"))
    if kind == "classic_unet":
        loaded.notes.append("input recipe not stored in the file: assumed RGB in [-1, 1] at 512 px")
    return loaded


def load_any_checkpoint(path: str | Path) -> LoadedModel:
    """Load a checkpoint of any known kind (see the module docstring)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    obj = read_checkpoint_file(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _ours(obj, path)
    if isinstance(obj, dict) and _is_state_dict(obj.get("model_state_dict")):
        return classify_state_dict(obj["model_state_dict"], str(path))
    if isinstance(obj, dict) and _is_state_dict(obj.get("model")):
        return classify_state_dict(obj["model"], str(path))
    if isinstance(obj, dict) and _is_state_dict(obj.get("state_dict")):
        return classify_state_dict(obj["state_dict"], str(path))
    if _is_state_dict(obj):
        return classify_state_dict(obj, str(path))
    raise UserError(f"{path}: not a wrinkle model checkpoint (found {_describe(obj)})")


def _ours(ckpt: dict[str, Any], path: Path) -> LoadedModel:
    model = model_from_checkpoint(ckpt, str(path))
    m = ckpt["model"]
    metrics = ckpt.get("metrics") or {}
    oof = ckpt.get("out_of_fold") or {}
    f1 = f", val F1 {metrics['f1']:.3f}" if "f1" in metrics else ""
    if oof:
        f1 = f", out-of-fold F1 {oof['f1_at_threshold']:.3f}"
    size = ckpt["preprocess"].get("image_size") or "native"
    name = f"{path.stem} ({m['name']}, width {m['base_channels']}, {size} px{f1})"
    split = ckpt.get("split") or {}
    arch = "U-Net" if m["name"] == "unet" else m["name"]
    members = int(m.get("members", 1))
    if members > 1:
        name = name.replace(f"({m['name']},", f"({members} x {m['name']},", 1)
        about = (f"the average of {members} {arch}s (width {m['base_channels']}) that work on "
                 f"{size} px aligned faces")
    else:
        about = f"a {arch} (width {m['base_channels']}) that works on {size} px aligned faces"
    name = named_for_tta(name, m.get("tta"))
    if m.get("tta") == "flip":
        about += ", each face averaged with its mirror image"
    if split.get("train"):
        about += (f", trained on {len(split['train'])} FFHQ faces with hand-drawn wrinkle "
                  "masks")
    if oof:
        about += (f"; its recipe scores F1 {oof['f1_at_threshold']:.3f} on faces the models "
                  f"never saw ({oof['k']}-fold cross-validation over {oof['faces']} faces)")
    elif "f1" in metrics and split.get("val"):
        about += (f"; validation F1 {metrics['f1']:.3f} on {len(split['val'])} faces it did "
                  "not train on")
    return LoadedModel("ours", name, dict(ckpt["preprocess"]), float(ckpt.get("threshold", 0.5)),
                       model, about=about)


FLIPS = " + flips"


def named_for_tta(name: str, tta: str | None) -> str:
    """A model's name that says whether each face is averaged with its mirror image, so that
    every output naming the model (the CSV's model column, the app) tells the two apart."""
    base = name.removesuffix(FLIPS)
    return base + FLIPS if tta == "flip" else base


def _load_safetensors(path: Path) -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_checkpoint_file(path)
    try:
        sd = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
    if "wrinkle_checkpoint" in meta:
        info = json.loads(meta["wrinkle_checkpoint"])
        return _ours(info | {"state_dict": sd, "format": FORMAT}, path)
    return classify_state_dict(sd, str(path))


def save_safetensors(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write one of our checkpoints as .safetensors: weights, with the recipe in the metadata."""
    from safetensors.torch import save_file

    from utils.io import write_with

    info = {k: ckpt[k] for k in ("model", "preprocess", "threshold", "metrics", "epoch",
                                 "versions") if k in ckpt}
    tensors = {k: v.contiguous() for k, v in ckpt["state_dict"].items()}
    write_with(path, lambda tmp: save_file(tensors, str(tmp),
                                           metadata={"wrinkle_checkpoint": json.dumps(info)}))


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every BatchNorm that follows a convolution in a Sequential into that convolution.

    Exact in eval mode (the same affine map, one pass over memory fewer); with channels_last and
    bf16 autocast it makes the official U-Net at 1024 px 2.7x faster than plain fp32 eager on a
    2-core AVX-512 CPU (bench/bench_infer.py).
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for mod in model.modules():
        if isinstance(mod, nn.Sequential):
            names = list(mod._modules)
            for a, b in itertools.pairwise(names):
                conv, bn = mod._modules[a], mod._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    mod._modules[a] = fuse_conv_bn_eval(conv, bn)
                    mod._modules[b] = nn.Identity()
    return model
