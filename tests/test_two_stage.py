"""Stage 1 (weak labels: texture maps, MSE) then stage 2 (manual masks) on real faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import IMAGES, MASKS, REPO, labelled_ids, link_pairs, needs_data
from unet import build_model
from utils.checkpoints import load_checkpoint, model_from_checkpoint
from utils.config import load_config
from utils.data.dataset import WrinkleDataset, input_recipe
from utils.data.images import load_image
from utils.data.pairs import find_pairs, ids_of
from utils.data.splits import read_ids
from utils.data.texture import texture_map
from utils.errors import UserError
from utils.training.loop import _load_init, train

pytestmark = needs_data


def test_weak_targets_are_texture_maps(tmp_path):
    cfg = load_config(REPO / "configs" / "cpu_paper_pretrain.yaml")
    rep = find_pairs(IMAGES, None, ids=labelled_ids(2), progress=False)
    s = WrinkleDataset(rep.pairs, input_recipe(cfg), target="weak")[0]
    rgb = load_image(IMAGES / f"{s['id']}.jpg")
    expected = texture_map(rgb).astype(np.float32) / 255
    assert s["image"].shape == (3, 256, 256)  # RGB in, the texture map out
    assert torch.allclose(s["mask"][0], torch.from_numpy(expected))
    assert s["mask"].min() >= 0 and s["mask"].max() <= 1 and s["mask"].max() > 0.3
    # Weak-label files are read as grey levels, not binarised.
    weak = tmp_path / "weak"
    weak.mkdir()
    Image.fromarray((expected * 255).round().astype(np.uint8)).save(weak / f"{s['id']}.png")
    rep = find_pairs(IMAGES, weak, ids=[s["id"]], progress=False)
    from_file = WrinkleDataset(rep.pairs, input_recipe(cfg), target="weak")[0]["mask"]
    assert torch.allclose(from_file, s["mask"], atol=1 / 255)


def unlabelled_ids(n: int) -> list[str]:
    """The first n ids of the real sample without a manual mask."""
    labelled = set(labelled_ids())
    return sorted(p.stem for p in IMAGES.glob("*.jpg") if p.stem not in labelled)[:n]


def test_stage_one_then_stage_two(tmp_path):
    img, mask = link_pairs(tmp_path / "data", labelled_ids(12))
    unlabelled = unlabelled_ids(10)
    for i in unlabelled:  # stage 1's faces: in the image folder, without a mask
        (img / f"{i}.jpg").symlink_to(IMAGES / f"{i}.jpg")
    tiny = {"data.image_size": 64, "model.base_channels": 8, "train.out_dir": str(tmp_path),
            "train.amp": "off", "train.epochs": 2, "data.num_workers": 0, "data.image_dir": str(img)}
    s1 = load_config(REPO / "configs" / "cpu_paper_pretrain.yaml",
                     tiny | {"data.exclude_ids": str(mask)})
    first = train(s1, progress=False, log=lambda s: None)
    run1 = tmp_path / "cpu_paper_pretrain"
    seen = read_ids(run1 / "train_ids.txt") + read_ids(run1 / "val_ids.txt")
    assert sorted(seen) == unlabelled  # the labelled faces never reach stage 1
    ckpt1 = load_checkpoint(first["best_checkpoint"])
    # Stage 1 sees RGB only: with the texture map as input and target it would copy a channel.
    assert ckpt1["model"]["n_channels"] == 3 and ckpt1["model"]["n_classes"] == 2
    assert ckpt1["config"]["loss"]["name"] == "mse"
    assert first["best"]["val_loss"] < 0.25  # MSE of probabilities in [0, 1]

    s2 = load_config(REPO / "configs" / "cpu_paper_finetune.yaml",
                     tiny | {"data.mask_dir": str(mask), "train.epochs": 1})
    logged: list[str] = []
    second = train(s2, init=first["best_checkpoint"], progress=False, log=logged.append)
    line = next(x for x in logged if x.startswith("initialised"))
    assert "initialised 110/110 tensors" in line and "not matching" not in line
    assert "widened to 4 input channels (new ones at zero): inc.double_conv.0.weight" in line
    ckpt2 = load_checkpoint(second["best_checkpoint"])
    assert ckpt2["model"]["n_channels"] == 4
    assert ckpt2["config"]["loss"]["name"] == "dice_focal" and ckpt2["epoch"] == 1
    # Stage 2 started from stage 1's weights, not from scratch.
    w1 = ckpt1["state_dict"]["inc.double_conv.0.weight"]
    w2 = ckpt2["state_dict"]["inc.double_conv.0.weight"][:, :3]
    assert (w1 - w2).abs().mean() < 0.5 * w1.abs().mean()

    # Before any stage 2 step, the widened model is stage 1's model whatever the texture channel.
    stage1 = model_from_checkpoint(ckpt1).eval()
    widened = build_model("unet", n_channels=4, n_classes=2, base_channels=8).eval()
    _load_init(widened, first["best_checkpoint"], log=lambda s: None)
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        assert torch.allclose(widened(x), stage1(x[:, :3]), atol=1e-5)


def test_init_reports_layers_that_do_not_match(trained_run, tmp_path, small_data):
    from tests.conftest import tiny_config

    cfg = tiny_config(*small_data, tmp_path, epochs=1)
    cfg["model"]["n_classes"] = 2  # the output layer no longer fits the 1-logit checkpoint
    logged: list[str] = []
    train(cfg, init=trained_run / "best.pth", progress=False, log=logged.append)
    line = next(x for x in logged if x.startswith("initialised"))
    assert "outc.conv.weight" in line and "not matching" in line
    with pytest.raises(Exception, match="checkpoint not found"):
        train(tiny_config(*small_data, tmp_path / "x", epochs=1), init=tmp_path / "none.pth",
              progress=False, log=lambda s: None)


def test_exclude_ids_from_a_folder_or_a_list(tmp_path):
    cfg = load_config(REPO / "configs" / "cpu_paper_pretrain.yaml")
    # The shipped stage-1 profile leaves out exactly the 165 labelled faces of the sample.
    shipped = (REPO / cfg["data"]["exclude_ids"]).resolve()
    assert shipped == MASKS.resolve() and ids_of(shipped) == set(labelled_ids())
    listed = tmp_path / "ids.txt"
    listed.write_text("# two ids\n541\n00042.png\n")
    assert ids_of(listed) == {"00541", "00042"}
    with pytest.raises(UserError, match="neither an id-list file nor a folder"):
        ids_of(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image or mask file"):
        ids_of(tmp_path / "empty")
