"""Agreement between two folders of wrinkle masks: the field's inter-annotator figure.

Two annotators (or an annotator and a model) rarely draw the same pixels: on FFHQ-Wrinkle two
annotators agree at a pooled F1 of about 0.54 at 256 px, and about 0.75 when a line one pixel off
still counts. This scores folder A against folder B with the project's one metric collection
(`SegmentationMetrics`: A plays the prediction, B the reference; F1 and Jaccard are symmetric,
precision and recall swap when the folders do), pooled over every pixel, per image, and per face
region of the aligned frame when the faces are at hand (their landmarks place the regions).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from utils.data.images import IMAGE_EXTENSIONS, load_image
from utils.data.masks import read_mask, resize_mask
from utils.errors import UserError
from utils.evaluation.metrics import SegmentationMetrics
from utils.io import csv_text, write_json, write_text

# predict.py's <name>_mask.png pairs with <name>.png of an annotator; in a folder that holds such
# masks, the other pictures predict.py writes beside them (_overlay, _prob, _face<N>) are ignored
MASK_SUFFIX = "_mask"


def _masks(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of masks")
    files = [p for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if any(p.stem.endswith(MASK_SUFFIX) for p in files):  # predict.py's folder: its masks only
        files = [p for p in files if p.stem.endswith(MASK_SUFFIX)]
    out = {p.stem.removesuffix(MASK_SUFFIX): p for p in files}
    if not out:
        raise UserError(f"{folder}: holds no mask image ({', '.join(IMAGE_EXTENSIONS)})")
    return out


def _faces(image_dir: Path | None) -> dict[str, Path]:
    if image_dir is None:
        return {}
    if not image_dir.is_dir():
        raise UserError(f"{image_dir}: not a folder of face images")
    return {p.stem: p for p in sorted(image_dir.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}


def _region_masks(image_path: Path, shape: tuple[int, int]) -> dict[str, np.ndarray] | None:
    """The landmark regions of the largest face of an image, at the masks' size (None when no
    face is found)."""
    from utils.faces.detection import detect_faces
    from utils.faces.regions import region_masks

    rgb = load_image(image_path)
    faces = detect_faces(rgb)
    if not faces:
        return None
    sy, sx = shape[0] / rgb.shape[0], shape[1] / rgb.shape[1]
    lm = (faces[0].landmarks + 0.5) * (sx, sy) - 0.5  # pixel centres, image -> mask grid
    return region_masks(lm, shape)


def agreement(a: str | Path, b: str | Path, out: str | Path, image_dir: str | Path | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Score the masks of folder `a` against those of folder `b` (paired by file name; a
    trailing "_mask" is ignored, so predict.py's masks pair with an annotator's). Masks of
    different sizes are compared at the smaller one, the larger shrunk by the line-keeping rule.
    Writes agreement.json, per_image.csv and, with `image_dir` (the aligned faces; default: a
    face_images/ folder beside `a`), per_region.csv to `out`."""
    a, b, out = Path(a), Path(b), Path(out)
    ma, mb = _masks(a), _masks(b)
    ids = sorted(set(ma) & set(mb))
    notes = []
    for name, only in ((a, set(ma) - set(mb)), (b, set(mb) - set(ma))):
        if only:
            notes.append(f"{len(only)} masks only in {name}, left out: "
                         + ", ".join(sorted(only)[:5]) + (" ..." if len(only) > 5 else ""))
    if not ids:
        raise UserError(f"{a} and {b} have no mask file name in common")
    if image_dir is None and (a.parent / "face_images").is_dir():
        image_dir = a.parent / "face_images"
    faces = _faces(Path(image_dir) if image_dir is not None else None)
    metrics = SegmentationMetrics(threshold=0.5, bins=2)
    regions: dict[str, dict[str, int]] = {}
    no_face: list[str] = []
    for i in tqdm(ids, desc="agreement", disable=not progress):
        x, y = read_mask(ma[i]), read_mask(mb[i])
        if x.shape != y.shape:
            size = min(x.shape, y.shape, key=lambda s: s[0] * s[1])
            x, y = resize_mask(x, size), resize_mask(y, size)
        metrics.update(torch.from_numpy(x[None]).float(), torch.from_numpy(y[None]), [i])
        if i in faces:
            masks = _region_masks(faces[i], x.shape)
            if masks is None:
                no_face.append(i)
                continue
            for name, r in masks.items():
                c = regions.setdefault(name, {"a_px": 0, "b_px": 0, "both_px": 0})
                c["a_px"] += int((x & r).sum())
                c["b_px"] += int((y & r).sum())
                c["both_px"] += int((x & y & r).sum())
    if no_face:
        notes.append(f"no face found in {len(no_face)} images (no regions): "
                     + ", ".join(no_face[:5]))
    scores = metrics.compute()
    report = {"a": str(a), "b": str(b), "images": scores["images"],
              **{k: scores[k] for k in ("f1", "f1_tol1", "jaccard", "precision", "recall",
                                        "macro_f1", "macro_jaccard",
                                        "images_without_any_wrinkle")},
              "notes": notes}
    region_rows = []
    for name, c in regions.items():
        both, pa, pb = c["both_px"], c["a_px"], c["b_px"]
        region_rows.append({"region": name, **c,
                            "f1": 2 * both / (pa + pb) if pa + pb else math.nan,
                            "precision": both / pa if pa else math.nan,
                            "recall": both / pb if pb else math.nan})
    report["regions"] = {r["region"]: r["f1"] for r in region_rows}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "agreement.json", report)
    rows = metrics.image_rows()
    write_text(out / "per_image.csv", csv_text(rows, list(rows[0])))
    if region_rows:
        write_text(out / "per_region.csv", csv_text(region_rows, list(region_rows[0]),
                                                    float_format=".4f"))
    return report
