#!/usr/bin/env python
"""The figures one short loan of a GPU gives: training and inference speed of the U-Nets on CUDA.

GPU time is scarce and lent by the minute, so every measurement is bounded by a step count and the
whole run by --budget seconds (a measurement that would start too late is skipped, and the JSON is
rewritten after each one, so a killed run still leaves what it measured). Measures:

- training images/s and peak memory of the official U-Net (4 ch, 2 classes, width 64, bilinear)
  at 1024 px, batch 8, bf16 autocast + channels_last, AdamW, Dice + focal, gradient clipping as
  train.py runs it; with cudnn.benchmark as a candidate; the largest of batch 16/32 that fits;
  fp32 (fewer steps);
- inference latency per image at 1024 (batch 1 and 8), fp32 against bf16 + channels_last, with the
  argmax-mask agreement between them (random weights in the published layout);
- the default model (config.yaml model section: 3 ch, 1 class) training images/s at 256 and 512,
  batch 32;
- the machine (GPU, torch, CUDA, cuDNN) and model FLOPs, to read the rates as TFLOP/s.

Inputs are synthetic tensors (smooth images, ~1 % wrinkle pixels): the loader is measured apart
by bench/bench_loader.py. `--cpu --quick` runs everything at toy sizes to test the script itself.

    bash bench/gpu_check.sh OUT_DIR          # on the GPU machine (sets up Python, then this)
    python bench/gpu_check.py --cpu --quick --out /tmp/gpucheck.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from losses import build_loss  # noqa: E402
from unet import build_model, count_parameters  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.io import write_json  # noqa: E402
from utils.runtime import machine_facts  # noqa: E402
from utils.training.loop import optimizer_step, step_loss  # noqa: E402

OFFICIAL = {"name": "unet", "n_channels": 4, "n_classes": 2, "base_channels": 64,
            "bilinear": True}


@dataclass(frozen=True)
class Plan:
    """Sizes and step counts: the GPU plan, or toy sizes for --quick."""

    official_size: int = 1024
    batch: int = 8
    big_batches: tuple[int, ...] = (16, 32)
    default_sizes: tuple[int, ...] = (256, 512)
    default_batch: int = 32
    warmup: int = 3
    steps: int = 20
    fp32_steps: int = 8
    infer_batches: tuple[int, ...] = (1, 8)
    infer_reps: int = 10


QUICK = Plan(official_size=64, batch=2, big_batches=(4,), default_sizes=(32, 64), default_batch=2,
             warmup=1, steps=2, fp32_steps=2, infer_batches=(1, 2), infer_reps=2)


class Clock:
    """The run's time budget: measurements ask how much is left before they start."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.perf_counter()
        self.deadline = self.start + budget_s

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh_memory(device: torch.device) -> None:
    """Free cached blocks and reset the peak counter before a measurement."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak memory allocated by tensors since the last reset (GiB), CUDA only."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def synthetic_batch(batch: int, channels: int, size: int, device: torch.device,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-like inputs in [-1, 1] (smooth field + fine noise) and sparse 0/1 masks (~1 %)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, max(1, size // 32), max(1, size // 32), generator=g)
    x = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x = (x + 0.05 * torch.randn(batch, channels, size, size, generator=g)).clamp(0, 1) * 2 - 1
    y = (torch.rand(batch, 1, size, size, generator=g) < 0.01).float()
    return x.to(device), y.to(device)


def train_flops_per_image(model_kw: dict[str, Any], size: int) -> float:
    """Forward + backward FLOPs per image at `size`, counted at 64 px on the CPU and scaled by
    area (convolutions dominate and scale with the pixel count)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(**model_kw)
    x = torch.randn(1, model_kw["n_channels"], 64, 64)
    with FlopCounterMode(display=False) as fc:
        model(x).sum().backward()
    return fc.get_total_flops() * (size / 64) ** 2


def train_rate(device: torch.device, model_kw: dict[str, Any], size: int, batch: int,
               dtype: torch.dtype | None, warmup: int, steps: int, clock: Clock) -> dict[str, Any]:
    """Images/s of whole optimisation steps as train.py runs them, and peak memory."""
    cfg = load_config()
    fresh_memory(device)
    model = build_model(**model_kw).to(device).to(memory_format=torch.channels_last).train()
    criterion = build_loss(cfg["loss"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["train"]["lr"],
                            weight_decay=cfg["train"]["weight_decay"])
    clip = cfg["train"]["grad_clip"]
    x, y = synthetic_batch(batch, model_kw["n_channels"], size, device)
    x = x.contiguous(memory_format=torch.channels_last)

    def step() -> torch.Tensor:
        loss = step_loss(model, x, y, criterion, device, dtype)
        optimizer_step(loss, model, opt, None, clip)
        return loss.detach()

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = 0
    loss = torch.zeros(())
    for _ in range(steps):
        loss = step()
        done += 1
        if clock.left() < 0:
            break
    sync(device)
    dt = time.perf_counter() - t0
    out = {"size": size, "batch": batch, "precision": "bf16" if dtype else "fp32",
           "channels_last": True, "warmup_steps": warmup,
           "warmup_s": round(warm_s, 2), "steps": done, "images_per_s": round(done * batch / dt, 2),
           "s_per_step": round(dt / done, 4), "peak_mem_gib": peak_gib(device),
           "final_loss": round(float(loss), 4)}
    return out


def official_inputs(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, str]:
    """Real faces from examples/ prepared by the official recipe (RGB + texture, [-1, 1]) when
    the data pipeline imports; otherwise synthetic image-like tensors."""
    try:
        from utils.data.dataset import to_input
        from utils.data.images import load_image, resize_image
        from utils.inference.loading import OFFICIAL_RECIPE

        files = sorted((REPO / "examples").glob("*.jpg"))
        if not files:
            raise FileNotFoundError("no examples/*.jpg")
        xs = [to_input(resize_image(load_image(files[i % len(files)]), (size, size)),
                       OFFICIAL_RECIPE) for i in range(batch)]
        return torch.stack(xs).to(device), f"examples/*.jpg faces ({len(files)}), official recipe"
    except Exception as exc:  # the check must run even where the data stack is missing
        x, _ = synthetic_batch(batch, 4, size, device, seed=1)
        return x, f"synthetic ({type(exc).__name__}: {exc})"[:160]


def timed_median(fn: Callable[[], torch.Tensor], device: torch.device, reps: int,
                 clock: Clock) -> tuple[float, torch.Tensor]:
    """Median seconds of fn() over reps (after two warm-up calls), and its last output."""
    out = fn()
    out = fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        if clock.left() < 0:
            break
    return statistics.median(times), out


def inference_latency(device: torch.device, size: int, batch: int, reps: int,
                      clock: Clock) -> dict[str, Any]:
    """Per-image latency of the official U-Net, fp32 against bf16 + channels_last, and how many
    argmax pixels the two agree on."""
    fresh_memory(device)
    torch.manual_seed(0)
    plain = build_model(**OFFICIAL).to(device).eval()
    fast = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    x, source = official_inputs(batch, size, device)
    xc = x.contiguous(memory_format=torch.channels_last)

    def run_plain() -> torch.Tensor:
        with torch.inference_mode():
            return plain(x)

    def run_fast() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            return fast(xc)

    t32, ref = timed_median(run_plain, device, reps, clock)
    t16, out = timed_median(run_fast, device, reps, clock)
    ref, out = ref.float(), out.float()
    agree = (ref.argmax(1) == out.argmax(1)).float().mean().item()
    # Random weights may put every pixel in one class, which makes argmax agreement trivial; so
    # also compare the top 1 % of pixels by class margin (the wrinkle prevalence), cut at the
    # fp32 margin's 99th percentile for both paths, as IoU.
    m32, m16 = ref[:, 1] - ref[:, 0], out[:, 1] - out[:, 0]
    cut = torch.quantile(m32.flatten()[:: max(1, m32.numel() // 1_000_000)], 0.99)
    a, b = m32 > cut, m16 > cut
    iou = ((a & b).sum() / (a | b).sum().clamp(min=1)).item()
    rel = ((m32 - m16).abs().max() / m32.std().clamp(min=1e-12)).item()
    return {"size": size, "batch": batch, "fp32_ms_per_image": round(t32 / batch * 1000, 3),
            "bf16_cl_ms_per_image": round(t16 / batch * 1000, 3),
            "speedup": round(t32 / t16, 2), "mask_agreement": round(agree, 6),
            "class1_share_fp32": round(ref.argmax(1).float().mean().item(), 4),
            "top1pct_iou": round(iou, 4), "max_margin_diff_over_std": round(rel, 4),
            "peak_mem_gib": peak_gib(device), "input": source,
            "weights": "random (published layout)"}


def gpu_facts(device: torch.device) -> dict[str, Any]:
    """The shared machine facts, with the driver and power limit that nvidia-smi reports."""
    facts = machine_facts(device)
    if device.type == "cuda":
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,power.limit",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=15, check=False)
            facts["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            facts["nvidia_smi"] = None
    return facts


class Recorder:
    """Collects results, prints one line each, and rewrites the JSON after every measurement."""

    def __init__(self, out: Path, clock: Clock, head: dict[str, Any],
                 cleanup: Callable[[], None]) -> None:
        self.out, self.clock, self.cleanup = out, clock, cleanup
        self.data: dict[str, Any] = {**head, "results": {}, "skipped": {}, "errors": {}}

    def run(self, key: str, need_s: float, fn: Callable[[], dict[str, Any]]) -> dict | None:
        """Run fn unless fewer than need_s seconds are left; record an OOM or error and go on."""
        if self.clock.left() < need_s:
            self.data["skipped"][key] = f"time budget ({self.clock.left():.0f} s left)"
            print(f"{key}: skipped, {self.clock.left():.0f} s left", flush=True)
            self.save()
            return None
        t0 = time.perf_counter()
        try:
            res = fn()
        except torch.OutOfMemoryError:
            res = None
            self.data["errors"][key] = "out of memory"
            print(f"{key}: out of memory", flush=True)
        except Exception as exc:  # one failed measurement must not lose the others
            res = None
            self.data["errors"][key] = f"{type(exc).__name__}: {exc}"[:500]
            print(f"{key}: error {type(exc).__name__}: {exc}"[:300], flush=True)
        self.cleanup()  # the measurement's tensors (even a failed one's) are released by now
        if res is not None:
            res["wall_s"] = round(time.perf_counter() - t0, 1)
            self.data["results"][key] = res
            shown = {k: v for k, v in res.items() if k not in ("input", "weights")}
            print(f"{key}: {shown}", flush=True)
        self.save()
        return res

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.clock.elapsed(), 1)
        write_json(self.out, self.data)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/gpu_check.json"), help="JSON output")
    p.add_argument("--cpu", action="store_true", help="run on the CPU (to test the script)")
    p.add_argument("--quick", action="store_true", help="toy sizes and 2 steps")
    p.add_argument("--budget", type=float, default=230,
                   help="seconds for the whole run; later measurements are skipped")
    args = p.parse_args()

    clock = Clock(args.budget)
    if args.cpu:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("no CUDA GPU is visible to torch (use --cpu --quick to test the script)",
              file=sys.stderr)
        return 2
    plan = QUICK if args.quick else Plan()
    bf16 = torch.bfloat16
    size, batch = plan.official_size, plan.batch

    cfg_model = load_config()["model"]
    default_kw = {"name": cfg_model["name"], "n_channels": 3, "n_classes": cfg_model["n_classes"],
                  "base_channels": cfg_model["base_channels"], "bilinear": cfg_model["bilinear"]}
    flops_official = train_flops_per_image(OFFICIAL, size)
    flops_default = {s: train_flops_per_image(default_kw, 64) * (s / 64) ** 2
                     for s in plan.default_sizes}
    head = {"machine": gpu_facts(device), "plan": asdict(plan),
            "models": {"official": OFFICIAL | {"params_m": round(count_parameters(
                build_model(**OFFICIAL)) / 1e6, 2)}, "default": default_kw},
            "train_gflops_per_image": {
                f"official_{size}": round(flops_official / 1e9, 1),
                **{f"default_{s}": round(f / 1e9, 1) for s, f in flops_default.items()}},
            "inputs": "synthetic tensors for training (no loader); see inference 'input'",
            "budget_s": args.budget}
    print(json.dumps(head["machine"]), flush=True)
    rec = Recorder(args.out, clock, head, lambda: fresh_memory(device))

    def with_tflops(r: dict[str, Any], flops: float) -> dict[str, Any]:
        r["train_tflops_per_s"] = round(r["images_per_s"] * flops / 1e12, 2)
        return r

    def official_train(b: int, dtype: torch.dtype | None, steps: int,
                       benchmark: bool = False) -> dict[str, Any]:
        torch.backends.cudnn.benchmark = benchmark
        try:
            r = train_rate(device, OFFICIAL, size, b, dtype, plan.warmup, steps, clock)
        finally:
            torch.backends.cudnn.benchmark = False
        r["cudnn_benchmark"] = benchmark
        return with_tflops(r, flops_official)

    rec.run(f"train_official_{size}_bf16_b{batch}", 20,
            lambda: official_train(batch, bf16, plan.steps))
    for b in plan.infer_batches:
        rec.run(f"infer_official_{size}_b{b}", 10,
                lambda b=b: inference_latency(device, size, b, plan.infer_reps, clock))
    for s, flops in flops_default.items():
        rec.run(f"train_default_{s}_bf16_b{plan.default_batch}", 15,
                lambda s=s, flops=flops: with_tflops(train_rate(
                    device, default_kw, s, plan.default_batch, bf16, plan.warmup, plan.steps,
                    clock), flops))
    rec.run(f"train_official_{size}_fp32_b{batch}", 30,
            lambda: official_train(batch, None, plan.fp32_steps))
    rec.run(f"train_official_{size}_bf16_b{batch}_cudnn_benchmark", 20,
            lambda: official_train(batch, bf16, plan.steps, benchmark=True))
    for b in plan.big_batches:
        r = rec.run(f"train_official_{size}_bf16_b{b}", 30,
                    lambda b=b: official_train(b, bf16, max(2, plan.steps // 2)))
        if r is None:
            break  # out of memory (or time): a larger batch will not fit either
    rec.save()
    print(f"written {args.out} ({clock.elapsed():.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
