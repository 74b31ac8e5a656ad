#!/usr/bin/env python
"""Train a wrinkle-segmentation U-Net.

Defaults come from config.yaml; --config FILE overrides them, every flag overrides one key, and
--set section.key=value overrides any key. Checkpoints, the resolved config, the split and the
metric history go to <train.out_dir>/<run-name>/ (default res/cp/<run-name>/).
"""

from __future__ import annotations

import argparse

from utils.errors import run_cli

FLAG_KEYS = {
    "image_dir": "data.image_dir", "mask_dir": "data.mask_dir",
    "face_labels_dir": "data.face_labels_dir", "image_size": "data.image_size",
    "val_ids": "data.val_ids", "test_ids": "data.test_ids", "exclude_ids": "data.exclude_ids",
    "workers": "data.num_workers",
    "model": "model.name", "base_channels": "model.base_channels",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
    "run_name": "train.run_name", "out_dir": "train.out_dir", "amp": "train.amp",
    "device": "train.device", "seed": "train.seed", "wandb": "logging.wandb",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python train.py --image-dir ../shared/data/ffhq-wrinkle-256/images256x256 "
               "--mask-dir ../shared/data/ffhq-wrinkle-256/manual_wrinkle_masks -e 2 --run-name demo")
    p.add_argument("-c", "--config", help="YAML file with keys to override config.yaml")
    p.add_argument("--image-dir", help="face images (flat or FFHQ 00000/ subfolders; jpg/png)")
    p.add_argument("--mask-dir", help="wrinkle masks named <id>.png")
    p.add_argument("--face-labels-dir", help="BiSeNet label maps <id>.npy: zero all but the face")
    p.add_argument("--image-size", type=int, help="train at this square size (default: native)")
    p.add_argument("--val-ids", help="id-list file used as the validation split")
    p.add_argument("--test-ids", help="id-list file held out from training and validation")
    p.add_argument("--exclude-ids", help="id-list file, or a folder whose files name ids, never "
                   "used (stage 1: the manual-mask folder keeps labelled faces out)")
    p.add_argument("--model", help="architecture: unet | resnet50_unet")
    p.add_argument("--base-channels", type=int, help="U-Net width (64 = classic; 16/32 = fast)")
    p.add_argument("-e", "--epochs", type=int, help="number of epochs")
    p.add_argument("-b", "--batch-size", type=int, help="images per batch")
    p.add_argument("-l", "--lr", type=float, help="AdamW learning rate")
    p.add_argument("-n", "--run-name", help="run folder name under the output folder")
    p.add_argument("--out-dir", help="parent folder of run folders (default res/cp)")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], help="mixed precision")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, help="seed of weights, augmentation and order")
    p.add_argument("-j", "--workers", type=int, help="data-loader worker processes")
    p.add_argument("--wandb", choices=["off", "offline", "online"], help="Weights & Biases")
    p.add_argument("--strict", action="store_true", help="unpaired or broken files are fatal")
    p.add_argument("--resume", help="continue a run from its last.pth (or its run folder)")
    p.add_argument("--init", help="start from another checkpoint's weights (matching layers)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key (repeatable), e.g. --set loss.gamma=3")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from utils.config import load_config  # imported here so that --help answers at once
    from utils.io import check_output_dir
    from utils.training.loop import train

    overrides = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items()}
    if args.strict:
        overrides["data.strict"] = True
    if args.init:
        from utils.checkpoints import check_checkpoint_file

        check_checkpoint_file(args.init)  # before the data is read: a wrong file fails at once
    if args.resume:
        from utils.checkpoints import load_checkpoint
        from utils.config import validate_config

        stored = validate_config(load_checkpoint(_last(args.resume))["config"], args.resume)
        cfg = load_config(None, {f"{s}.{k}": v for s, kv in stored.items() for k, v in kv.items()}
                          | {k: v for k, v in overrides.items() if v is not None}, args.set)
    else:
        cfg = load_config(args.config, overrides, args.set)
    check_output_dir(cfg["train"]["out_dir"], "--out-dir")
    summary = train(cfg, resume=args.resume and _last(args.resume), init=args.init,
                    progress=not args.no_progress)
    best = summary["best"]
    if "f1" in best:
        print(f"best epoch {summary['best_epoch']}: val F1 {best['f1']:.4f}, "
              f"Jaccard {best['jaccard']:.4f}")
        print(f"checkpoints: {summary['best_checkpoint']} (best), {summary['last_checkpoint']} "
              "(last)")
    else:
        print(f"trained {summary['epochs_run']} epochs without validation faces; the model: "
              f"{summary['last_checkpoint']}")
    return 0


def _last(path: str) -> str:
    from pathlib import Path

    p = Path(path)
    return str(p / "last.pth") if p.is_dir() else str(p)


if __name__ == "__main__":
    run_cli(main)
