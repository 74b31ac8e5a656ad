"""Pairing images with masks (and face-parsing label maps) by FFHQ id, and reports of what was
left out. Light on imports (no torch), so the data-preparation scripts start fast.

Images and masks are matched by file stem (the FFHQ id), in flat folders or in FFHQ's layout of
1000-image subfolders (00000/, 01000/, ...), as jpg or png. Broken files are found from their
headers and trailers (truncation), without decoding every image.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from utils.errors import UserError
from utils.data.images import IMAGE_EXTENSIONS, MAX_PIXELS
from utils.data.splits import normalize_id, read_ids

MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif")
SHOW_FIRST = 5
# An image smaller than this (px a side) holds no face any model here can use.
MIN_SIDE = 32


@dataclass
class Pair:
    """One training example: an image, its mask and optionally its face-parsing labels.

    soft: the mask file holds probabilities (grey level / 255, a teacher's pseudo-label), not a
    binary mask."""

    id: str
    image: Path
    mask: Path | None = None
    labels: Path | None = None
    soft: bool = False


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


def ids_of(source: str | Path) -> set[str]:
    """Ids named by `source`: an id-list file, or a folder whose image/mask files name them.

    A folder lets stage 1 leave out every labelled face by pointing at the manual-mask folder.
    """
    path = Path(source)
    if path.is_dir():
        ids = set(index_folder(path, IMAGE_EXTENSIONS + MASK_EXTENSIONS, "id"))
        if not ids:
            raise UserError(f"{path}: the folder holds no image or mask file to take ids from")
        return ids
    if not path.exists():
        raise UserError(f"{path}: neither an id-list file nor a folder")
    return set(read_ids(path))


def upsampling_factor(model_size: int | None, pairs: Sequence[Pair]) -> int:
    """How many times the model's input side is the images' own side (1 unless it is a whole
    multiple of it). A recipe that works on upsampled faces is still scored at the images' size,
    as every other recipe is: its probabilities and masks are max-pooled back by this factor (the
    line-keeping rule of utils/data/masks.py, so the masks equal those made at that size)."""
    if not model_size or not pairs:
        return 1
    sizes = {image_size_of(p.image) for p in pairs}
    if len(sizes) != 1:
        return 1
    (h, w), = sizes
    if h != w or model_size <= h or model_size % h:
        return 1
    return model_size // h


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


def min_image_side(image_size: int | None) -> int:
    """The smallest image side that holds a face at the model's size: a quarter of that size
    (an image upsampled more than 4x has no wrinkle detail to learn from or to score), and at
    least MIN_SIDE px whatever the size."""
    return max(MIN_SIDE, (image_size or 0) // 4)


def check_pair(pair: Pair, min_side: int = 0) -> tuple[str, str] | None:
    """Header-level check of one pair: readable files, not truncated, an image neither smaller
    than `min_side` px a side nor larger than the image loader reads, mask size fits the image.
    The one rule for training, evaluation and the data tools."""
    for path in (pair.image, pair.mask):
        if path is None:
            continue
        problem = _trailer_problem(path)
        if problem:
            return str(path), problem
    try:
        ihw = image_size_of(pair.image)
        if min(ihw) < min_side:
            return str(pair.image), (f"{ihw[1]}x{ihw[0]} px is too small to hold a face at the "
                                     f"model's size (at least {min_side} px a side)")
        if ihw[0] * ihw[1] > MAX_PIXELS:
            return str(pair.image), (f"{ihw[1]}x{ihw[0]} px is too large (at most "
                                     f"{MAX_PIXELS // 1_000_000} megapixels)")
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
               check: bool = True, progress: bool = True, min_side: int = MIN_SIDE
               ) -> PairingReport:
    """Pair images with masks (and label maps) by id; with `check`, leave out broken files and
    images of a size the models cannot use (see check_pair; `min_image_side`)."""
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
        problem = check_pair(pair, min_side) if check else None
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
