"""The one predictor, used by predict.py, app.py and the benchmarks.

`WrinklePredictor` loads any checkpoint it is given and recognises its kind:

- this project's own self-describing checkpoints (.pth, or .safetensors with the recipe in the
  file's metadata);
- the FFHQ-Wrinkle authors' official U-Net (`stage2_unet.pth`: key "model" or a bare state dict,
  names possibly prefixed "module."; 4 channels, masked RGB + texture map in [-1, 1]; 2 classes;
  1024 px);
- the original wrinkle repo's ResNet-50 U-Net (key "model_state_dict"; RGB, ImageNet normalisation;
  1 logit; 512 px);
- other classic U-Net state dicts (channels, classes and width read off the weights);
- no checkpoint at all: the texture-map baseline, which needs no training and says so.

Files are read with torch.load(weights_only=True) or safetensors: never unpickled unsafely. The
predictor applies the checkpoint's recipe (size, normalisation, face masking, texture channel),
runs the model on the fast path (inference mode, channels_last, bf16 autocast where the device has
it), and returns a probability map and mask at the photo's own size with wrinkle statistics.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from utils.checkpoints import FORMAT, model_from_checkpoint, read_checkpoint_file
from utils.dataset import to_input
from utils.errors import UserError
from utils.images import resize_image
from utils.masks import resize_mask
from utils.runtime import amp_dtype, autocast, logits_to_probs, resolve_device

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "res" / "cp" / "default_ffhq256.pth"

OFFICIAL_RECIPE = {"image_size": 1024, "normalize": "symmetric", "texture": True,
                   "face_labels": [1, 10], "face_masking": True, "in_channels": 4}
SEED_RECIPE = {"image_size": 512, "normalize": "imagenet", "texture": False,
               "face_labels": [1, 10], "face_masking": False, "in_channels": 3}
# The texture-map baseline: the map itself is the wrinkle score. Its threshold was chosen on the
# validation ids of the bundled model (see README, results table).
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


# Face regions of an FFHQ-aligned face, as fractions (x0, x1, y0, y1) of the aligned frame.
# The first region that contains a pixel claims it.
REGIONS: list[tuple[str, list[tuple[float, float, float, float]]]] = [
    ("between the brows", [(0.43, 0.57, 0.36, 0.47)]),
    ("forehead", [(0.28, 0.72, 0.16, 0.40)]),
    ("around the eyes", [(0.16, 0.43, 0.40, 0.56), (0.57, 0.84, 0.40, 0.56)]),
    ("nasolabial folds", [(0.34, 0.46, 0.56, 0.76), (0.54, 0.66, 0.56, 0.76)]),
    ("cheeks", [(0.16, 0.34, 0.56, 0.80), (0.66, 0.84, 0.56, 0.80)]),
]


@dataclass
class LoadedModel:
    """What a checkpoint turned out to be, and how to run it."""

    kind: str  # ours | official_unet | seed_resnet50 | classic_unet | texture_baseline
    name: str
    recipe: dict[str, Any]
    threshold: float
    model: torch.nn.Module | None
    notes: list[str] = field(default_factory=list)


@dataclass
class WrinkleResult:
    """A prediction at the photo's own size, with its statistics."""

    probs: np.ndarray  # float32 (H, W) in [0, 1]
    mask: np.ndarray  # bool (H, W)
    face: np.ndarray | None  # bool (H, W): the region the statistics are measured in
    threshold: float
    stats: dict[str, Any]
    notes: list[str] = field(default_factory=list)


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
    loaded = LoadedModel(kind, name, recipe, thr, model.eval())
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
    f1 = f", val F1 {metrics['f1']:.3f}" if "f1" in metrics else ""
    name = (f"{path.stem} ({m['name']}, width {m['base_channels']}, "
            f"{ckpt['preprocess'].get('image_size') or 'native'} px{f1})")
    return LoadedModel("ours", name, dict(ckpt["preprocess"]), float(ckpt.get("threshold", 0.5)),
                       model)


def _load_safetensors(path: Path) -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
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


def region_masks(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Bool masks of the named face regions for an FFHQ-aligned frame of `shape`."""
    h, w = shape
    taken = np.zeros(shape, bool)
    out = {}
    for name, boxes in REGIONS:
        m = np.zeros(shape, bool)
        for x0, x1, y0, y1 in boxes:
            m[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)] = True
        m &= ~taken
        taken |= m
        out[name] = m
    return out


def skeleton_length(mask: np.ndarray) -> int:
    """Pixel length of a mask's centre lines (morphological skeleton), an estimate of line length."""
    img = mask.astype(np.uint8)
    skel = np.zeros_like(img)
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    while img.any():
        eroded = cv2.erode(img, kernel)
        skel |= img - cv2.dilate(eroded, kernel)
        img = eroded
    return int(skel.sum())


def wrinkle_stats(mask: np.ndarray, face: np.ndarray | None) -> dict[str, Any]:
    """Share of the face that is wrinkle, and per region the area, line count and length."""
    h, w = mask.shape
    face = np.ones_like(mask) if face is None else face
    inside = mask & face
    min_px = max(3, round(6 * (h * w) / (512 * 512)))  # ignore specks (scaled with size)
    regions = []
    for name, region in region_masks((h, w)).items():
        m = inside & region
        n, _, st, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        lines = int((st[1:, cv2.CC_STAT_AREA] >= min_px).sum()) if n > 1 else 0
        area = int((region & face).sum())
        regions.append({"region": name, "wrinkle_px": int(m.sum()),
                        "share": float(m.sum() / area) if area else 0.0,
                        "lines": lines, "length_px": skeleton_length(m)})
    face_px = int(face.sum())
    return {"face_px": face_px, "wrinkle_px": int(inside.sum()),
            "wrinkle_share": float(inside.sum() / face_px) if face_px else 0.0,
            "regions": regions}


class NoFaceError(UserError):
    """No face was found in a photo and the caller asked to skip such photos."""


@dataclass
class _Work:
    """One photo on its way through the predictor: the frame the model sees and how to go back."""

    photo_shape: tuple[int, int]
    image: np.ndarray  # the face crop, or the (scaled) photo itself
    face: np.ndarray | None  # the face region in `image`
    transform: Any  # utils.face_region.FaceTransform, or None when not cropped
    notes: list[str]


class WrinklePredictor:
    """Load a wrinkle model once; predict probability maps, masks and statistics for photos.

    face: "auto" finds the face region (the BiSeNet parser when res/cp/79999_iter.pth is present,
    else OpenCV's Haar cascades or the FFHQ template, see utils.face_region); "none" uses the
    whole image. crop: "auto" crops photos that are not FFHQ-aligned (not square 256..1024 px) to
    an FFHQ-like face crop and maps the prediction back; "always" and "never" force it.
    no_face: what to do with a photo without a face when cropping: "whole" image, or "skip"
    (NoFaceError).
    """

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto",
                 precision: str = "auto", max_side: int = 4096, face: str = "auto",
                 crop: str = "auto", no_face: str = "whole", parser: Any = None) -> None:
        if face not in ("auto", "none") or crop not in ("auto", "always", "never") or \
                no_face not in ("whole", "skip"):
            raise ValueError(f"bad face/crop/no_face option: {face!r}, {crop!r}, {no_face!r}")
        self.device = resolve_device(device)
        if checkpoint is None:
            self.loaded = LoadedModel("texture_baseline", "texture-map baseline (no trained model)",
                                      dict(BASELINE_RECIPE), BASELINE_THRESHOLD, TextureBaseline(),
                                      ["no wrinkle weights: showing the texture-map baseline"])
        else:
            self.loaded = load_any_checkpoint(checkpoint)
        self.checkpoint = checkpoint
        self.max_side = max_side
        self.face_mode, self.crop_mode, self.no_face = face, crop, no_face
        self.parser = parser
        if parser is None and face == "auto":
            from utils.face_region import _default_parser

            self.parser = _default_parser()
        self.dtype = None if precision == "fp32" else amp_dtype(
            self.device, "bf16" if precision == "bf16" else "auto")
        if self.loaded.model is not None:
            model = fold_batchnorm(self.loaded.model.eval())
            self.loaded.model = model.to(self.device).to(memory_format=torch.channels_last)

    @classmethod
    def default(cls, **kwargs: Any) -> WrinklePredictor:
        """The bundled model if it is present, else the texture-map baseline."""
        ckpt = DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None
        return cls(ckpt, **kwargs)

    @classmethod
    def from_choice(cls, checkpoint: str | Path | None, baseline: bool,
                    **kwargs: Any) -> WrinklePredictor:
        """What the scripts' --checkpoint / --baseline flags ask for (default: the bundled model),
        with a line on stdout naming the model, the face region and any fallback."""
        if baseline:
            predictor = cls(None, **kwargs)
        elif checkpoint:
            predictor = cls(checkpoint, **kwargs)
        else:
            predictor = cls.default(**kwargs)
        print(f"model: {predictor.description}\nface region: {predictor.face_description}")
        for note in predictor.loaded.notes:
            print(f"note: {note}")
        return predictor

    @property
    def is_baseline(self) -> bool:
        return self.loaded.kind == "texture_baseline"

    @property
    def description(self) -> str:
        if self.is_baseline:
            return self.loaded.name
        prec = "bf16" if self.dtype == torch.bfloat16 else "fp16" if self.dtype else "fp32"
        return f"{self.loaded.name} on {self.device.type} ({prec})"

    @property
    def face_description(self) -> str:
        """Which face region is in use, for the app's model line and the CSV."""
        from utils.face_region import haar_available

        if self.face_mode == "none":
            return "whole image (face region off)"
        if self.parser is not None:
            return getattr(self.parser, "description", "BiSeNet face parser")
        if haar_available():
            return ("fallback: OpenCV Haar face box with an elliptical skin region "
                    "(no face-parser weights at res/cp/79999_iter.pth)")
        return "fallback: FFHQ template ellipse (no face-parser weights, no Haar cascades)"

    @property
    def face_fallback(self) -> bool:
        """True when the face region is not the face parser's (the app shows a warning)."""
        return self.parser is None

    @property
    def threshold(self) -> float:
        return self.loaded.threshold

    def _prepare(self, rgb: np.ndarray) -> _Work:
        """Check and scale the photo, crop it to the face where asked, find the face region."""
        from utils.face_region import crop_face, face_region, is_ffhq_aligned

        notes = []
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise UserError(f"expected an RGB uint8 image, got shape {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        if min(h, w) < 16:
            raise UserError(f"image of {w}x{h} px is too small (at least 16 px a side)")
        if max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            rgb = resize_image(rgb, (max(1, round(h * s)), max(1, round(w * s))))
            notes.append(f"scaled down from {w}x{h} to {rgb.shape[1]}x{rgb.shape[0]}")
        image, transform = rgb, None
        if self.crop_mode == "always" or (self.crop_mode == "auto" and not is_ffhq_aligned(rgb.shape)):
            fc = crop_face(rgb, parser=self.parser, use_default_parser=False)
            if fc.found:
                image, transform = fc.image, fc.transform
                notes.append(f"cropped to the face ({fc.source}): {fc.transform.side} px square "
                             f"at ({fc.transform.x0}, {fc.transform.y0})")
                notes += fc.notes
            elif self.no_face == "skip":
                raise NoFaceError("no face found in the photo (skipped as asked)")
            else:
                notes.append("no face found: the whole photo is used")
        face = None
        if self.face_mode == "auto":
            region = face_region(image, self.parser, use_default_parser=False)
            face = region.mask
            if region.source == "none":
                notes += region.notes
        return _Work(rgb.shape[:2], image, face, transform, notes)

    @torch.inference_mode()
    def _probabilities(self, works: list[_Work]) -> list[np.ndarray]:
        """Wrinkle probability maps in each work frame (batched where input shapes agree)."""
        size = self.loaded.recipe.get("image_size")
        recipe = self.loaded.recipe
        batch = []
        for wk in works:
            image, face = wk.image, wk.face
            if size and image.shape[:2] != (size, size):
                image = resize_image(image, (size, size))
                if face is not None:
                    face = resize_mask(face, (size, size))
            batch.append(to_input(image, recipe, face if recipe.get("face_masking") else None))
        groups = [batch] if len({tuple(x.shape) for x in batch}) == 1 else [[x] for x in batch]
        probs: list[np.ndarray] = []
        for g in groups:
            x = torch.stack(g).to(self.device).contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.dtype):
                logits = self.loaded.model(x)
            probs += list(logits_to_probs(logits).cpu().numpy())
        out = []
        for wk, p in zip(works, probs, strict=True):
            h, w = wk.image.shape[:2]
            out.append(np.clip(cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1))
        return out

    def predict(self, rgb: np.ndarray, threshold: float | None = None) -> WrinkleResult:
        """Predict one RGB uint8 photo."""
        return self.predict_batch([rgb], threshold)[0]

    def predict_batch(self, rgbs: list[np.ndarray],
                      threshold: float | None = None) -> list[WrinkleResult]:
        """Predict several photos: maps and masks at each photo's size (after any scaling down),
        statistics measured in the face frame."""
        thr = self.threshold if threshold is None else float(threshold)
        if not 0.0 < thr < 1.0:
            raise UserError(f"threshold must be between 0 and 1, got {thr}")
        works = [self._prepare(r) for r in rgbs]
        results = []
        for wk, p in zip(works, self._probabilities(works), strict=True):
            stats = wrinkle_stats(p > thr, wk.face)
            face = wk.face
            if wk.transform is not None:
                p = wk.transform.paste_back(p.astype(np.float32), wk.photo_shape)
                if face is not None:
                    face = wk.transform.paste_back(face, wk.photo_shape, fill=False)
            results.append(WrinkleResult(p.astype(np.float32), p > thr, face, thr, stats,
                                         list(self.loaded.notes) + wk.notes))
        return results
