#!/usr/bin/env python
"""Training throughput (images/s) of the U-Nets on this machine: fp32 against bf16 autocast.

Measures whole optimisation steps as the training loop runs them (its own step functions:
forward, Dice + focal loss, backward, gradient clipping, AdamW) on real faces from
../shared/data/ffhq-wrinkle-256 (random tensors if the data is absent), channels_last, at 256 and
512 px, for the default model (config.yaml) and the full-width (64-channel) U-Net.
Prints a table and writes JSON. A benchmark, not a test: it asserts nothing.

    python bench/bench_train.py --out runs/bench_train.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import DATA, run_cli
from losses import build_loss
from unet import build_model, count_parameters
from utils.config import load_config
from utils.io import write_json
from utils.runtime import machine_facts, resolve_device
from utils.training.loop import optimizer_step, step_loss


def real_batch(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of real faces and masks at `size` (the data pipeline's own preprocessing)."""
    if not (DATA / "manual_wrinkle_masks").is_dir():
        return torch.rand(batch, 3, size, size) * 2 - 1, (torch.rand(batch, 1, size, size) < 0.01).float()
    from utils.data.dataset import WrinkleDataset, batch_to_device, input_recipe
    from utils.data.pairs import find_pairs

    cfg = load_config(overrides={"data.image_size": size})
    rep = find_pairs(DATA / "images256x256", DATA / "manual_wrinkle_masks", progress=False)
    ds = WrinkleDataset(rep.pairs[:batch], input_recipe(cfg))
    items = [ds[i] for i in range(batch)]
    collated = {"image": torch.stack([s["image"] for s in items]),
                "mask": torch.stack([s["mask"] for s in items])}
    return batch_to_device(collated, ds.recipe, torch.device("cpu"), channels_last=False)


def measure(name: str, base: int, size: int, batch: int, dtype: torch.dtype | None,
            steps: int, device: torch.device) -> dict:
    cfg = load_config()
    model = build_model(name, n_channels=3, n_classes=1, base_channels=base,
                        bilinear=cfg["model"]["bilinear"]).to(device)
    model.to(memory_format=torch.channels_last).train()
    crit = build_loss(cfg["loss"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = real_batch(batch, size)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    y = y.to(device).float()

    def step() -> None:
        optimizer_step(step_loss(model, x, y, crit, device, dtype), model, opt, None,
                       cfg["train"]["grad_clip"])

    step()  # warm-up: allocations, oneDNN kernel selection
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"model": name, "base_channels": base, "params_m": round(count_parameters(model) / 1e6, 2),
            "size": size, "batch": batch, "precision": "bf16" if dtype else "fp32",
            "steps": steps, "images_per_s": round(steps * batch / dt, 3),
            "seconds_per_step": round(dt / steps, 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_train.json", help="JSON output file")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    p.add_argument("--batch", type=int, default=4, help="batch size at 256 (halved at 512)")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    default_base = load_config()["model"]["base_channels"]
    models = [("default", default_base), ("full_width", 64)]
    results = []
    for label, base in models:
        for size in args.sizes:
            batch = max(1, args.batch * 256 // size)
            for dtype in (None, torch.bfloat16):
                r = measure("unet", base, size, batch, dtype, args.steps, device)
                r["label"] = label
                results.append(r)
                print(f"{label:10s} base {base:2d}  {size:4d}px  batch {batch}  "
                      f"{r['precision']:4s}  {r['images_per_s']:7.2f} img/s  "
                      f"({r['seconds_per_step']:.2f} s/step)", flush=True)
    for label, _base in models:
        for size in args.sizes:
            fp32, bf16 = (next(r for r in results if r["label"] == label and r["size"] == size
                               and r["precision"] == prec) for prec in ("fp32", "bf16"))
            print(f"{label} {size}px: bf16 is {bf16['images_per_s'] / fp32['images_per_s']:.2f}x fp32")
    write_json(args.out, {
        "machine": machine_facts(device),
        "results": results})
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
