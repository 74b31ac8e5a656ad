"""Configuration: config.yaml defaults, a --config file on top, then flags and --set overrides.

Every key must exist in config.yaml; an unknown key is an error that names the nearest valid key.
Values are checked against the default's type and, for some keys, a list of choices. The resolved
config is saved with every run, so a run is reproducible from its own folder.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

from utils.errors import UserError
from utils.io import write_text

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "config.yaml"

CHOICES: dict[str, tuple[Any, ...]] = {
    "data.normalize": ("symmetric", "imagenet"),
    "model.name": ("unet", "resnet50_unet"),
    "loss.name": ("dice_focal", "mse"),
    "data.target": ("manual", "weak"),
    "model.n_classes": (1, 2),
    "train.scheduler": ("cosine", "cosine_restarts", "plateau", "none"),
    "train.amp": ("auto", "bf16", "fp16", "off"),
    "logging.wandb": ("off", "offline", "online"),
}
# Keys whose default is null: the type a value must have when it is not null.
NULLABLE_TYPES: dict[str, type] = {
    "data.mask_dir": str,
    "data.face_labels_dir": str,
    "data.image_size": int,
    "data.val_ids": str,
    "data.test_ids": str,
    "data.exclude_ids": str,
    "data.pseudo_dir": str,
    "train.run_name": str,
}
POSITIVE = {"data.image_size", "train.restart_epochs", "train.epochs", "train.batch_size", "eval.batch_size",
            "eval.auc_bins", "model.base_channels"}
NON_NEGATIVE = {"data.num_workers", "data.pseudo_per_epoch", "train.lr", "train.weight_decay", "train.grad_clip",
                "train.warmup_epochs", "train.early_stopping", "loss.dice_weight",
                "loss.focal_weight", "loss.gamma", "loss.smooth", "loss.skeleton_weight",
                "eval.overlays"}
UNIT_INTERVAL = {"data.val_fraction", "data.test_fraction", "loss.alpha", "eval.threshold", "augment.hflip",
                 "augment.affine", "augment.brightness_contrast", "augment.blur_noise", "augment.grey"}


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UserError(f"{path}: expected sections of key: value pairs (data:, model:, train:, ...)")
    return data


def _nearest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.4)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(sorted(options))})"


def _check_value(key: str, value: Any, default: Any, source: str) -> Any:
    """Return the value, coerced where harmless (int -> float), or raise a UserError."""
    if value is False and "off" in CHOICES.get(key, ()):  # YAML reads a bare `off` as false
        value = "off"
    if value is None:
        if default is None or key in NULLABLE_TYPES:
            return None
        raise UserError(f"{source}: {key} cannot be null")
    want = NULLABLE_TYPES.get(key, type(default) if default is not None else None)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if (want is not None and not isinstance(value, want)) or (want is int and isinstance(value, bool)):
        raise UserError(
            f"{source}: {key} must be {want.__name__}, got {value!r} ({type(value).__name__})"
        )
    if want is list and default and not all(isinstance(v, type(default[0])) for v in value):
        raise UserError(f"{source}: {key} must be a list of {type(default[0]).__name__}")
    if key in CHOICES and value not in CHOICES[key]:
        raise UserError(f"{source}: {key} must be one of {list(CHOICES[key])}, got {value!r}")
    if key in POSITIVE and value <= 0:
        raise UserError(f"{source}: {key} must be > 0, got {value}")
    if key in NON_NEGATIVE and value < 0:
        raise UserError(f"{source}: {key} must be >= 0, got {value}")
    if key in UNIT_INTERVAL and not 0 <= value <= 1:
        raise UserError(f"{source}: {key} must be between 0 and 1, got {value}")
    return value


def _merge(cfg: dict[str, Any], updates: dict[str, Any], defaults: dict[str, Any], source: str) -> None:
    for section, values in updates.items():
        if section not in defaults:
            raise UserError(f"{source}: unknown section '{section}'" + _nearest(section, list(defaults)))
        if not isinstance(values, dict):
            raise UserError(f"{source}: section '{section}' must hold key: value pairs")
        for key, value in values.items():
            set_value(cfg, f"{section}.{key}", value, defaults, source)


def set_value(cfg: dict[str, Any], dotted: str, value: Any, defaults: dict[str, Any],
              source: str) -> None:
    """Set `section.key` in cfg after checking the key exists and the value is valid."""
    if dotted.count(".") != 1:
        raise UserError(f"{source}: '{dotted}' is not of the form section.key")
    section, key = dotted.split(".")
    all_keys = [f"{s}.{k}" for s, kv in defaults.items() for k in kv]
    if section in defaults and key not in defaults[section]:
        # Look in the named section first: its keys are the likely intent.
        close = difflib.get_close_matches(key, list(defaults[section]), n=1, cutoff=0.5)
        hint = f" (did you mean '{section}.{close[0]}'?)" if close else _nearest(dotted, all_keys)
        raise UserError(f"{source}: unknown key '{dotted}'{hint}")
    if section not in defaults:
        raise UserError(f"{source}: unknown key '{dotted}'" + _nearest(dotted, all_keys))
    cfg[section][key] = _check_value(dotted, value, defaults[section][key], source)


def parse_set(item: str) -> tuple[str, Any]:
    """Split a `--set section.key=value` item; the value is parsed as YAML (numbers, null, lists)."""
    if "=" not in item:
        raise UserError(f"--set {item}: expected section.key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(config_file: str | Path | None = None,
                overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None) -> dict[str, Any]:
    """Resolve the configuration: defaults < config file < flag overrides < --set items.

    `overrides` maps "section.key" to a value; entries whose value is None are ignored (a flag
    the user did not give).
    """
    defaults = _read_yaml(DEFAULT_CONFIG)
    cfg = copy.deepcopy(defaults)
    for section, values in defaults.items():
        for key, value in values.items():
            cfg[section][key] = _check_value(f"{section}.{key}", value, value, str(DEFAULT_CONFIG))
    if config_file is not None:
        _merge(cfg, _read_yaml(Path(config_file)), defaults, str(config_file))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_value(cfg, dotted, value, defaults, "command line")
    for item in sets or []:
        dotted, value = parse_set(item)
        set_value(cfg, dotted, value, defaults, f"--set {item}")
    return cfg


def validate_config(cfg: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check a whole config dict (e.g. one stored in a checkpoint) against the defaults."""
    defaults = _read_yaml(DEFAULT_CONFIG)
    out = copy.deepcopy(defaults)
    _merge(out, cfg, defaults, source)
    return out


def save_config(cfg: dict[str, Any], path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_text(path, yaml.safe_dump(cfg, sort_keys=False))
