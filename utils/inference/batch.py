"""Batch prediction behind predict.py: files, folders or globs in; masks, overlays, probability
maps and one CSV of wrinkle statistics out. A file that cannot be read is reported and skipped; a
folder run resumes where it stopped (Journal) and decodes, finds faces and writes beside the
model."""

from __future__ import annotations

import csv
import glob
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from utils.data.images import IMAGE_EXTENSIONS, load_image, resize_image
from utils.data.masks import mask_to_png
from utils.data.videos import VIDEO_EXTENSIONS
from utils.errors import UserError
from utils.faces.regions import PAIRED, REGION_NAMES
from utils.inference.predictor import FoundFaces, WrinklePredictor, WrinkleResult
from utils.io import csv_text, write_json, write_text
from utils.runtime import stage
from utils.visualize import draw_aligned, draw_faces, wrinkle_view, write_png

MEDIA_EXTENSIONS = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS  # what a folder is searched for


def collect_inputs(items: list[str], exclude: str | Path | None = None
                   ) -> tuple[list[Path], list[str]]:
    """Expand files, folders (recursively, image and video extensions) and glob patterns;
    report misses.
    Nothing inside `exclude` (the output folder) is ever taken as input: a run never reads its
    own outputs, wherever the output folder lies."""
    skip = Path(exclude).resolve() if exclude is not None else None

    def ours(p: Path) -> bool:
        return skip is not None and p.resolve().is_relative_to(skip)

    files: list[Path] = []
    missing: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS
                           and not ours(p))
            if not found:
                missing.append(f"{item}: the folder holds no image or video file "
                               f"({', '.join(MEDIA_EXTENSIONS)}, searched recursively)")
            files += found
        elif path.is_file():
            if ours(path):
                missing.append(f"{item}: inside the output folder {exclude}; not read")
            else:
                files.append(path)
        elif any(c in item for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True)
                           if Path(p).is_file() and not ours(Path(p)))
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


# The model runs at most this many photos ahead of the writer: what a stopped run still writes
# is bounded, and so is the memory that finished photos hold.
PENDING_WRITES = 4


# Per face and per region, the lines as clinicians count them (utils/faces/lines.line_stats).
MM_FIELDS = ("line_count", "length_mm", "width_mm", "density_mm_per_cm2")


def _mm_cells(prefix: str, st: dict[str, float]) -> dict[str, Any]:
    return {f"{prefix}line_count": st["count"], f"{prefix}length_mm": f"{st['length_mm']:.2f}",
            f"{prefix}width_mm": f"{st['width_mm']:.3f}",
            f"{prefix}density_mm_per_cm2": f"{st['density_mm_per_cm2']:.3f}"}


def csv_fields() -> list[str]:
    """The columns of wrinkles.csv: one row per face (docs/reference/outputs.md)."""
    fields = ["file", "face", "width", "height", "box_x0", "box_y0", "box_x1", "box_y1",
              "detector", "detector_score", "face_side_px", "roll_deg", "frame_px", "model", "threshold",
              "wrinkle_share", "face_px", "wrinkle_px", "lines", "length_px",
              "mm_per_px", "ipd_mm", "scale_source", *MM_FIELDS]
    for name in REGION_NAMES:
        fields += [f"{name}_share", f"{name}_px", f"{name}_lines", f"{name}_length_px",
                   *(f"{name}_{k}" for k in MM_FIELDS)]
    fields += [f"{k}_asymmetry" for k in (*PAIRED, "upper_vs_lower")]
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
            "box_y1": box[3], "detector": f.detector,
            "detector_score": "" if f.score is None else f"{f.score:.3f}",
            "face_side_px": f"{f.alignment.side:.1f}",
            "roll_deg": "" if f.box is None else f"{f.alignment.angle:.1f}",
            "frame_px": st["frame_px"], "model": model, "threshold": res.threshold,
            "wrinkle_share": f"{st['wrinkle_share']:.6f}", "face_px": st["face_px"],
            "wrinkle_px": st["wrinkle_px"], "lines": st["lines"], "length_px": st["length_px"],
            "notes": "; ".join(res.notes)}
        for k, v in st.get("asymmetry", {}).items():
            row[f"{k}_asymmetry"] = "" if v is None else f"{v:+.4f}"
        for r in st["regions"]:
            key = r["region"]
            row |= {f"{key}_share": f"{r['share']:.6f}", f"{key}_px": r["wrinkle_px"],
                    f"{key}_lines": r["lines"], f"{key}_length_px": r["length_px"]}
        if f.scale is not None and "mm" in st:
            row |= {"mm_per_px": f"{f.scale.mm_per_px:.5f}", "ipd_mm": f"{f.scale.ipd_mm:g}",
                    "scale_source": f.scale.source}
            for key, cells in st["mm"].items():
                row |= _mm_cells("" if key == "face" else f"{key}_", cells)
        rows.append(row)
    return rows


def out_names(files: list[Path]) -> dict[Path, str]:
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


JOURNAL = "predict_log.csv"  # one line per finished photo: what a rerun may skip
JOURNAL_FIELDS = ["file", "status", "faces", "settings", "note"]


class Journal:
    """What a folder run has finished, so that it survives Ctrl-C or a kill and resumes.

    A photo's outputs are written first (each file atomically), then its rows are appended to
    wrinkles.csv, then one line to predict_log.csv: that line is the commit. On a rerun with the
    same settings a committed photo is skipped when its files are there; wrinkles.csv is first
    cut back to the committed photos' rows, so a photo half done when the run stopped is done
    again without a duplicate row. `overwrite` starts afresh."""

    def __init__(self, out: Path, settings: str, overwrite: bool) -> None:
        self.out, self.settings = out, settings
        self.csv, self.log = out / "wrinkles.csv", out / JOURNAL
        self.done: dict[str, dict[str, str]] = {}
        if not overwrite and self.log.is_file():
            with self.log.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    if row.get("settings") == settings and row.get("status") in ("done", "failed"):
                        self.done[row["file"]] = row

    def keep_only(self, files: set[str]) -> None:
        """Start the run: wrinkles.csv and the journal cut back to these finished photos (a
        photo half done, or whose files are gone, is done again without a duplicate row)."""
        self.done = {f: r for f, r in self.done.items() if f in files}
        kept: list[dict[str, str]] = []
        if self.done and self.csv.is_file():
            with self.csv.open(newline="", encoding="utf-8") as fh:
                kept = [r for r in csv.DictReader(fh) if r.get("file") in self.done
                        and None not in r and None not in r.values()]
        write_text(self.csv, csv_text(kept, csv_fields()))
        write_text(self.log, csv_text(list(self.done.values()), JOURNAL_FIELDS))

    def finished(self, file: Path, outputs: list[Path]) -> dict[str, str] | None:
        """The journal line of a committed photo whose files are all there, else None."""
        row = self.done.get(str(file))
        if row is None or (row["status"] == "done" and not all(p.is_file() for p in outputs)):
            return None
        return row

    def commit(self, file: Path, rows: list[dict[str, Any]], status: str, note: str = "") -> None:
        """Append a photo's rows, then its journal line; both reach the disk before returning."""
        for path, text in ((self.csv, csv_text(rows, csv_fields()).split("\n", 1)[1]),
                           (self.log, csv_text([{"file": str(file), "status": status,
                                                 "faces": len(rows), "settings": self.settings,
                                                 "note": note}], JOURNAL_FIELDS)
                            .split("\n", 1)[1])):
            if text:
                with path.open("a", newline="", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())


LINE_FIELDS = ["file", "face", "line", "region", "length_mm", "width_mm", "angle_deg",
               "mean_prob", "points", "mm_per_px", "scale_source"]


def line_rows(path: Path | str, res: WrinkleResult) -> list[dict[str, Any]]:
    """<name>_lines.csv: one row per wrinkle line of every face (lengths and widths in mm,
    the angle to the eye line in degrees, -90..90; its points are in <name>_lines.json)."""
    rows = []
    for f in res.faces:
        if f.scale is None:
            continue
        mm = f.scale.mm_per_px
        for n, ln in enumerate(f.lines):
            rows.append({"file": str(path), "face": f.index, "line": n, "region": ln.region,
                         "length_mm": f"{ln.length_px * mm:.2f}",
                         "width_mm": f"{ln.width_px * mm:.3f}",
                         "angle_deg": f"{ln.angle_deg:.1f}",
                         "mean_prob": "" if ln.mean_prob is None else f"{ln.mean_prob:.3f}",
                         "points": len(ln.points), "mm_per_px": f"{mm:.5f}",
                         "scale_source": f.scale.source})
    return rows


def line_points(path: Path | str, res: WrinkleResult) -> dict[str, Any]:
    """<name>_lines.json: every line's polyline in the photo's pixels (x, y), as analysed
    (after any scaling down: the CSV's width and height), through the inverse alignment."""
    faces = []
    for f in res.faces:
        if f.scale is None:
            continue
        faces.append({"face": f.index, "scale": f.scale.describe(),
                      "lines": [{"line": n, "region": ln.region,
                                 "points": np.round(f.alignment.to_photo(ln.points, f.frame), 1)
                                 .tolist()} for n, ln in enumerate(f.lines)]})
    return {"file": str(path), "width": int(res.mask.shape[1]),
            "height": int(res.mask.shape[0]), "coordinates": "photo pixels (x, y)",
            "faces": faces}


def _outputs(out: Path, stem: str, save_probs: bool) -> list[Path]:
    names = [f"{stem}_mask.png", f"{stem}_overlay.png", f"{stem}_lines.csv",
             f"{stem}_lines.json"] + ([f"{stem}_prob.png"] if save_probs else [])
    return [out / n for n in names]


def predict_files(predictor: WrinklePredictor, items: list[str], out: str | Path,
                  threshold: float | None = None, save_probs: bool = False, batch_size: int = 4,
                  progress: bool = True, log: Callable[[str], None] = print,
                  regions: bool = False, landmarks: bool = False,
                  aligned: bool = False, overwrite: bool = False,
                  report: bool = False) -> dict[str, Any]:
    """Predict every input; write <name>_mask.png and <name>_overlay.png for the whole photo
    with all its faces (<name>_prob.png with save_probs; <name>_face<N>.png, each aligned face
    with its wrinkles, with aligned) and wrinkles.csv (a row per face) to `out`. Region outlines
    and landmarks are drawn on the overlays on request. A photo without a face is a failure
    unless the predictor analyses such photos whole. The run is resumable (see Journal): photos
    finished by an earlier run with the same settings are skipped unless `overwrite`; the output
    folder is never read as input. Returns counts and failures (file, why)."""
    out = Path(out)
    files, failures = collect_inputs(items, exclude=out)
    failed: list[tuple[str, str]] = [(m.split(":")[0], m.split(": ", 1)[1]) for m in failures]
    if not files:
        raise UserError("; ".join(failures) if failures else "no input images given")
    out.mkdir(parents=True, exist_ok=True)
    thr = predictor.threshold if threshold is None else threshold
    settings = (f"{predictor.description}; threshold {thr:g}; probs {save_probs}; regions "
                f"{regions}; landmarks {landmarks}; aligned {aligned}")
    journal = Journal(out, settings, overwrite)
    names = out_names(files)
    todo, skipped = [], 0
    for f in files:
        row = journal.finished(f, _outputs(out, names[f], save_probs))
        if row is None:
            todo.append(f)
            continue
        skipped += 1
        if row["status"] == "failed":
            failed.append((str(f), row["note"]))
    journal.keep_only({str(f) for f in files} - {str(f) for f in todo})
    if skipped:
        log(f"{skipped} of {len(files)} photos already done in {out}/ (predict_log.csv); "
            "continuing with the rest (--overwrite redoes them)")
    chunks = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    count = {"photos": 0, "faces": 0}

    def read(chunk: list[Path]) -> tuple[list[tuple[Path, np.ndarray, FoundFaces]],
                                         list[tuple[str, str]]]:
        """Decode and find the faces (dlib lets go of the interpreter while it works)."""
        loaded, bad = [], []
        for f in chunk:
            try:
                with stage("decode"):
                    img = load_image(f)
            except UserError as exc:
                bad.append((str(f), str(exc).split(": ", 1)[-1]))
                continue
            try:
                loaded.append((f, img, predictor.find(img)))
            except UserError as exc:
                bad.append((str(f), str(exc)))
        return loaded, bad

    def write(f: Path, img: np.ndarray, res: WrinkleResult) -> None:
        with stage("write"):
            _write_photo(out, names[f], img, res, save_probs, regions, landmarks, aligned, f)
            if report:
                from utils.report import model_about, report_path, visit_report

                shown = resize_image(img, res.mask.shape)
                write_text(report_path(out, names[f]),
                           visit_report(f.name, shown, res, predictor.description,
                                        model_about(predictor)))
            rows = csv_rows(f, res, predictor.description)
            journal.commit(f, rows, "done")
        count["photos"] += 1
        count["faces"] += len(rows)

    # Decoding and face finding for the next photos, and writing the last ones' pictures,
    # overlap with the model: one reader and one writer thread. The writer also commits, in order, so wrinkles.csv always
    # holds exactly the photos finished so far.
    bar = tqdm(total=len(todo), desc="predict", disable=not progress, file=sys.stderr)
    writes: list[Future] = []
    with ThreadPoolExecutor(1, "read") as reader, ThreadPoolExecutor(1, "write") as writer:
        try:
            ahead = reader.submit(read, chunks[0]) if chunks else None
            for k, chunk in enumerate(chunks):
                loaded, bad = ahead.result()
                if k + 1 < len(chunks):
                    ahead = reader.submit(read, chunks[k + 1])
                for f, why in bad:
                    failed.append((f, why))
                    writes.append(writer.submit(journal.commit, Path(f), [], "failed", why))
                results = predictor.finish([found for _, _, found in loaded], threshold)
                for (f, img, _), res in zip(loaded, results, strict=True):
                    writes.append(writer.submit(write, f, img, res))
                bar.update(len(chunk))
                while writes and (writes[0].done() or len(writes) > PENDING_WRITES):
                    writes.pop(0).result()  # a failed write stops the run, with its error
            for w in writes:
                w.result()
        except KeyboardInterrupt:
            for w in writes:  # what was predicted is written and committed before stopping
                if not w.cancelled():
                    w.exception()
            bar.close()
            log(f"interrupted: {count['photos']} photos finished in this run ({skipped} "
                f"before), {len(todo) - count['photos']} not; wrinkles.csv holds every finished "
                "photo; run the same command again to go on")
            raise
    n_photos, n_faces = count["photos"], count["faces"]
    bar.close()
    for f, reason in failed:
        log(f"skipped {f}: {reason}")
    log(f"{n_photos} photos ({n_faces} faces) predicted with {predictor.description}"
        + (f", {skipped} done before" if skipped else "") + f"; outputs in {out}/"
        + (f"; {len(failed)} failed" if failed else ""))
    return {"predicted": n_photos, "faces": n_faces, "skipped": skipped, "failed": failed,
            "csv": str(journal.csv)}


def _write_photo(out: Path, stem: str, img: np.ndarray, res: WrinkleResult, save_probs: bool,
                 regions: bool, landmarks: bool, aligned: bool, source: Path | str = "") -> None:
    """A photo's pictures and its lines, each written atomically."""
    shown = resize_image(img, res.mask.shape)
    write_text(out / f"{stem}_lines.csv", csv_text(line_rows(source, res), LINE_FIELDS))
    write_json(out / f"{stem}_lines.json", line_points(source, res))
    write_png(out / f"{stem}_mask.png", mask_to_png(res.mask))
    write_png(out / f"{stem}_overlay.png",
              draw_faces(wrinkle_view(shown, res.mask, res.faces), res.faces, regions, landmarks))
    if save_probs:
        write_png(out / f"{stem}_prob.png", (res.probs * 255).round().astype(np.uint8))
    if aligned:
        for face in res.faces:
            write_png(out / f"{stem}_face{face.index}.png", draw_aligned(face, regions, landmarks))


