"""Batch prediction behind predict.py: files, folders or globs in; masks, overlays, probability
maps and one CSV of wrinkle statistics out. A file that cannot be read is reported and skipped."""

from __future__ import annotations

import csv
import glob
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from utils.errors import UserError
from utils.images import IMAGE_EXTENSIONS, load_image
from utils.inference import REGIONS, WrinklePredictor, WrinkleResult
from utils.io import write_text
from utils.masks import mask_to_png
from utils.visualize import overlay, write_png


def collect_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """Expand files, folders (recursively, image extensions) and glob patterns; report misses."""
    files: list[Path] = []
    missing: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            files.append(path)
        elif any(c in item for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                missing.append(f"{item}: no file matches")
            files += found
        else:
            missing.append(f"{item}: no such file or folder")
    seen, unique = set(), []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique, missing


def _csv_fields() -> list[str]:
    fields = ["file", "width", "height", "model", "threshold", "wrinkle_share", "face_px",
              "wrinkle_px"]
    for name, _ in REGIONS:
        key = name.replace(" ", "_")
        fields += [f"{key}_px", f"{key}_lines", f"{key}_length_px"]
    return [*fields, "notes"]


def _csv_row(path: Path, res: WrinkleResult, model: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "file": str(path), "width": res.mask.shape[1], "height": res.mask.shape[0],
        "model": model, "threshold": res.threshold,
        "wrinkle_share": f"{res.stats['wrinkle_share']:.6f}",
        "face_px": res.stats["face_px"], "wrinkle_px": res.stats["wrinkle_px"],
        "notes": "; ".join(res.notes)}
    for r in res.stats["regions"]:
        key = r["region"].replace(" ", "_")
        row |= {f"{key}_px": r["wrinkle_px"], f"{key}_lines": r["lines"],
                f"{key}_length_px": r["length_px"]}
    return row


def _out_names(files: list[Path]) -> dict[Path, str]:
    """Output name stem per input: its file stem, made unique when two inputs share one."""
    names: dict[Path, str] = {}
    used: set[str] = set()
    for f in files:
        stem, n = f.stem, 1
        while stem in used:
            n += 1
            stem = f"{f.stem}-{n}"
        used.add(stem)
        names[f] = stem
    return names


def predict_files(predictor: WrinklePredictor, items: list[str], out: str | Path,
                  threshold: float | None = None, save_probs: bool = False, batch_size: int = 4,
                  progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Predict every input; write <name>_mask.png, <name>_overlay.png (and <name>_prob.png) and
    wrinkles.csv to `out`. Returns counts and the failures (file, reason)."""
    files, failures = collect_inputs(items)
    failed: list[tuple[str, str]] = [(m.split(":")[0], m.split(": ", 1)[1]) for m in failures]
    if not files:
        raise UserError("no input images found (" + "; ".join(failures or ["nothing given"]) + ")")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = _out_names(files)
    rows = []
    bar = tqdm(total=len(files), desc="predict", disable=not progress, file=sys.stderr)
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        loaded = []
        for f in chunk:
            try:
                loaded.append((f, load_image(f)))
            except UserError as exc:
                failed.append((str(f), str(exc).split(": ", 1)[-1]))
        try:
            results = predictor.predict_batch([img for _, img in loaded], threshold)
            done = list(zip(loaded, results, strict=True))
        except UserError:  # find the image at fault; predict the rest one by one
            done = []
            for f, img in loaded:
                try:
                    done.append(((f, img), predictor.predict(img, threshold)))
                except UserError as exc:
                    failed.append((str(f), str(exc)))
        for (f, img), res in done:
            stem = names[f]
            shown = img if img.shape[:2] == res.mask.shape else \
                _fit(img, res.mask.shape)
            write_png(out / f"{stem}_mask.png", mask_to_png(res.mask))
            write_png(out / f"{stem}_overlay.png", overlay(shown, res.mask))
            if save_probs:
                write_png(out / f"{stem}_prob.png", (res.probs * 255).round().astype(np.uint8))
            rows.append(_csv_row(f, res, predictor.description))
        bar.update(len(chunk))
    bar.close()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_csv_fields())
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "wrinkles.csv", buf.getvalue())
    for f, reason in failed:
        log(f"skipped {f}: {reason}")
    log(f"{len(rows)} images predicted with {predictor.description}; outputs in {out}/"
        + (f"; {len(failed)} failed" if failed else ""))
    return {"predicted": len(rows), "failed": failed, "csv": str(out / "wrinkles.csv")}


def _fit(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from utils.images import resize_image

    return resize_image(img, shape)
