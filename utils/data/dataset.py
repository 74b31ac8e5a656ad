"""Pairing images with masks by FFHQ id, and the dataset that feeds training and evaluation.

Images and masks are matched by file stem (the FFHQ id), in flat folders or in FFHQ's layout of
1000-image subfolders (00000/, 01000/, ...), as jpg or png. Images may have any size; masks are in
the 1024 frame and are scaled to the image (shrinking keeps thin lines, see utils.data.masks). The input
recipe (size, normalisation, face masking, texture channel) is a plain dict that checkpoints carry,
so inference prepares a photo exactly as training did.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from utils.data.images import load_image, resize_image
from utils.data.masks import mask_values, read_mask, resize_mask
from utils.data.pairs import Pair, face_mask_from_labels
from utils.data.texture import texture_map
from utils.errors import UserError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


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
        "mask_rule": "utils.data.masks.MASK_RULE",
    }


def to_uint8_input(rgb: np.ndarray, recipe: dict[str, Any],
                   face: np.ndarray | None = None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> model input planes (C, H, W) uint8, not yet normalised.

    Pixels outside `face` are set to 0 first (as in the data set's masked_face_images); the
    texture channel follows when the recipe asks for it. Loader workers stop here: a uint8 batch
    is a quarter of the float one to collate, pin and copy, and `normalize_input` scales it on
    the device.
    """
    if face is not None:
        rgb = rgb * face[:, :, None].astype(np.uint8)
    h, w = rgb.shape[:2]
    out = np.empty((4 if recipe.get("texture") else 3, h, w), dtype=np.uint8)
    out[:3] = rgb.transpose(2, 0, 1)
    if recipe.get("texture"):
        out[3] = texture_map(rgb, face)
    return torch.from_numpy(out)


def input_affine(recipe: dict[str, Any], channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) that map uint8 planes to the model's input range."""
    if recipe["normalize"] == "imagenet":
        scale = 1.0 / (255.0 * IMAGENET_STD)
        shift = -IMAGENET_MEAN / IMAGENET_STD
    else:
        scale, shift = np.full(3, 1 / 127.5, np.float32), np.full(3, -1.0, np.float32)
    if channels == 4:  # the texture map: [0, 255] -> [-1, 1]
        scale, shift = np.append(scale, 1 / 127.5), np.append(shift, -1.0)
    as_planes = (channels, 1, 1)
    return (torch.from_numpy(scale.astype(np.float32)).view(as_planes),
            torch.from_numpy(shift.astype(np.float32)).view(as_planes))


def normalize_input(x: torch.Tensor, recipe: dict[str, Any]) -> torch.Tensor:
    """uint8 planes (..., C, H, W) -> float32 model input, on x's device and in its memory format."""
    scale, shift = input_affine(recipe, x.shape[-3])
    return x.float().mul_(scale.to(x.device)).add_(shift.to(x.device))


def to_input(rgb: np.ndarray, recipe: dict[str, Any],
             face: np.ndarray | None = None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> model input (C, H, W) float32 by the recipe (inference)."""
    return normalize_input(to_uint8_input(rgb, recipe, face), recipe)


def batch_to_device(batch: dict[str, Any], recipe: dict[str, Any], device: torch.device,
                    channels_last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch -> (float input, float target) on `device`, normalised there."""
    x = batch["image"].to(device, non_blocking=True)
    if channels_last:  # on the uint8 planes: a quarter of the bytes to reorder
        x = x.contiguous(memory_format=torch.channels_last)
    y = batch["mask"].to(device, non_blocking=True).float()
    return normalize_input(x, recipe), y


def build_augmentation(aug: dict[str, Any]) -> A.Compose | None:
    """Training augmentation (albumentations 2): masks are only ever moved by nearest neighbour."""
    if not aug["enabled"]:
        return None
    steps = [
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
    ]
    if aug.get("grey", 0.0) > 0:
        # A black-and-white photo arrives as one grey in all three channels; a model that never
        # saw one reads the missing colour as missing wrinkles. Added only when asked, so that the
        # other transforms draw the same random numbers as in runs made before this option.
        steps.append(A.ToGray(num_output_channels=3, method="weighted_average", p=aug["grey"]))
    return A.Compose(steps, mask_interpolation=cv2.INTER_NEAREST)


class WrinkleDataset(Dataset):
    """Image/mask pairs prepared by an input recipe, with optional training augmentation.

    Augmentation is re-seeded per (seed, epoch, index), so a run is repeatable whatever the number
    of loader workers, and a resumed run sees the same samples an uninterrupted one would.

    target "manual": binary masks by the mask rule. target "weak": soft targets in [0, 1], the
    weak-label files' grey levels when pairs have masks, else the texture map of the augmented
    image itself (masked to the face when labels are given): stage 1 of the FFHQ-Wrinkle recipe.

    A sample's "image" is uint8 planes (C, H, W) and a manual "mask" is uint8 0/1: batch_to_device
    turns a batch into the float input and target on the device.

    pool: pairs with soft masks (pseudo-labels of unlabelled faces, self-training); each epoch
    adds `pool_per_epoch` of them (0: all), drawn afresh per (seed, epoch), after the pairs.
    With a pool every target is float, the labelled ones still 0/1.
    """

    def __init__(self, pairs: list[Pair], recipe: dict[str, Any],
                 transform: A.Compose | None = None, seed: int = 0,
                 target: str = "manual", pool: list[Pair] | None = None,
                 pool_per_epoch: int = 0) -> None:
        if target not in ("manual", "weak"):
            raise ValueError(f"target must be manual or weak, got {target!r}")
        self.pairs = pairs
        self.recipe = recipe
        self.transform = transform
        self.seed = seed
        self.target = target
        self.pool = list(pool or [])
        self.pool_n = (len(self.pool) if pool_per_epoch <= 0
                       else min(pool_per_epoch, len(self.pool)))
        self.float_target = target == "weak" or bool(self.pool) or any(p.soft for p in pairs)
        # In shared memory: persistent loader workers hold a copy of the dataset made once,
        # and must still see each new epoch (a plain attribute would stay at its first value).
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        """The epoch whose augmentation stream samples are drawn from."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch (seen by running loader workers too)."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.pairs) + self.pool_n

    def pair(self, index: int) -> Pair:
        """The pair at `index` this epoch: the labelled pairs first, then this epoch's draw from
        the pool (the same in every worker and on resuming, from (seed, epoch) alone)."""
        if index < len(self.pairs):
            return self.pairs[index]
        if self.pool_n == len(self.pool):
            return self.pool[index - len(self.pairs)]
        order = np.random.default_rng((self.seed, self.epoch, 7)).permutation(len(self.pool))
        return self.pool[order[index - len(self.pairs)]]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The image (RGB uint8), mask (bool, or float for soft masks and weak targets) and face
        region (bool or None) at training size."""
        pair = self.pair(index)
        rgb = load_image(pair.image)
        size = self.recipe.get("image_size")
        if size:
            rgb = resize_image(rgb, (size, size))
        hw = rgb.shape[:2]
        mask = None
        if pair.mask is not None and pair.soft:  # probabilities as grey levels, area-averaged
            grey = cv2.imread(str(pair.mask), cv2.IMREAD_GRAYSCALE)
            if grey is None:
                raise UserError(f"{pair.mask}: not a readable soft-label image")
            mask = cv2.resize(grey.astype(np.float32) / 255.0, (hw[1], hw[0]),
                              interpolation=cv2.INTER_AREA)
        elif pair.mask is not None and self.target == "weak":  # grey levels, area-averaged
            grey = mask_values(pair.mask).astype(np.float32)
            grey /= 65535.0 if grey.max() > 255 else 255.0
            mask = cv2.resize(grey, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
        elif pair.mask is not None:
            mask = resize_mask(read_mask(pair.mask), hw)
        face = None
        if pair.labels is not None:
            face = face_mask_from_labels(pair.labels, self.recipe["face_labels"], hw)
        return rgb, mask, face

    def __getitem__(self, index: int) -> dict[str, Any]:
        rgb, mask, face = self.load(index)
        computed = mask is None and self.target == "weak"
        if mask is None:
            mask = np.zeros(rgb.shape[:2], dtype=bool)
        if self.transform is not None:
            self.transform.set_random_seed(
                (self.seed * 1_000_003 + self.epoch * 10_007 + index) % (2**31))
            first = mask.astype(np.float32 if mask.dtype != bool else np.uint8)
            masks = [first] + ([face.astype(np.uint8)] if face is not None else [])
            out = self.transform(image=rgb, masks=masks)
            rgb, mask = out["image"], out["masks"][0]
            mask = mask.astype(bool) if mask.dtype == np.uint8 else mask
            if face is not None:
                face = out["masks"][1].astype(bool)
        if computed:  # the texture map of exactly the image the model sees
            mask = texture_map(rgb, face).astype(np.float32) / 255.0
        x = to_uint8_input(rgb, self.recipe, face)
        # Binary masks stay uint8 (0/1) unless the set mixes in soft ones; batch_to_device makes
        # every target float.
        y = torch.from_numpy(mask[None].astype(np.float32 if self.float_target else np.uint8))
        return {"image": x, "mask": y, "id": self.pair(index).id}
