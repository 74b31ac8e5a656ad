#!/usr/bin/env python
"""Where OpenVINO's time goes, layer by layer: the official U-Net (random weights in its
published layout) or the bundled model, compiled in int8 (NNCF, calibrated on the example faces
as the predictor does) and in float32, each convolution's time from OpenVINO's own counters,
its GOP (2 x multiply-adds) and GOP/s, and int8's speed-up over float32 layer by layer.

Why: on an AVX2-only CPU an int8 convolution is two instructions (vpmaddubsw, vpmaddwd) for 32
multiply-adds where float32 is one FMA for 8, so int8 can be at most about 2x float32 there; when
every large layer shows about 2x, int8 is at AVX2's limit and only fewer operations (a smaller
model or a smaller input) make it faster. Run it as on an AVX2-only CPU with `.ci/avx2`.

    python bench/bench_layers.py --out runs/bench_layers.json
    .ci/avx2 .venv/bin/python bench/bench_layers.py --size 1024 --out runs/bench_layers_avx2.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.common import run_cli, save
from unet import UNet
from utils.inference.backends import OpenVINOModule, convert_model
from utils.inference.loading import (
    DEFAULT_CHECKPOINT,
    OFFICIAL_RECIPE,
    fold_batchnorm,
    load_any_checkpoint,
)
from utils.inference.quantize import (
    calibration_images,
    calibration_inputs,
    example_calibration,
    quantize,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("official", "bundled"), default="official",
                   help="the official U-Net (4 channels in) or the bundled model (default "
                        "%(default)s)")
    p.add_argument("--size", type=int, default=1024, help="input side in pixels (default 1024)")
    p.add_argument("--repeats", type=int, default=3, help="profiled runs (median per layer)")
    p.add_argument("--out", default="runs/bench_layers.json", help="JSON output file")
    args = p.parse_args(argv)
    if args.size < 32 or args.size % 16:
        p.error(f"--size {args.size}: give a multiple of 16, at least 32")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def profile(module: OpenVINOModule, x: np.ndarray, repeats: int) -> tuple[float, dict]:
    """Median wall time of one inference and, per convolution, its median time (OpenVINO's
    counters) and kernel."""
    request = module.compiled.create_infer_request()
    request.infer({0: x})
    walls, per_layer = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        request.infer({0: x})
        walls.append(time.perf_counter() - t0)
        for info in request.profiling_info:
            if info.node_type == "Convolution":
                entry = per_layer.setdefault(info.node_name, {"s": [], "kernel": info.exec_type})
                entry["s"].append(info.real_time.total_seconds())
    return statistics.median(walls), {k: {"s": statistics.median(v["s"]),
                                          "kernel": v["kernel"]} for k, v in per_layer.items()}


def conv_gop(ov_model: Any, size: int) -> dict[str, float]:
    """GOP of each convolution of a float OpenVINO model at this input size (2 x output
    elements x input channels x kernel area)."""
    ov_model = ov_model.clone()
    ov_model.reshape({0: [1, ov_model.input(0).get_partial_shape()[1].get_length(), size, size]})
    out = {}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() == "Convolution":
            n, c_out, h, w = op.get_output_shape(0)
            _, c_in, kh, kw = op.get_input_shape(1)
            out[op.get_friendly_name()] = 2.0 * n * c_out * h * w * c_in * kh * kw / 1e9
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    if args.model == "official":
        model, recipe, channels = UNet(4, 2, bilinear=True).eval(), OFFICIAL_RECIPE, 4
    else:
        loaded = load_any_checkpoint(DEFAULT_CHECKPOINT)
        model, recipe = loaded.model, loaded.recipe
        channels = int(recipe.get("in_channels", 3))
    recipe = dict(recipe, image_size=args.size)
    float_model = convert_model(fold_batchnorm(copy.deepcopy(model)).float().eval(), channels)
    int8_model = quantize(float_model, calibration_inputs(example_calibration(recipe), recipe))
    x = calibration_inputs(calibration_images()[1:2], recipe)[0]  # a mirrored example face
    gop = conv_gop(float_model, args.size)
    runs = {}
    for name, ov_model in (("int8", int8_model), ("fp32", float_model)):
        module = OpenVINOModule(ov_model, name, profile=True)
        runs[name] = profile(module, x, args.repeats)
        print(f"{name}: {runs[name][0]:.3f} s a face", flush=True)
    layers = []
    for layer, g in gop.items():
        i8 = runs["int8"][1].get(layer)
        f32 = runs["fp32"][1].get(layer)
        if i8 is None or f32 is None:
            continue
        layers.append({"layer": layer, "gop": round(g, 2), "int8_s": round(i8["s"], 4),
                       "fp32_s": round(f32["s"], 4), "int8_kernel": i8["kernel"],
                       "int8_gop_per_s": round(g / max(i8["s"], 1e-9), 1),
                       "int8_speedup": round(f32["s"] / max(i8["s"], 1e-9), 2)})
    big = [r for r in layers if r["gop"] >= 0.1 * max(r["gop"] for r in layers)]
    conv_i8 = sum(r["int8_s"] for r in layers)
    summary = {"model": args.model, "size": args.size, "int8_s": round(runs["int8"][0], 4),
               "fp32_s": round(runs["fp32"][0], 4),
               "int8_speedup": round(runs["fp32"][0] / runs["int8"][0], 2),
               "conv_share_of_int8": round(conv_i8 / runs["int8"][0], 3),
               "large_layers_int8_speedup": [min(r["int8_speedup"] for r in big),
                                             round(statistics.median(r["int8_speedup"]
                                                                     for r in big), 2),
                                             max(r["int8_speedup"] for r in big)],
               "gop": round(sum(gop.values()), 1)}
    print(f"{'layer':58s} {'GOP':>7s} {'int8 ms':>8s} {'fp32 ms':>8s} {'GOP/s':>7s} {'x':>5s}")
    for r in layers:
        print(f"{r['layer'][:58]:58s} {r['gop']:7.2f} {1000 * r['int8_s']:8.1f} "
              f"{1000 * r['fp32_s']:8.1f} {r['int8_gop_per_s']:7.1f} {r['int8_speedup']:5.2f}")
    print(f"convolutions: {summary['conv_share_of_int8']:.1%} of int8's time; large layers' "
          f"int8 speed-up min/median/max {summary['large_layers_int8_speedup']}; whole model "
          f"{summary['int8_speedup']}x ({summary['int8_s']} s against {summary['fp32_s']} s)")
    save({"summary": summary, "layers": layers}, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
