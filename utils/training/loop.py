"""The training loop behind train.py: data, model, optimisation, validation, checkpoints, resume.

One function, `train(cfg)`, so that tests and other code can train without a subprocess. A run
folder (<out_dir>/<run_name>/) holds best.pth (best validation Jaccard), last.pth (everything
needed to resume), the resolved config.yaml, the split as id lists, history.csv and summary.json.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from losses import build_loss
from unet import build_model
from utils import distributed
from utils.checkpoints import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_dict_copy,
)
from utils.config import save_config
from utils.data.dataset import WrinkleDataset, batch_to_device, build_augmentation, input_recipe
from utils.data.pairs import Pair, find_pairs, ids_of, min_image_side, resolve_pairs
from utils.data.splits import make_split, read_ids, save_split
from utils.distributed import UnpaddedDistributedSampler
from utils.errors import UserError
from utils.evaluation.validation import validate
from utils.io import csv_text, write_json, write_text
from utils.runtime import amp_dtype, autocast, resolve_device, seed_everything

HISTORY_FIELDS = ["epoch", "lr", "train_loss", "val_loss", "f1", "jaccard", "precision", "recall",
                  "auroc", "average_precision", "macro_f1", "macro_jaccard", "seconds"]


PER_STEP_SCHEDULERS = (torch.optim.lr_scheduler.LambdaLR,
                       torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)


class TrainingStopped(UserError):
    """Training stopped early for a reason the user must see (e.g. a NaN loss)."""


def model_recipe(cfg: dict[str, Any], n_channels: int) -> dict[str, Any]:
    """The architecture part of a checkpoint, from a resolved config."""
    m = cfg["model"]
    return {"name": m["name"], "n_channels": n_channels, "n_classes": m["n_classes"],
            "base_channels": m["base_channels"], "bilinear": m["bilinear"]}


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any],
                   steps_per_epoch: int) -> Any:
    """Per-step cosine decay after a linear warm-up; or per-epoch plateau; or none."""
    t = cfg["train"]
    if t["scheduler"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                          patience=3)
    if t["scheduler"] == "none":
        return None
    if t["scheduler"] == "cosine_restarts":  # the FFHQ-Wrinkle recipe; stepped per batch
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(1, t["restart_epochs"] * steps_per_epoch), eta_min=t["lr"] * 0.01)
    total = max(1, t["epochs"] * steps_per_epoch)
    warm = min(total - 1, t["warmup_epochs"] * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = (step - warm) / max(1, total - warm)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _prepare_run(cfg: dict[str, Any], resume: dict[str, Any] | None) -> tuple[Path, dict]:
    t = cfg["train"]
    run_name = t["run_name"] or distributed.broadcast(time.strftime("run-%Y%m%d-%H%M%S"))
    cfg["train"]["run_name"] = run_name
    run_dir = Path(t["out_dir"]) / run_name
    if resume is None and (run_dir / "last.pth").exists():
        raise UserError(f"{run_dir}: a run of this name exists; resume it with --resume "
                        f"{run_dir / 'last.pth'} or choose another --run-name")
    distributed.barrier()  # every rank has checked before rank 0 writes anything
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, cfg


def train(cfg: dict[str, Any], resume: str | Path | None = None, init: str | Path | None = None,
          on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
          progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a wrinkle model as `cfg` says; return the summary (best epoch, metrics, paths)."""
    resumed = None
    if resume is not None:
        resume = Path(resume)
        if resume.is_dir():
            resume = resume / "last.pth"
        resumed = load_checkpoint(resume)
        if "optimizer" not in resumed:
            raise UserError(f"{resume}: holds no optimizer state; resume from a run's last.pth")
    d, t = cfg["data"], cfg["train"]
    info = distributed.setup()
    try:
        return _train(cfg, d, t, info, resumed, resume, init, on_epoch_end, progress, log)
    finally:
        distributed.cleanup()


def _train(cfg: dict[str, Any], d: dict[str, Any], t: dict[str, Any], info: distributed.DistInfo,
           resumed: dict[str, Any] | None, resume: Path | None, init: str | Path | None,
           on_epoch_end: Callable[[int, dict[str, Any]], None] | None, progress: bool,
           log: Callable[[str], None]) -> dict[str, Any]:
    if not info.main:  # only rank 0 prints, writes and shows progress
        log, progress = (lambda s: None), False
    seed_everything(t["seed"])
    device = resolve_device(t["device"])
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    dtype = amp_dtype(device, t["amp"])
    if d["mask_dir"] is None and d["target"] == "manual":
        raise UserError("data.mask_dir is not set: give --mask-dir (or train on weak labels with "
                        "--set data.target=weak)")
    report = find_pairs(d["image_dir"], d["mask_dir"], d["face_labels_dir"], progress=progress,
                        min_side=min_image_side(d["image_size"]))
    pairs = resolve_pairs(report, d["strict"], f"{d['image_dir']} + {d['mask_dir']}", log)
    if d["exclude_ids"] and resumed is None:
        excluded = ids_of(d["exclude_ids"])
        pairs = [p for p in pairs if p.id not in excluded]
        if not pairs:
            raise UserError(f"data.exclude_ids ({d['exclude_ids']}) leaves no pair to train on")
        log(f"left out {len(report.pairs) - len(pairs)} ids named by {d['exclude_ids']}")
    if resumed is not None:
        split = resumed["split"]
    else:
        split = make_split([p.id for p in pairs], d["val_fraction"], d["split_seed"],
                           read_ids(d["val_ids"]) if d["val_ids"] else None,
                           read_ids(d["test_ids"]) if d["test_ids"] else None,
                           d["test_fraction"])
    by_id = {p.id: p for p in pairs}
    missing = [i for i in split["train"] + split["val"] if i not in by_id]
    if missing:
        raise UserError(f"{len(missing)} ids of the split have no usable pair (first: {missing[0]})")
    has_val = bool(split["val"])
    if not has_val and t["early_stopping"]:
        raise UserError("train.early_stopping needs validation faces; with none (data.val_fraction "
                        "0, every face trains) set --set train.early_stopping=0")
    if not has_val and t["scheduler"] == "plateau":
        raise UserError("train.scheduler plateau needs validation faces; with none (data."
                        "val_fraction 0) use cosine, cosine_restarts or none")
    run_dir, cfg = _prepare_run(cfg, resumed)  # only now: bad data leaves no empty run folder
    if info.main:
        save_split(split, run_dir)
        save_config(cfg, run_dir / "config.yaml")
    log(f"run folder: {run_dir}  (train {len(split['train'])}, val {len(split['val'])}, "
        f"test {len(split['test'])} held out)"
        + (f"; {info.world} processes, batch {t['batch_size']} each" if info.enabled else ""))
    if not has_val:
        log(f"no validation faces: every pair trains for exactly {t['epochs']} epochs and the "
            "last epoch is the model (best.pth = last.pth); choose the epoch count by "
            "cross-validation (bench/cross_validate.py)")

    recipe = input_recipe(cfg)
    if recipe["image_size"] is None:  # native size: record it, so inference resizes photos to it
        h, w = WrinkleDataset([by_id[split["train"][0]]], recipe).load(0)[0].shape[:2]
        if h != w:
            raise UserError(f"images are {w}x{h}, not square: set --image-size")
        recipe["image_size"] = h
    # Labelled faces never take a pseudo-label: the held-out ones would leak.
    labelled = {p.id for p in report.pairs} | set(split["val"]) | set(split["test"])
    pool = pseudo_pairs(d, labelled, log) if d["pseudo_dir"] else []
    train_ds = WrinkleDataset([by_id[i] for i in split["train"]], recipe,
                              build_augmentation(cfg["augment"]), seed=t["seed"],
                              target=d["target"], pool=pool, pool_per_epoch=d["pseudo_per_epoch"])
    val_ds = WrinkleDataset([by_id[i] for i in split["val"]], recipe, target=d["target"])
    loader_kw: dict[str, Any] = {"num_workers": d["num_workers"],
                                 "pin_memory": device.type == "cuda"}
    if d["num_workers"] > 0:  # workers live across epochs; they read the epoch from shared memory
        loader_kw["persistent_workers"] = True
    per_rank = len(train_ds) // info.world
    drop_last = per_rank > t["batch_size"]
    val_sampler = UnpaddedDistributedSampler(val_ds, info.world, info.rank) if info.enabled \
        else None
    val_loader = DataLoader(val_ds, batch_size=cfg["eval"]["batch_size"], shuffle=False,
                            sampler=val_sampler, **loader_kw)
    steps_per_epoch = per_rank // t["batch_size"] if drop_last else 1

    mr = model_recipe(cfg, recipe["in_channels"])
    model = build_model(mr["name"], n_channels=mr["n_channels"], n_classes=mr["n_classes"],
                        base_channels=mr["base_channels"], bilinear=mr["bilinear"],
                        pretrained_encoder=cfg["model"]["pretrained_encoder"])
    if init is not None and resumed is None:
        _load_init(model, init, log)
    if resumed is not None:
        model.load_state_dict(resumed["state_dict"])
    if info.enabled and t["sync_bn"]:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if t["channels_last"]:
        model.to(memory_format=torch.channels_last)
    raw_model = model  # what checkpoints hold: no DDP or compile wrappers
    if info.enabled:
        model = DistributedDataParallel(
            model, device_ids=[info.local_rank] if device.type == "cuda" else None)
    if t["compile"]:
        model = torch.compile(model)
    criterion = build_loss(cfg["loss"])
    optimizer = torch.optim.AdamW(raw_model.parameters(), lr=t["lr"],
                                  weight_decay=t["weight_decay"])
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    start_epoch, history, best, stale = 1, [], -math.inf, 0
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        if scheduler is not None and resumed.get("scheduler") is not None:
            scheduler.load_state_dict(resumed["scheduler"])
        if resumed.get("scaler"):
            scaler.load_state_dict(resumed["scaler"])
        start_epoch = resumed["epoch"] + 1
        history = list(resumed.get("history", []))
        best = resumed.get("best_score", -1.0)
        stale = resumed.get("stale_epochs", 0)
        set_rng_state(resumed["rng"])
        log(f"resuming {resume} at epoch {start_epoch}")

    wandb_run = _start_wandb(cfg, run_dir, log) if info.main else None
    threshold = cfg["eval"]["threshold"]
    base_payload = {"model": mr, "preprocess": recipe, "threshold": threshold, "split": split,
                    "config": cfg}
    last_path, best_path = run_dir / "last.pth", run_dir / "best.pth"
    # One loader for the whole run (its workers persist). The order comes from (seed, epoch)
    # alone, in one process or many, and the augmentation stream from the dataset's shared
    # epoch, so a resumed run sees exactly the batches an uninterrupted one would. The loader's
    # own generator only seeds its workers, and keeps the global RNG untouched.
    sampler = DistributedSampler(train_ds, info.world, info.rank, shuffle=True,
                                 seed=t["seed"] * 7919, drop_last=True)
    train_loader = DataLoader(train_ds, batch_size=t["batch_size"], sampler=sampler,
                              generator=torch.Generator().manual_seed(t["seed"]),
                              drop_last=drop_last, **loader_kw)
    for epoch in range(start_epoch, t["epochs"] + 1):
        started = time.time()
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        train_loss = _train_epoch(model, train_loader, criterion, optimizer, scheduler, scaler,
                                  device, dtype, t, epoch, progress, last_path)
        val = validate(model, val_loader, device, dtype, criterion, threshold,
                       cfg["eval"]["auc_bins"], t["channels_last"], progress)[0] if has_val else {}
        lr = optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val["jaccard"])
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss,
               **{k: val[k] for k in HISTORY_FIELDS if k in val},
               "seconds": time.time() - started}
        history.append(row)
        # Manual masks: the best validation Jaccard. Weak labels (stage 1): the lowest
        # validation loss, since pixel metrics against grey-level targets mean little.
        # Without validation faces the newest epoch is the model.
        if not has_val:
            score = float(epoch)
        else:
            score = val["jaccard"] if d["target"] == "manual" else -val["val_loss"]
        improved = score > best
        if improved:
            best, stale = score, 0
        else:
            stale += 1
        metrics = {k: val[k] for k in [*HISTORY_FIELDS[4:12], "val_loss"] if k in val}
        # Without validation best.pth is last.pth: written once, at the end.
        if improved and info.main and (has_val or epoch == t["epochs"]):
            save_checkpoint(best_path, base_payload | {
                "state_dict": state_dict_copy(raw_model), "epoch": epoch, "metrics": metrics,
                "best_score": best})
        if info.main:
            save_checkpoint(last_path, base_payload | {
                "state_dict": state_dict_copy(raw_model), "epoch": epoch, "metrics": metrics,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": rng_state(), "history": history, "best_score": best, "stale_epochs": stale})
            write_text(run_dir / "history.csv", csv_text(history, HISTORY_FIELDS, ".6g"))
        distributed.barrier()
        scores = (f"  val loss {val['val_loss']:.4f}  F1 {val['f1']:.4f}  Jaccard "
                  f"{val['jaccard']:.4f}  AUROC {val['auroc']:.4f}{'  (best)' if improved else ''}"
                  if has_val else "")
        log(f"epoch {epoch}/{t['epochs']}  loss {train_loss:.4f}{scores}  {row['seconds']:.0f}s")
        if wandb_run is not None:
            wandb_run.log(row, step=epoch)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        if t["early_stopping"] and stale >= t["early_stopping"]:
            log(f"early stopping: no better validation Jaccard for {stale} epochs")
            break
    if wandb_run is not None:
        wandb_run.finish()
    weak = d["target"] == "weak"
    if not has_val:
        best_row = history[-1] if history else {}
    else:
        best_row = max(history, key=lambda r: -r["val_loss"] if weak else r["jaccard"]) \
            if history else {}
    summary = {"run_dir": str(run_dir), "best_checkpoint": str(best_path),
               "last_checkpoint": str(last_path), "best_epoch": best_row.get("epoch"),
               "best": best_row, "epochs_run": len(history), "device": str(device),
               "amp": str(dtype).replace("torch.", "") if dtype else "off",
               "resolution": recipe["image_size"] or "native",
               "mask_rule": "utils.data.masks (max-pool shrink)", "threshold": threshold}
    if info.main:
        write_json(run_dir / "summary.json", summary)
    return summary



def step_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              criterion: torch.nn.Module, device: torch.device,
              dtype: torch.dtype | None) -> torch.Tensor:
    """The forward half of a training step: logits under autocast, the loss in float32."""
    with autocast(device, dtype):
        logits = model(x)
    return criterion(logits.float(), y)


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler | None, grad_clip: float) -> None:
    """The backward half: gradients (scaled for fp16), clipping, the optimizer's step.

    The training loop and the training benchmarks (bench/bench_train.py, bench/gpu_check.py) run
    this same step, so a measured rate is the rate of training."""
    scaler = scaler or torch.amp.GradScaler(enabled=False)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


def _train_epoch(model, loader, criterion, optimizer, scheduler, scaler, device, dtype, t,
                 epoch, progress, last_path) -> float:
    model.train()
    loss_sum = torch.zeros((), device=device)
    bad = torch.zeros((), dtype=torch.bool, device=device)
    n = 0
    check_every = 1 if device.type == "cpu" else 25
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not progress, file=sys.stderr)
    for step, batch in enumerate(bar):
        x, y = batch_to_device(batch, loader.dataset.recipe, device, t["channels_last"])
        loss = step_loss(model, x, y, criterion, device, dtype)
        bad |= ~torch.isfinite(loss.detach())
        if step % check_every == 0 and bool(distributed.sum_across(bad.float().clone()) > 0):
            kept = f"the last good checkpoint is {last_path}" if last_path.exists() else \
                "no checkpoint was written yet"
            raise TrainingStopped(f"loss became NaN/inf at epoch {epoch}, step {step}; training "
                                  f"stopped and {kept} (try a lower --lr or --amp off)")
        optimizer_step(loss, model, optimizer, scaler, t["grad_clip"])
        if isinstance(scheduler, PER_STEP_SCHEDULERS):
            scheduler.step()
        loss_sum += loss.detach() * x.shape[0]
        n += x.shape[0]
    totals = distributed.sum_across(torch.stack([loss_sum.float(), bad.float(),
                                                 torch.tensor(float(n), device=device)]))
    if totals[1] > 0:
        raise TrainingStopped(f"loss became NaN/inf in epoch {epoch}; training stopped and the "
                              f"last good checkpoint is {last_path}")
    return float(totals[0] / totals[2].clamp(min=1))


def pseudo_pairs(d: dict[str, Any], labelled: set[str], log: Callable[[str], None]
                 ) -> list[Pair]:
    """The unlabelled faces of data.image_dir with a soft label in data.pseudo_dir."""
    report = find_pairs(d["image_dir"], d["pseudo_dir"], None, progress=False,
                        min_side=min_image_side(d["image_size"]))
    taken = [replace(p, soft=True) for p in report.pairs if p.id not in labelled]
    if not taken:
        raise UserError(f"data.pseudo_dir {d['pseudo_dir']}: no soft label of an unlabelled face "
                        f"of {d['image_dir']} (labels are <id>.png, from pseudo_label.py)")
    skipped = len(report.pairs) - len(taken)
    per_epoch = d["pseudo_per_epoch"] or len(taken)
    log(f"self-training: {len(taken)} pseudo-labelled faces from {d['pseudo_dir']}, "
        f"{min(per_epoch, len(taken))} per epoch"
        + (f"; {skipped} labelled ids there are not taken" if skipped else ""))
    return taken


def _load_init(model: torch.nn.Module, path: str | Path, log: Callable[[str], None]) -> None:
    """Initialise from another checkpoint's weights: matching names and shapes, reported.

    An input layer that gained channels (stage 1 sees RGB, stage 2 RGB + texture) keeps its
    pretrained filters for the old channels and starts the new ones at zero, so stage 2 begins
    with exactly stage 1's function and learns what the texture channel adds.
    """
    ckpt = load_checkpoint(path)
    own = model.state_dict()
    ckpt_in = ckpt.get("model", {}).get("n_channels")
    taken, widened = {}, []
    for k, v in ckpt["state_dict"].items():
        mine = own.get(k)
        if mine is None:
            continue
        if mine.shape == v.shape:
            taken[k] = v
        elif (v.ndim == 4 and mine.ndim == 4 and v.shape[1] == ckpt_in
              and mine.shape[1] > v.shape[1] and mine.shape[0] == v.shape[0]
              and mine.shape[2:] == v.shape[2:]):
            wide = torch.zeros_like(mine)
            wide[:, :v.shape[1]] = v
            taken[k] = wide
            widened.append(k)
    skipped = sorted(set(ckpt["state_dict"]) - set(taken))
    model.load_state_dict(taken, strict=False)
    log(f"initialised {len(taken)}/{len(own)} tensors from {path}"
        + (f"; widened to {own[widened[0]].shape[1]} input channels (new ones at zero): "
           f"{', '.join(widened)}" if widened else "")
        + (f"; not matching: {', '.join(skipped[:5])}" if skipped else ""))


def _start_wandb(cfg: dict[str, Any], run_dir: Path, log: Callable[[str], None]) -> Any:
    mode = cfg["logging"]["wandb"]
    if mode == "off":
        return None
    try:
        import wandb
    except ImportError:
        raise UserError("logging.wandb is set but the wandb package is not installed "
                        "(pip install wandb), or set logging.wandb=off") from None
    try:
        return wandb.init(project=cfg["logging"]["wandb_project"], name=cfg["train"]["run_name"],
                          dir=str(run_dir), config=cfg, mode=mode)
    except Exception as exc:  # network or login failures must not lose a training run
        log(f"warning: wandb could not start ({exc}); continuing without it")
        return None
