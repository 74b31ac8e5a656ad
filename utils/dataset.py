"""Pairing images with masks by FFHQ id, and the dataset that feeds training and evaluation.

Images and masks are matched by file stem (the FFHQ id), in flat folders or in FFHQ's layout of
1000-image subfolders (00000/, 01000/, ...), as jpg or png. Images may have any size; masks are in
the 1024 frame and are scaled to the image (shrinking keeps thin lines, see utils.masks). The input
recipe (size, normalisation, face masking, texture channel) is a plain dict that checkpoints carry,
so inference prepares a photo exactly as training did.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm import tqdm

from utils.errors import UserError
from utils.images import IMAGE_EXTENSIONS, load_image, resize_image
from utils.masks import read_mask, resize_mask
from utils.splits import normalize_id
from utils.texture import texture_map

MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SHOW_FIRST = 5


@dataclass
class Pair:
    """One training example: an image, its mask and optionally its face-parsing labels."""

    id: str
    image: Path
    mask: Path | None = None
    labels: Path | None = None


@dataclass
class PairingReport:
    """What pairing found: the pairs, and what was left out and why."""

    pairs: list[Pair] = field(default_factory=list)
    images_without_masks: list[str] = field(default_factory=list)
    masks_without_images: list[str] = field(default_factory=list)
    missing_labels: list[str] = field(default_factory=list)
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (file, problem)

    def problems(self) -> list[str]:
        """One line per kind of problem: counts and the first few ids or files."""
        lines = []

        def first(items: list[str]) -> str:
            more = f", ... (+{len(items) - SHOW_FIRST})" if len(items) > SHOW_FIRST else ""
            return ", ".join(items[:SHOW_FIRST]) + more

        if self.images_without_masks:
            lines.append(f"{len(self.images_without_masks)} images have no mask: "
                         f"{first(self.images_without_masks)}")
        if self.masks_without_images:
            lines.append(f"{len(self.masks_without_images)} masks have no image: "
                         f"{first(self.masks_without_images)}")
        if self.missing_labels:
            lines.append(f"{len(self.missing_labels)} pairs have no face-parsing labels: "
                         f"{first(self.missing_labels)}")
        for path, problem in self.bad_files:
            lines.append(f"left out {path}: {problem}")
        return lines


def index_folder(folder: str | Path, extensions: tuple[str, ...], what: str) -> dict[str, Path]:
    """Map FFHQ id -> file for every file under `folder` (recursively) with one of `extensions`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: {what} folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in extensions and path.is_file() and not path.name.startswith("."):
            key = normalize_id(path.stem)
            # Prefer a lossless copy when an id exists as both png and jpg.
            if key not in found or path.suffix.lower() == ".png":
                found[key] = path
    return found


def image_size_of(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None


def mask_fits(image_hw: tuple[int, int], mask_hw: tuple[int, int]) -> bool:
    """A mask fits an image when it has the image's size or the same frame at another scale."""
    if image_hw == mask_hw:
        return True
    return abs(image_hw[0] / image_hw[1] - mask_hw[0] / mask_hw[1]) < 0.01


def _trailer_problem(path: Path) -> str | None:
    """Cheap truncation check: PNG must end with IEND, JPEG with an end-of-image marker."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "the file is empty"
        with path.open("rb") as fh:
            head = fh.read(8)
            fh.seek(max(0, size - 4096))
            tail = fh.read()
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    if head.startswith(b"\x89PNG") and b"IEND" not in tail[-16:]:
        return "the PNG file is truncated (no IEND chunk)"
    if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail.rstrip(b"\x00")[-2:]:
        return "the JPEG file is truncated (no end-of-image marker)"
    return None


def check_pair(pair: Pair) -> tuple[str, str] | None:
    """Header-level check of one pair: readable files, not truncated, mask size fits the image."""
    for path in (pair.image, pair.mask):
        if path is None:
            continue
        problem = _trailer_problem(path)
        if problem:
            return str(path), problem
    try:
        ihw = image_size_of(pair.image)
        if pair.mask is not None:
            mhw = image_size_of(pair.mask)
            if not mask_fits(ihw, mhw):
                return str(pair.mask), (f"mask size {mhw[1]}x{mhw[0]} fits no rule for image "
                                        f"{pair.image.name} of size {ihw[1]}x{ihw[0]} "
                                        "(must be equal or the same frame scaled)")
    except UserError as exc:
        msg = str(exc)
        path, _, problem = msg.partition(": ")
        return path, problem
    return None


def find_pairs(image_dir: str | Path, mask_dir: str | Path | None,
               labels_dir: str | Path | None = None, ids: list[str] | None = None,
               check: bool = True, progress: bool = True) -> PairingReport:
    """Pair images with masks (and label maps) by id; with `check`, leave out broken files."""
    images = index_folder(image_dir, IMAGE_EXTENSIONS, "image")
    masks = index_folder(mask_dir, MASK_EXTENSIONS, "mask") if mask_dir is not None else None
    labels = index_folder(labels_dir, (".npy",), "face-parsing label") if labels_dir else None
    report = PairingReport()
    wanted = set(ids) if ids is not None else None
    if masks is not None:
        report.images_without_masks = sorted(
            i for i in images if i not in masks and (wanted is None or i in wanted))
        report.masks_without_images = sorted(
            i for i in masks if i not in images and (wanted is None or i in wanted))
    candidates = []
    for key in sorted(images):
        if wanted is not None and key not in wanted:
            continue
        if masks is not None and key not in masks:
            continue
        label_path = None
        if labels is not None:
            label_path = labels.get(key)
            if label_path is None:
                report.missing_labels.append(key)
                continue
        candidates.append(Pair(key, images[key], masks[key] if masks else None, label_path))
    if wanted is not None:
        missing = sorted(wanted - set(images))
        if missing:
            report.images_without_masks += []  # ids asked for but absent are reported below
            report.bad_files += [(i, "id in the split has no image") for i in missing[:SHOW_FIRST]]
            if len(missing) > SHOW_FIRST:
                report.bad_files.append((f"... {len(missing) - SHOW_FIRST} more ids",
                                         "no image"))
    for pair in tqdm(candidates, desc="checking pairs", disable=not progress or len(candidates) < 500,
                     file=sys.stderr):
        problem = check_pair(pair) if check else None
        if problem:
            report.bad_files.append(problem)
        else:
            report.pairs.append(pair)
    return report


def resolve_pairs(report: PairingReport, strict: bool, where: str,
                  log: Callable[[str], None] = print) -> list[Pair]:
    """Print the report's problems; fail when `strict` and there are any, or when no pair is left."""
    problems = report.problems()
    for line in problems:
        log(f"warning: {line}")
    if strict and problems:
        raise UserError(f"{len(problems)} data problems in {where} and --strict is set "
                        f"(first: {problems[0]})")
    if not report.pairs:
        raise UserError(f"no usable image/mask pairs in {where}")
    return report.pairs


def face_mask_from_labels(path: Path, keep: list[int], size: tuple[int, int]) -> np.ndarray:
    """Face region (bool, at `size`) from a BiSeNet label map (.npy, 2-D, label ids)."""
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the label map ({exc})") from None
    if labels.ndim != 2:
        raise UserError(f"{path}: label map must be 2-D, got shape {labels.shape}")
    face = np.isin(labels, keep).astype(np.uint8)
    h, w = size
    return cv2.resize(face, (w, h), interpolation=cv2.INTER_NEAREST) > 0


def input_recipe(cfg: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing recipe a checkpoint carries, from a resolved config."""
    data = cfg["data"]
    return {
        "image_size": data["image_size"],
        "normalize": data["normalize"],
        "texture": bool(data["texture"]),
        "face_labels": list(data["face_labels"]),
        "face_masking": data["face_labels_dir"] is not None,
        "in_channels": 4 if data["texture"] else 3,
        "mask_rule": "utils.masks.MASK_RULE",
    }


def to_input(rgb: np.ndarray, recipe: dict[str, Any],
             face: np.ndarray | None = None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> model input (C, H, W) float32 by the recipe.

    Pixels outside `face` are set to 0 first (as in the data set's masked_face_images), then the
    image is normalised; the texture channel, when the recipe asks for it, is scaled to [-1, 1].
    """
    if face is not None:
        rgb = rgb * face[:, :, None].astype(np.uint8)
    x = rgb.astype(np.float32)
    if recipe["normalize"] == "imagenet":
        x = (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    else:
        x = x / 127.5 - 1.0
    if recipe.get("texture"):
        tex = texture_map(rgb, face).astype(np.float32) / 127.5 - 1.0
        x = np.concatenate([x, tex[:, :, None]], axis=2)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def build_augmentation(aug: dict[str, Any]) -> A.Compose | None:
    """Training augmentation (albumentations 2): masks are only ever moved by nearest neighbour."""
    if not aug["enabled"]:
        return None
    return A.Compose([
        A.HorizontalFlip(p=aug["hflip"]),
        A.Affine(scale=(1 - aug["scale"], 1 + aug["scale"]),
                 translate_percent=(-aug["shift"], aug["shift"]),
                 rotate=(-aug["rotate"], aug["rotate"]),
                 interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=aug["affine"]),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15,
                                   p=aug["brightness_contrast"]),
        A.OneOf([
            A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.3, 0.8)),
            A.GaussNoise(std_range=(0.01, 0.03)),
        ], p=aug["blur_noise"]),
    ], mask_interpolation=cv2.INTER_NEAREST)


class WrinkleDataset(Dataset):
    """Image/mask pairs prepared by an input recipe, with optional training augmentation.

    Augmentation is re-seeded per (seed, epoch, index), so a run is repeatable whatever the number
    of loader workers, and a resumed run sees the same samples an uninterrupted one would.
    """

    def __init__(self, pairs: list[Pair], recipe: dict[str, Any],
                 transform: A.Compose | None = None, seed: int = 0) -> None:
        self.pairs = pairs
        self.recipe = recipe
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The image (RGB uint8), mask (bool) and face region (bool or None) at training size."""
        pair = self.pairs[index]
        rgb = load_image(pair.image)
        size = self.recipe.get("image_size")
        if size:
            rgb = resize_image(rgb, (size, size))
        hw = rgb.shape[:2]
        mask = resize_mask(read_mask(pair.mask), hw) if pair.mask is not None else None
        face = None
        if pair.labels is not None:
            face = face_mask_from_labels(pair.labels, self.recipe["face_labels"], hw)
        return rgb, mask, face

    def __getitem__(self, index: int) -> dict[str, Any]:
        rgb, mask, face = self.load(index)
        if mask is None:
            mask = np.zeros(rgb.shape[:2], dtype=bool)
        if self.transform is not None:
            self.transform.set_random_seed(
                (self.seed * 1_000_003 + self.epoch * 10_007 + index) % (2**31))
            masks = [mask.astype(np.uint8)] + ([face.astype(np.uint8)] if face is not None else [])
            out = self.transform(image=rgb, masks=masks)
            rgb, mask = out["image"], out["masks"][0].astype(bool)
            if face is not None:
                face = out["masks"][1].astype(bool)
        x = to_input(rgb, self.recipe, face)
        y = torch.from_numpy(mask[None].astype(np.float32))
        return {"image": x, "mask": y, "id": self.pairs[index].id}
