"""Batch prediction behind predict.py: files, folders or globs in; masks, overlays, probability
maps and one CSV of wrinkle statistics out. A file that cannot be read is reported and skipped."""

from __future__ import annotations

import glob
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from utils.data.images import IMAGE_EXTENSIONS, load_image
from utils.data.masks import mask_to_png
from utils.errors import UserError
from utils.faces.regions import REGION_NAMES
from utils.inference.predictor import WrinklePredictor, WrinkleResult
from utils.io import csv_text, write_text
from utils.visualize import draw_aligned, draw_faces, overlay, write_png


def collect_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """Expand files, folders (recursively, image extensions) and glob patterns; report misses."""
    files: list[Path] = []
    missing: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                missing.append(f"{item}: the folder holds no image file "
                               f"({', '.join(IMAGE_EXTENSIONS)}, searched recursively)")
            files += found
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


def csv_fields() -> list[str]:
    """The columns of wrinkles.csv: one row per face (see README, "Predict")."""
    fields = ["file", "face", "width", "height", "box_x0", "box_y0", "box_x1", "box_y1",
              "detector_score", "face_side_px", "roll_deg", "frame_px", "model", "threshold",
              "wrinkle_share", "face_px", "wrinkle_px", "lines", "length_px"]
    for name in REGION_NAMES:
        fields += [f"{name}_share", f"{name}_px", f"{name}_lines", f"{name}_length_px"]
    return [*fields, "notes"]


def csv_rows(path: Path | str, res: WrinkleResult, model: str) -> list[dict[str, Any]]:
    """One row per analysed face of a photo (statistics in the aligned frame, frame_px a side)."""
    rows = []
    for f in res.faces:
        st = f.stats
        box = f.box or ("", "", "", "")
        row: dict[str, Any] = {
            "file": str(path), "face": f.index, "width": res.mask.shape[1],
            "height": res.mask.shape[0], "box_x0": box[0], "box_y0": box[1], "box_x1": box[2],
            "box_y1": box[3], "detector_score": "" if f.score is None else f"{f.score:.3f}",
            "face_side_px": f"{f.alignment.side:.1f}",
            "roll_deg": "" if f.box is None else f"{f.alignment.angle:.1f}",
            "frame_px": st["frame_px"], "model": model, "threshold": res.threshold,
            "wrinkle_share": f"{st['wrinkle_share']:.6f}", "face_px": st["face_px"],
            "wrinkle_px": st["wrinkle_px"], "lines": st["lines"], "length_px": st["length_px"],
            "notes": "; ".join(res.notes)}
        for r in st["regions"]:
            key = r["region"]
            row |= {f"{key}_share": f"{r['share']:.6f}", f"{key}_px": r["wrinkle_px"],
                    f"{key}_lines": r["lines"], f"{key}_length_px": r["length_px"]}
        rows.append(row)
    return rows


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
                  progress: bool = True, log: Callable[[str], None] = print,
                  regions: bool = False, landmarks: bool = False,
                  aligned: bool = False) -> dict[str, Any]:
    """Predict every input; write <name>_mask.png and <name>_overlay.png for the whole photo
    with all its faces (<name>_prob.png with save_probs; <name>_face<N>.png, each aligned face
    with its wrinkles, with aligned) and wrinkles.csv (a row per face) to `out`. Region outlines
    and landmarks are drawn on the overlays on request. A photo without a face is a failure
    unless the predictor analyses such photos whole. Returns counts and failures (file, why)."""
    files, failures = collect_inputs(items)
    failed: list[tuple[str, str]] = [(m.split(":")[0], m.split(": ", 1)[1]) for m in failures]
    if not files:
        raise UserError("; ".join(failures) if failures else "no input images given")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = _out_names(files)
    rows: list[dict[str, Any]] = []
    n_photos = 0
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
            write_png(out / f"{stem}_overlay.png",
                      draw_faces(overlay(shown, res.mask), res.faces, regions, landmarks))
            if save_probs:
                write_png(out / f"{stem}_prob.png", (res.probs * 255).round().astype(np.uint8))
            if aligned:
                for face in res.faces:
                    pic = draw_aligned(face, regions, landmarks)
                    write_png(out / f"{stem}_face{face.index}.png", pic)
            rows += csv_rows(f, res, predictor.description)
            n_photos += 1
        bar.update(len(chunk))
    bar.close()
    write_text(out / "wrinkles.csv", csv_text(rows, csv_fields()))
    for f, reason in failed:
        log(f"skipped {f}: {reason}")
    log(f"{n_photos} photos ({len(rows)} faces) predicted with {predictor.description}; "
        f"outputs in {out}/" + (f"; {len(failed)} failed" if failed else ""))
    return {"predicted": n_photos, "faces": len(rows), "failed": failed,
            "csv": str(out / "wrinkles.csv")}



def _fit(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from utils.data.images import resize_image

    return resize_image(img, shape)
