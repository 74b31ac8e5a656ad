"""Device and precision choices, made in one place for training, evaluation and inference.

CPUs with AVX-512 bf16 (or AMX) run the U-Net several times faster under bfloat16 autocast with
channels_last than in float32, so `auto` picks bf16 there; CUDA gets bf16 where supported and fp16
(with a gradient scaler in training) elsewhere. CUDA is never asked for when there is none.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from utils.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """auto -> the first CUDA device if present, else the CPU; an unavailable device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but no CUDA GPU is available")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device '{name}' is not supported (use auto, cpu, cuda or cuda:N)")
    return device


# What the CPU classes are called in figures and JSON, from the least to the most capable.
CPU_CLASSES = ("avx2", "avx512", "avx512_bf16", "amx")
# oneDNN's ISA cap (torch and OpenVINO both honour it): a value here caps the class we report.
_ISA_CAPS = {"SSE41": "avx2", "AVX": "avx2", "AVX2": "avx2", "AVX2_VNNI": "avx2",
             "AVX2_VNNI_2": "avx2", "AVX512_CORE": "avx512", "AVX512_CORE_VNNI": "avx512",
             "AVX512_CORE_BF16": "avx512_bf16", "AVX10_1_512": "avx512_bf16",
             "AVX512_CORE_FP16": "avx512_bf16", "AVX512_CORE_AMX": "amx",
             "AVX10_1_512_AMX": "amx", "AVX512_CORE_AMX_FP16": "amx",
             "AVX10_1_512_AMX_FP16": "amx", "ALL": "amx"}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_class() -> str:
    """The CPU's class for inference: "amx", "avx512_bf16", "avx512" or "avx2" (also any older
    or non-x86 CPU). The hardware's flags, capped by ONEDNN_MAX_CPU_ISA when it is set: that is
    how .ci/avx2 runs everything as on an AVX2-only CPU (torch's and OpenVINO's oneDNN kernels
    honour the same variable, so what we choose and what they run agree)."""
    checks = {"amx": getattr(torch.cpu, "_is_amx_tile_supported", lambda: False),
              "avx512_bf16": getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False),
              "avx512": getattr(torch.cpu, "_is_avx512_supported", lambda: False)}
    found = next((c for c, has in checks.items() if has()), None)
    if found is None:
        flags = _cpu_flags()
        found = ("amx" if "amx_tile" in flags else "avx512_bf16" if "avx512_bf16" in flags
                 else "avx512" if "avx512f" in flags else "avx2")
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap in _ISA_CAPS:
        found = min(found, _ISA_CAPS[cap], key=CPU_CLASSES.index)
    return found


def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX-512 bf16 or AMX), as cpu_class
    sees it (so an ISA cap of AVX2 turns bf16 off, as it does in oneDNN)."""
    return cpu_class() in ("avx512_bf16", "amx")


def amp_dtype(device: torch.device, mode: str = "auto") -> torch.dtype | None:
    """The autocast dtype for a device and an `amp` setting (auto | bf16 | fp16 | off)."""
    if mode == "off":
        return None
    if device.type == "cuda":
        if mode == "fp16":
            return torch.float16
        if mode == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if mode == "fp16":
        raise UserError("amp fp16 is only supported on CUDA; use bf16 or off on the CPU")
    if mode == "bf16" or cpu_has_bf16():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast when a dtype is given, a no-op context otherwise."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """Wrinkle probability (N, H, W) in float32 from a 1-logit or a 2-class head."""
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    if logits.shape[1] == 2:
        return torch.softmax(logits, dim=1)[:, 1]
    raise ValueError(f"expected 1 or 2 output channels, got {logits.shape[1]}")


def cpu_model() -> str:
    """The CPU's model name (figures depend on it: AMX, AVX-512 bf16 or neither)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def machine_facts(device: torch.device | None = None) -> dict[str, Any]:
    """What a benchmark figure was measured on: CPU, cores, threads, bf16, library versions, and
    the GPU with its precision flags when `device` is a CUDA device. Every bench/ JSON has it."""
    import platform

    import cv2

    facts: dict[str, Any] = {
        "cpu": cpu_model(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cpu_class": cpu_class(), "cpu_bf16": cpu_has_bf16(),
        "cpu_amx": cpu_class() == "amx",
        "isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": str(torch.__version__), "numpy": np.__version__, "opencv": cv2.__version__}
    if device is not None and device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        facts |= {"device": str(device), "gpu": p.name,
                  "gpu_memory_gib": round(p.total_memory / 2**30, 1),
                  "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                  "bf16_supported": torch.cuda.is_bf16_supported(), "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(),
                  "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                  "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                  "cudnn_benchmark": torch.backends.cudnn.benchmark}
    return facts


# Seconds per named stage while a `profile_stages()` block is open (benchmarks); else nothing.
_stages: dict[str, float] | None = None


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Count the time of a block under `name` when stages are being profiled (else a no-op)."""
    if _stages is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _stages[name] = _stages.get(name, 0.0) + time.perf_counter() - t0


@contextlib.contextmanager
def profile_stages() -> Iterator[dict[str, float]]:
    """Collect the seconds of every `stage` block run inside this one (one thread at a time)."""
    global _stages
    before, _stages = _stages, {}
    try:
        yield _stages
    finally:
        _stages = before
