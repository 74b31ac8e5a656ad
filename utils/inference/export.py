"""Export a model for shipping or deployment (the library behind export.py at the root).

A .pth or .safetensors export keeps the weights only (no optimizer, RNG or history), in half
precision if asked, with its recipe, split, metrics and an optional new decision threshold; with
an out-of-fold report it carries the recipe's cross-validation figures (`out_of_fold_summary`),
and with check images the source's float32 masks of them (`fp32_reference`), so that anyone can
check later that the shipped weights still give them (`check_reference`). ONNX and OpenVINO IR
exports take any checkpoint the predictor reads and carry its recipe and threshold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from utils.errors import UserError
from utils.io import check_output_file

# What the predictor loads, by suffix: the format written there.
FORMATS = {".pth": "pth", ".pt": "pth", ".safetensors": "pth", ".onnx": "onnx",
           ".xml": "openvino"}
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "history", "stale_epochs")


def out_of_fold_summary(report_path: str | Path, threshold: float | None) -> dict[str, Any]:
    """The figures of a cross-validation report worth carrying in a model file.

    `threshold` None: the threshold that was best out of fold. The pooled F1 at the chosen
    threshold is the one read from the report's threshold table, never recomputed elsewhere.
    """
    path = Path(report_path)
    try:
        rep = json.loads(path.read_text(encoding="utf-8"))
        table = dict(zip(rep["thresholds"]["candidates"], rep["thresholds"]["pooled_f1"],
                         strict=True))
        best = rep["thresholds"]["best"]
        pooled, spread = rep["pooled"], rep["fold_spread"]["f1"]
        k, faces = rep["k"], rep["faces"]
    except FileNotFoundError:
        raise UserError(f"{path}: cross-validation report not found") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a report of bench/cross_validate.py ({e})") from None
    thr = float(best) if threshold is None else float(threshold)
    match = [c for c in table if abs(c - thr) < 1e-9]
    if not match:
        raise UserError(f"--threshold {thr}: {path} has no out-of-fold F1 at it (its candidates: "
                        f"{', '.join(f'{c:g}' for c in table)})")
    return {"report": str(path), "k": k, "faces": faces, "fold_seed": rep.get("seed"),
            "threshold": thr, "f1_at_threshold": float(table[match[0]]),
            "best_threshold": float(best),
            "pooled_at_report_threshold": {"threshold": rep["threshold"], **pooled},
            "fold_f1_mean": spread["mean"], "fold_f1_sd": spread["sd"],
            "fold_f1": rep["folds"]["f1"]}


def fp32_masks(checkpoint: str | Path | dict, images: list[Path],
               threshold: float | None = None) -> list[np.ndarray]:
    """Masks of a checkpoint (a file, or a checkpoint dict of float32 weights) in plain float32
    torch inference on aligned faces (as trained)."""
    import tempfile

    from utils.checkpoints import save_checkpoint
    from utils.data.images import load_image
    from utils.inference.predictor import WrinklePredictor

    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(checkpoint, dict):  # the predictor loads files: this one lives a moment
            path = Path(tmp) / "reference.pth"
            save_checkpoint(path, checkpoint)
            checkpoint = path
        pred = WrinklePredictor(checkpoint, precision="fp32", face_region="none",
                                backend="torch")
        return [pred.predict_aligned(load_image(p), threshold).mask for p in images]


def export_checkpoint(src: str | Path | list[str | Path], dst: str | Path, half: bool = False,
                      threshold: float | None = None, note: str | None = None,
                      oof_report: str | Path | None = None, threshold_from_oof: bool = False,
                      reference_images: list[Path] | None = None,
                      tta: str | None = None) -> dict:
    """Write the slimmed checkpoint; return it. Several sources make one ensemble checkpoint
    (their probabilities averaged); tta "none" or "flip" sets the test-time augmentation it
    serves."""
    import torch

    from utils.checkpoints import ensemble_checkpoint, load_checkpoint, save_checkpoint

    sources = [str(s) for s in src] if isinstance(src, list) else [str(src)]
    ckpts = [load_checkpoint(s) for s in sources]
    ckpt = ckpts[0] if len(ckpts) == 1 else ensemble_checkpoint(ckpts, sources)
    if tta is not None:
        ckpt["model"] = dict(ckpt["model"], tta=tta)
    if threshold_from_oof and oof_report is None:
        raise UserError("--threshold oof needs --oof-report")
    if oof_report is not None:
        oof = out_of_fold_summary(oof_report, None if threshold_from_oof else
                                  (threshold if threshold is not None
                                   else ckpt.get("threshold", 0.5)))
        threshold = oof["threshold"]
    out = {k: v for k, v in ckpt.items() if k not in (*RESUME_KEYS, "format", "format_version")}
    if half:
        out["state_dict"] = {k: v.half() if v.is_floating_point() else v
                             for k, v in ckpt["state_dict"].items()}
        out["storage"] = "float16 weights (cast to float32 when loaded)"
    if threshold is not None:
        if not 0 < threshold < 1:
            raise UserError(f"--threshold must be between 0 and 1, got {threshold}")
        out["threshold"] = float(threshold)
    if oof_report is not None:
        out["out_of_fold"] = oof
    if reference_images:
        thr = float(out.get("threshold", 0.5))
        masks = fp32_masks(ckpt | {k: out[k] for k in ("model", "threshold")}, reference_images,
                           thr)
        out["fp32_reference"] = {
            "images": [p.name for p in reference_images], "threshold": thr,
            "shapes": [list(m.shape) for m in masks],
            "masks": [torch.from_numpy(np.packbits(m.astype(bool).ravel())) for m in masks]}
    out["exported_from"] = sources[0] if len(sources) == 1 else sources
    if note:
        out["note"] = note
    dst = Path(dst)
    if dst.suffix == ".safetensors":
        from utils.inference.loading import save_safetensors

        save_safetensors(out, dst)
    else:
        save_checkpoint(dst, out)
    return out


def export_deployable(src: str | Path, dst: str | Path, fmt: str, tta: str | None = None,
                      int8: bool = False, calibration: str | Path | None = None) -> Path:
    """Write any loadable checkpoint as ONNX or OpenVINO IR, recipe (and tta) included; IR
    quantised to int8 if asked (utils/inference/quantize.py)."""
    from utils.checkpoints import with_tta
    from utils.inference.backends import export_onnx, export_openvino
    from utils.inference.loading import load_any_checkpoint

    loaded = load_any_checkpoint(src)
    if loaded.model is None or loaded.kind == "texture_baseline":
        raise UserError(f"{src}: nothing to export")
    if tta is not None:
        loaded.model = with_tta(loaded.model, tta)
    if fmt == "onnx":
        return export_onnx(loaded, dst)
    return export_openvino(loaded, dst, int8, calibration)


def check_reference(checkpoint: str | Path, images: str | Path | list[Path],
                    backend: str = "torch", precision: str = "fp32") -> dict[str, float]:
    """Share of pixels where the file's masks equal its stored float32 reference, per image.

    The reference was made from the float32 weights before export; a float16 file must give
    (nearly) the same masks, in every backend. `images`: the folder holding the reference
    faces, or their paths.
    """
    from utils.checkpoints import load_checkpoint
    from utils.data.images import load_image
    from utils.inference.predictor import WrinklePredictor

    ref = load_checkpoint(checkpoint).get("fp32_reference")
    if not ref:
        raise UserError(f"{checkpoint}: holds no fp32_reference (export it with --check-images)")
    pred = WrinklePredictor(checkpoint, precision=precision, face_region="none", backend=backend)
    by_name = ({p.name: Path(p) for p in images} if isinstance(images, list)
               else {n: Path(images) / n for n in ref["images"]})
    out = {}
    for name, shape, packed in zip(ref["images"], ref["shapes"], ref["masks"], strict=True):
        path = by_name.get(name, Path(name))
        if not path.is_file():
            raise UserError(f"{path}: reference image of {checkpoint} not found")
        want = np.unpackbits(packed.numpy(), count=int(np.prod(shape))).reshape(shape).astype(bool)
        got = pred.predict_aligned(load_image(path), ref["threshold"]).mask.astype(bool)
        out[name] = float((got == want).mean())
    return out


def mask_agreement(a: str | Path, b: str | Path, images: list[Path], tta: str | None = None
                   ) -> float:
    """Smallest per-image share of equal mask pixels between two checkpoints (fp32 inference,
    both at the first one's threshold: this checks the weights, not a changed threshold; `tta`:
    the first one's test-time augmentation, when the second was exported with another)."""
    from utils.data.images import load_image
    from utils.inference.predictor import WrinklePredictor

    pa = WrinklePredictor(a, precision="fp32", face_region="none", backend="torch", tta=tta)
    pb = WrinklePredictor(b, precision="fp32", face_region="none", backend="auto")
    worst = 1.0
    for path in images:  # aligned faces: the model on the image itself, as it was trained
        img = load_image(path)
        ma, mb = pa.predict_aligned(img).mask, pb.predict_aligned(img, pa.threshold).mask
        worst = min(worst, float((ma == mb).mean()))
    return worst


def export(src: str | Path | list[str | Path], dst: str | Path, fmt: str = "auto",
           half: bool = False, threshold: str | None = None, note: str | None = None,
           oof_report: str | Path | None = None,
           check_images: list[Path] | None = None, overwrite: bool = False,
           tta: str | None = None, int8: bool = False,
           calibration: str | Path | None = None) -> list[str]:
    """Export `src` to `dst` after checking every argument; returns the lines to show the user.

    src: one checkpoint, or several of one recipe: an ensemble (.pth / .safetensors only).
    threshold: a number as text, "oof" (the best of `oof_report`) or None (keep the source's).
    Only formats the predictor loads are written; an existing file is replaced only with
    `overwrite`. With check_images the export is removed again when its masks disagree with the
    source's. int8: an OpenVINO IR quantised on the example faces, or on the aligned faces of
    the folder `calibration`.
    """
    from_oof = threshold == "oof"
    thr = None
    if threshold is not None and not from_oof:
        try:
            thr = float(threshold)
        except ValueError:
            raise UserError(f"--threshold {threshold}: neither a number nor 'oof'") from None
    check_images = [Path(i) for i in check_images or []]
    for img in check_images:
        if img.is_dir():
            raise UserError(f"{img}: --check-images takes image files, and this is a folder "
                            f"(give its images, e.g. {img}/*.jpg)")
        if not img.is_file():
            raise UserError(f"{img}: --check-images file not found")
    sources = [Path(s) for s in src] if isinstance(src, list) else [Path(src)]
    for s in sources:
        if not s.is_file():
            raise UserError(f"{s}: " + ("a folder, not a checkpoint file" if s.is_dir()
                                        else "checkpoint not found"))
        if Path(dst).resolve() == s.resolve():
            raise UserError(f"{dst}: the output would overwrite the input")
    if len(set(map(Path.resolve, sources))) < len(sources):
        raise UserError("an ensemble needs different checkpoints; one was given twice")
    suffix = Path(dst).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{dst}: {suffix or 'no suffix'} is not a model format the predictor "
                        f"loads; name the output {', '.join(FORMATS)} (.xml: OpenVINO)")
    if fmt == "auto":
        fmt = FORMATS[suffix]
    if fmt != FORMATS[suffix]:
        raise UserError(f"{dst}: --format {fmt} is written to a "
                        f"{' or '.join(s for s, f in FORMATS.items() if f == fmt)} file")
    if (int8 or calibration is not None) and fmt != "openvino":
        raise UserError(f"{dst}: --int8 writes an OpenVINO model: name the output .xml")
    if calibration is not None and not int8:
        raise UserError("--calibration is the int8 quantisation's faces: give --int8 with it")
    if calibration is not None and not Path(calibration).is_dir():
        raise UserError(f"{calibration}: calibration folder not found")
    check_output_file(dst, overwrite, "the output")
    if suffix == ".xml":
        check_output_file(Path(dst).with_suffix(".bin"), overwrite, "the output's .bin")
    if fmt == "pth":
        export_checkpoint([str(s) for s in sources], dst, half, thr, note, oof_report, from_oof,
                          check_images, tta)
    else:
        if half or threshold is not None or note or oof_report:
            raise UserError("--half, --threshold, --oof-report and --note apply to "
                            ".pth/.safetensors exports")
        if len(sources) > 1:
            raise UserError(f"{dst}: an ensemble is written as .pth or .safetensors first; "
                            "export that file to ONNX or OpenVINO")
        export_deployable(sources[0], dst, fmt, tta, int8, calibration)
    size = sum(f.stat().st_size for f in (Path(dst), Path(dst).with_suffix(".bin"))
               if f.is_file() and (f == Path(dst) or suffix == ".xml")) / 1e6
    lines = [f"written {dst} ({size:.1f} MB)"]
    if check_images:
        if fmt == "pth":  # the source's float32 masks are stored in the file: compare with them
            agree = min(check_reference(dst, check_images, backend="auto").values())
        else:
            agree = mask_agreement(sources[0], dst, check_images, tta)
        what = sources[0] if len(sources) == 1 else f"the {len(sources)} sources"
        lines.append(f"mask agreement with {what}: {100 * agree:.3f} % (worst image)")
        if agree < 0.995:
            for f in (Path(dst), Path(dst).with_suffix(".bin") if suffix == ".xml" else None):
                if f is not None:
                    f.unlink(missing_ok=True)
            raise UserError(f"masks agree on only {100 * agree:.2f} % of pixels; export removed")
    return lines
