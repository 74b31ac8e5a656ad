"""Config: defaults, file and flag overrides, --set, and errors that name the nearest key."""

from __future__ import annotations

import pytest
import yaml

from utils.config import load_config, save_config, validate_config
from utils.errors import UserError


def test_defaults_load_and_round_trip(tmp_path):
    cfg = load_config()
    assert cfg["model"]["name"] == "unet" and cfg["logging"]["wandb"] == "off"
    save_config(cfg, tmp_path / "c.yaml")
    assert validate_config(yaml.safe_load((tmp_path / "c.yaml").read_text())) == cfg


def test_precedence_file_then_flags_then_set(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("train:\n  epochs: 7\n  lr: 1e-4\nloss:\n  gamma: 1\n")
    cfg = load_config(f, {"train.epochs": 9, "train.batch_size": None},
                      ["loss.gamma=3", "data.image_size=512", "data.val_ids=null"])
    assert cfg["train"]["epochs"] == 9          # flag beats file
    assert cfg["train"]["lr"] == pytest.approx(1e-4)  # YAML's 1e-4 string becomes a float
    assert cfg["train"]["batch_size"] == 8      # a flag not given changes nothing
    assert cfg["loss"]["gamma"] == 3.0 and isinstance(cfg["loss"]["gamma"], float)
    assert cfg["data"]["image_size"] == 512 and cfg["data"]["val_ids"] is None
    # a bare `off` is YAML's false: every key that has an "off" choice takes it as "off"
    cfg = load_config(overrides=None, sets=["train.amp=off", "logging.wandb=off"])
    assert cfg["train"]["amp"] == "off" and cfg["logging"]["wandb"] == "off"


@pytest.mark.parametrize(("item", "message"), [
    ("train.epoch=1", "did you mean 'train.epochs'"),
    ("train.batchsize=4", "did you mean 'train.batch_size'"),
    ("trian.epochs=3", "did you mean 'train.epochs'"),
    ("train.epochs=0", "must be > 0"),
    ("train.epochs=2.5", "must be int"),
    ("model.name=unet3", "must be one of"),
    ("loss.alpha=1.5", "between 0 and 1"),
    ("logging.wandb=sometimes", "must be one of"),
    ("train.lr", "section.key=value"),
    ("lr=1", "not of the form section.key"),
])
def test_bad_set_items_are_clear_errors(item, message):
    with pytest.raises(UserError, match=message):
        load_config(sets=[item])


def test_bad_config_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("modle:\n  name: unet\n")
    with pytest.raises(UserError, match=r"bad.yaml.*unknown section 'modle'.*'model'"):
        load_config(f)
    f.write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(f)
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")
