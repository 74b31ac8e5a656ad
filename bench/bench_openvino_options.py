#!/usr/bin/env python
"""OpenVINO settings for the bundled model at 256 px: dynamic against static input shapes, the
latency against the throughput hint, and batches of faces; bf16 precision hint, medians.

    python bench/bench_openvino_options.py --out runs/bench_openvino_options.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import run_cli
from utils.inference.backends import convert_model, require_openvino
from utils.inference.backends import core as openvino_core
from utils.inference.loading import (
    DEFAULT_CHECKPOINT,
    fold_batchnorm,
    load_any_checkpoint,
)
from utils.io import write_json
from utils.runtime import cpu_has_bf16, machine_facts


def timed(compiled: object, x: np.ndarray, repeats: int) -> float:
    compiled(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        compiled(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  python bench/bench_openvino_options.py "
                                       "--out runs/bench_openvino_options.json")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    require_openvino()
    model = fold_batchnorm(load_any_checkpoint(DEFAULT_CHECKPOINT).model.float().eval())
    prec = "bf16" if cpu_has_bf16() else "f32"
    core = openvino_core()
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    res: dict[str, float] = {}
    for hint in ("LATENCY", "THROUGHPUT"):
        c = core.compile_model(convert_model(model, 3), "CPU",
                               {"INFERENCE_PRECISION_HINT": prec, "PERFORMANCE_HINT": hint})
        res[f"dynamic_{hint.lower()}_s"] = timed(c, x, args.repeats)
    static = convert_model(model, 3)
    static.reshape([1, 3, 256, 256])
    c = core.compile_model(static, "CPU", {"INFERENCE_PRECISION_HINT": prec,
                                           "PERFORMANCE_HINT": "LATENCY"})
    res["static_latency_s"] = timed(c, x, args.repeats)
    dyn = core.compile_model(convert_model(model, 3), "CPU", {"INFERENCE_PRECISION_HINT": prec,
                                                          "PERFORMANCE_HINT": "LATENCY"})
    for b in (1, 2, 4, 8):
        xb = np.repeat(x, b, axis=0)
        res[f"batch_{b}_s_per_face"] = timed(dyn, xb, args.repeats) / b
    for k, v in res.items():
        print(f"{k:28} {v:.4f}")
    if args.out:
        write_json(args.out, res | {"precision_hint": prec, "size": 256,
                                    "machine": machine_facts()})
        print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
