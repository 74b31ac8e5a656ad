"""Pairing by FFHQ id, reports of what was left out, and the dataset's samples on real faces."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from tests.conftest import IMAGES, MASKS, labelled_ids, link_pairs, needs_data
from utils.config import load_config
from utils.data.dataset import (
    WrinkleDataset,
    batch_to_device,
    build_augmentation,
    input_recipe,
    normalize_input,
    to_input,
)
from utils.data.images import load_image
from utils.data.masks import read_mask, resize_mask
from utils.data.pairs import find_pairs, resolve_pairs
from utils.data.texture import texture_map
from utils.errors import UserError

pytestmark = needs_data


def test_pairs_in_flat_and_ffhq_subfolder_layouts(tmp_path):
    ids = labelled_ids(6)
    flat = find_pairs(*link_pairs(tmp_path / "flat", ids), progress=False)
    nested = find_pairs(*link_pairs(tmp_path / "nested", ids, nested=True), progress=False)
    assert [p.id for p in flat.pairs] == [p.id for p in nested.pairs] == ids
    assert any(p.image.parent.name.isdigit() for p in nested.pairs)


def test_unpaired_and_broken_files_are_reported_and_left_out(tmp_path):
    ids = labelled_ids(8)
    img_dir, mask_dir = link_pairs(tmp_path, ids)
    (img_dir / f"{ids[0]}.jpg").unlink()                      # mask without image
    (mask_dir / f"{ids[1]}.png").unlink()                     # image without mask
    truncated = img_dir / f"{ids[2]}.jpg"
    data = truncated.read_bytes()
    truncated.unlink()
    truncated.write_bytes(data[: len(data) // 2])             # truncated JPEG
    wrong = mask_dir / f"{ids[3]}.png"
    wrong.unlink()
    Image.fromarray(np.zeros((700, 1000), np.uint8)).save(wrong)  # fits no size rule
    rep = find_pairs(img_dir, mask_dir, progress=False)
    assert [p.id for p in rep.pairs] == ids[4:]
    assert rep.masks_without_images == [ids[0]] and rep.images_without_masks == [ids[1]]
    problems = "\n".join(rep.problems())
    assert f"{ids[2]}.jpg: the JPEG file is truncated" in problems.replace("left out ", "") or \
        (f"{ids[2]}.jpg" in problems and "truncated" in problems)
    assert f"{ids[3]}.png" in problems and "fits no rule" in problems
    logged = []
    assert len(resolve_pairs(rep, strict=False, where="x", log=logged.append)) == 4
    assert len(logged) == 4
    with pytest.raises(UserError, match="--strict"):
        resolve_pairs(rep, strict=True, where="x", log=lambda s: None)


def test_missing_folder_and_no_pairs(tmp_path):
    with pytest.raises(UserError, match="nowhere: image folder not found"):
        find_pairs(tmp_path / "nowhere", MASKS)
    (tmp_path / "empty").mkdir()
    rep = find_pairs(tmp_path / "empty", MASKS, progress=False)
    with pytest.raises(UserError, match="no usable image/mask pairs"):
        resolve_pairs(rep, strict=False, where="empty", log=lambda s: None)


def test_samples_are_image_and_line_preserving_mask():
    cfg = load_config()
    rep = find_pairs(IMAGES, MASKS, ids=labelled_ids(3), progress=False)
    ds = WrinkleDataset(rep.pairs, input_recipe(cfg))
    s = ds[0]
    # Workers hand over uint8 planes and a 0/1 uint8 mask; the device side makes them float.
    assert s["image"].shape == (3, 256, 256) and s["image"].dtype == torch.uint8
    assert s["mask"].dtype == torch.uint8
    truth = resize_mask(read_mask(MASKS / f"{s['id']}.png"), (256, 256))
    assert torch.equal(s["mask"][0].bool(), torch.from_numpy(truth))
    rgb = load_image(IMAGES / f"{s['id']}.jpg")
    assert torch.equal(s["image"], torch.from_numpy(rgb).permute(2, 0, 1))
    batch = default_collate([s, ds[1]])
    x, y = batch_to_device(batch, ds.recipe, torch.device("cpu"))
    assert x.dtype == y.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert torch.allclose(x[0], torch.from_numpy(rgb / 127.5 - 1).permute(2, 0, 1).float(),
                          atol=1e-6)
    assert torch.equal(y[0, 0], torch.from_numpy(truth).float())


@pytest.mark.parametrize("normalize", ["symmetric", "imagenet"])
def test_device_normalisation_matches_the_float_formula(normalize):
    rgb = load_image(IMAGES / f"{labelled_ids(1)[0]}.jpg")
    recipe = input_recipe(load_config(overrides={"data.normalize": normalize,
                                                 "data.texture": True}))
    x = to_input(rgb, recipe)
    f = rgb.astype(np.float64) / 255.0
    if normalize == "imagenet":
        expected = (f - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    else:
        expected = f * 2 - 1
    assert x.shape == (4, 256, 256) and x.dtype == torch.float32
    assert np.allclose(x[:3].numpy(), expected.transpose(2, 0, 1), atol=1e-5)
    assert np.allclose(x[3].numpy(), texture_map(rgb) / 127.5 - 1, atol=1e-6)


def test_augmentation_moves_image_and_mask_together_and_keeps_masks_binary():
    cfg = load_config(sets=["augment.affine=1", "augment.hflip=1", "augment.brightness_contrast=0",
                            "augment.blur_noise=0"])
    rep = find_pairs(IMAGES, MASKS, ids=labelled_ids(2), progress=False)
    plain = WrinkleDataset(rep.pairs, input_recipe(cfg))[0]
    aug_ds = WrinkleDataset(rep.pairs, input_recipe(cfg), build_augmentation(cfg["augment"]), seed=3)
    a, b = aug_ds[0], aug_ds[0]
    assert torch.equal(a["image"], b["image"])  # same seed, epoch and index: same sample
    aug_ds.set_epoch(1)
    assert not torch.equal(aug_ds[0]["image"], a["image"])
    assert set(a["mask"].unique().tolist()) <= {0.0, 1.0}
    # Flip only: the mask follows the image exactly.
    cfg2 = load_config(sets=["augment.affine=0", "augment.hflip=1", "augment.brightness_contrast=0",
                             "augment.blur_noise=0"])
    flip = WrinkleDataset(rep.pairs, input_recipe(cfg2), build_augmentation(cfg2["augment"]))[0]
    assert torch.equal(flip["mask"], plain["mask"].flip(-1))
    assert torch.allclose(flip["image"], plain["image"].flip(-1))


def test_persistent_loader_workers_follow_the_epoch():
    cfg = load_config(sets=["augment.affine=1", "augment.brightness_contrast=1"])
    rep = find_pairs(IMAGES, MASKS, ids=labelled_ids(2), progress=False)
    ds = WrinkleDataset(rep.pairs, input_recipe(cfg), build_augmentation(cfg["augment"]), seed=5)
    loader = DataLoader(ds, batch_size=2, num_workers=1, persistent_workers=True)
    seen = {}
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        seen[epoch] = next(iter(loader))["image"]
    assert loader._iterator is not None  # the same worker served both epochs
    for epoch in (1, 2):  # each epoch's batch is that epoch's augmentation, made in this process
        ds.set_epoch(epoch)
        assert torch.equal(seen[epoch], torch.stack([ds[0]["image"], ds[1]["image"]]))
    assert not torch.equal(seen[1], seen[2])


def test_face_labels_zero_the_background_and_texture_channel(tmp_path):
    ids = labelled_ids(2)
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in ids:
        lab = np.zeros((512, 512), np.uint8)
        lab[100:400, 150:350] = 1   # skin
        lab[200:300, 230:270] = 10  # nose
        np.save(labels / f"{i}.npy", lab)
    cfg = load_config(overrides={"data.face_labels_dir": str(labels), "data.texture": True})
    rep = find_pairs(IMAGES, MASKS, labels, ids=ids, progress=False)
    s = WrinkleDataset(rep.pairs, input_recipe(cfg))[0]
    assert s["image"].shape == (4, 256, 256)
    outside = torch.ones(256, 256, dtype=torch.bool)
    outside[50:200, 75:175] = False
    x = normalize_input(s["image"], input_recipe(cfg))
    assert torch.all(x[:, outside] == -1.0)  # black RGB and zero texture -> -1
    assert x[3, ~outside].max() > -1.0


def test_jpg_and_png_of_the_same_id_prefer_png(tmp_path):
    i = labelled_ids(1)[0]
    img_dir, mask_dir = link_pairs(tmp_path, [i])
    shutil.copy(IMAGES / f"{i}.jpg", img_dir / "spare.jpg")
    Image.open(IMAGES / f"{i}.jpg").save(img_dir / f"{i}.png")
    rep = find_pairs(img_dir, mask_dir, progress=False)
    assert [p.image.suffix for p in rep.pairs] == [".png"]
