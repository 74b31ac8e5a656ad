#!/usr/bin/env python
"""Inference latency on this machine: plain fp32 eager (as the FFHQ-Wrinkle authors' inference
script runs a model) against every backend side by side: the torch fast path (BatchNorm folded
into the convolutions, channels_last, inference mode, bf16 autocast where the CPU has it),
OpenVINO int8 (NNCF post-training quantisation, calibrated on the example faces as the predictor
does), OpenVINO with the bf16 (where the CPU has it) and the fp32 precision hint, and ONNX
Runtime fp32; each with its mask agreement with fp32 eager. `fast_s` is the default path's time
(`--backend auto --precision auto`: OpenVINO int8 on x86 CPUs, see
utils/inference/backends.resolve_precision). The JSON's machine facts name the CPU class; run it
as on an AVX2-only CPU with `.ci/avx2 .venv/bin/python bench/bench_infer.py`.

Models: the official U-Net architecture (4 channels, 2 classes, 17.3 M parameters; random weights
from its published parameter layout, since the official weights cannot be downloaded here) and the
default model (the bundled checkpoint, or its architecture if the file is absent), each at 512
and 1024 px (and the default at its native 256), and the frame model of clips and the webcam
(res/cp/frames_ffhq256.pth) at 256, on real faces from ../shared. Also the whole-request latency
of the app's handler on a real face, with and without flips (--tta flip). Times are medians per
image.

    python bench/bench_infer.py --out runs/bench_infer.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.common import DATA, run_cli
from unet import UNet
from utils.data.dataset import to_input
from utils.data.images import load_image, resize_image
from utils.inference.backends import (
    OpenVINOModule,
    convert_model,
    export_onnx,
    int8_kernels,
    openvino_available,
    resolve_backend,
    resolve_precision,
    to_openvino,
)
from utils.inference.loading import (
    DEFAULT_CHECKPOINT,
    FRAME_CHECKPOINT,
    OFFICIAL_RECIPE,
    fold_batchnorm,
)
from utils.inference.predictor import WrinklePredictor
from utils.inference.quantize import (
    calibration_inputs,
    example_calibration,
    nncf_available,
    quantize,
)
from utils.io import write_json
from utils.runtime import cpu_has_bf16, logits_to_probs, machine_facts


def faces(n: int) -> list[np.ndarray]:
    masks = sorted((DATA / "manual_wrinkle_masks").glob("*.png"))
    if not masks:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(n)]
    return [load_image(DATA / "images256x256" / f"{p.stem}.jpg") for p in masks[-n:]]


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up: oneDNN kernel selection, allocations
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def decide(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    return logits_to_probs(logits) > threshold


def _runners(model: torch.nn.Module, recipe: dict, size: int) -> dict:
    """Every backend as a function of one float32 NCHW input: name -> fn(x) -> logits."""
    channels = int(recipe.get("in_channels", 3))
    recipe = dict(recipe, image_size=size)
    fast = fold_batchnorm(copy.deepcopy(model)).to(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if cpu_has_bf16() else None

    def torch_fast(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            return fast(x.contiguous(memory_format=torch.channels_last))

    runners = {f"torch_{'bf16' if dtype else 'fp32'}": torch_fast}
    if openvino_available():
        folded = fold_batchnorm(copy.deepcopy(model))
        precisions = (["int8"] if int8_kernels() and nncf_available() else []) + \
            (["bf16"] if dtype else []) + ["fp32"]
        for precision in precisions:
            if precision == "int8":  # calibrated as the predictor does, at this size
                ov_model = quantize(convert_model(folded, channels), calibration_inputs(
                    example_calibration(recipe), recipe))
                runners["openvino_int8"] = OpenVINOModule(ov_model, "int8")
            else:
                runners[f"openvino_{precision}"] = to_openvino(folded, recipe, precision)
    try:
        import tempfile

        import onnxruntime as ort

        from utils.inference.loading import LoadedModel

        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(LoadedModel("ours", "bench", {"in_channels": channels}, 0.5,
                                           copy.deepcopy(model)), Path(tmp) / "m.onnx")
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def ort_run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])

        runners["onnxruntime_fp32"] = ort_run
    except ImportError:
        pass
    return runners


def _default_runner(backends: dict) -> str:
    """The runner that `--backend auto --precision auto` amounts to on this machine."""
    cpu = torch.device("cpu")
    chosen = resolve_backend("auto", cpu)
    return f"{chosen}_{resolve_precision('auto', chosen, cpu)}"


def compare(model: torch.nn.Module, recipe: dict, size: int, images: list[np.ndarray],
            threshold: float, repeats: int) -> dict:
    """fp32 eager against every backend on the same inputs: median seconds per image and the
    share of mask pixels that agree with fp32 eager."""
    xs = [to_input(resize_image(img, (size, size)), recipe, None)[None] for img in images]
    if size <= 256:  # tens of ms: a few repeats are within the noise of the machine
        repeats = max(repeats, 20)
    plain = copy.deepcopy(model).eval()
    runners = _runners(model, recipe, size)
    t_plain, refs = [], []
    for x in xs:
        with torch.no_grad():
            tp, ref = timed(lambda x=x: plain(x), repeats)
        t_plain.append(tp)
        refs.append(decide(ref, threshold))
    backends = {}
    for name, fn in runners.items():
        times, agree = [], []
        for x, ref in zip(xs, refs, strict=True):
            t, out = timed(lambda x=x, fn=fn: fn(x), repeats)
            times.append(t)
            agree.append(float((ref == decide(out, threshold)).float().mean()))
        backends[name] = {"s": round(statistics.median(times), 4),
                          "mask_agreement": round(min(agree), 6)}
    fp32 = statistics.median(t_plain)
    default = _default_runner(backends)
    fst = backends[default]["s"]
    ov32 = backends.get("openvino_fp32", {}).get("s")
    return {"fp32_eager_s": round(fp32, 4), "fast_s": fst, "speedup": round(fp32 / fst, 2),
            "speedup_vs_openvino_fp32": round(ov32 / fst, 2) if ov32 else None,
            "mask_agreement": backends[default]["mask_agreement"], "default_backend": default,
            "images": len(xs), "backends": backends}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_infer.json", help="JSON output file")
    p.add_argument("--images", type=int, default=2, help="real faces per setting")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per image (median)")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    args = p.parse_args()
    torch.manual_seed(0)
    images = faces(args.images)
    facts = machine_facts()
    print(f"CPU: {facts['cpu']}, class {facts['cpu_class']}"
          + (f" (capped by ONEDNN_MAX_CPU_ISA={facts['isa_cap']})" if facts["isa_cap"] else ""),
          flush=True)
    results: dict[str, dict] = {}

    official = UNet(4, 2, bilinear=True).eval()
    for size in args.sizes:
        r = compare(official, OFFICIAL_RECIPE, size, images, 0.5, args.repeats)
        results[f"official_unet_{size}"] = r | {"weights": "random (published layout)"}
        print(f"official_unet_{size}: {r}", flush=True)

    from utils.checkpoints import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    model = model_from_checkpoint(ckpt)
    recipe, thr, weights = ckpt["preprocess"], ckpt["threshold"], DEFAULT_CHECKPOINT.name
    for size in sorted({256, *args.sizes}):
        r = compare(model, recipe, size, images, thr, args.repeats)
        results[f"default_{size}"] = r | {"weights": weights}
        print(f"default_{size}: {r}", flush=True)
    if FRAME_CHECKPOINT.is_file():  # the frame model of clips and the webcam, at its 256 px
        ckpt = load_checkpoint(FRAME_CHECKPOINT)
        r = compare(model_from_checkpoint(ckpt), ckpt["preprocess"], 256, images,
                    ckpt["threshold"], args.repeats)
        results["frames_256"] = r | {"weights": FRAME_CHECKPOINT.name}
        print(f"frames_256: {r}", flush=True)

    try:
        from app import run_prediction

        fast = WrinklePredictor()
        t, _ = timed(lambda: run_prediction(fast, images[0], fast.threshold), args.repeats)
        results["app_request"] = {"seconds": round(t, 4), "model": fast.description,
                                  "input": f"{images[0].shape[1]}x{images[0].shape[0]} face"}
        print(f"app_request: {results['app_request']}", flush=True)
        # The same request with flips served (--tta flip: each face averaged with its mirror
        # image), the cost of step 4's quality option.
        flips = WrinklePredictor(tta="flip")
        t, _ = timed(lambda: run_prediction(flips, images[0], flips.threshold), args.repeats)
        results["app_request_flips"] = {"seconds": round(t, 4), "model": flips.description,
                                        "input": results["app_request"]["input"]}
        print(f"app_request_flips: {results['app_request_flips']}", flush=True)
        # A phone photo of 6000x6000 px from disk: decode, scaling for display, face finding,
        # alignment, model, paste-back, overlay, heatmap and table.
        import tempfile

        import cv2

        with tempfile.TemporaryDirectory() as tmp:
            big = np.full((6000, 6000, 3), 120, np.uint8)
            big[1000:5000, 1000:5000] = cv2.resize(images[0], (4000, 4000),
                                                   interpolation=cv2.INTER_CUBIC)
            path = Path(tmp) / "photo.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(big, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
            t, _ = timed(lambda: run_prediction(fast, str(path), fast.threshold), args.repeats)
        results["app_request_6000"] = {"seconds": round(t, 4), "model": fast.description,
                                       "input": "6000x6000 JPEG file (a face 4000 px across)"}
        print(f"app_request_6000: {results['app_request_6000']}", flush=True)
    except ImportError as exc:
        print(f"app_request: skipped ({exc})")
    results["machine"] = facts
    write_json(args.out, results)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
