"""A visit report: one self-contained HTML page per photo (`predict.py --report`), printable on
A4, that says what a clinician reads: each face with its wrinkle lines, a map of the face shaded
by each region's line density, the regions in millimetres, the scale and its uncertainty, and
the model with its out-of-fold F1. Images are inlined (JPEG, base64), so the file is all there
is to keep, mail or print.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from utils.faces.regions import REGION_LABELS, REGION_NAMES
from utils.visualize import RED, drawn_as_lines, wrinkle_view

# What the photo panel shows of a face (utils.visualize.drawn_as_lines).
_SHOWN = {True: "wrinkle lines", False: "wrinkle pixels (the face is too small for lines)"}

# the colour of the densest region on the face map (mm of line per cm²): darker is denser
DENSITY_SCALE = 10.0

_CSS = """
@page { size: A4; margin: 14mm; }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10.5pt; color: #222; }
h1 { font-size: 16pt; margin: 0 0 4pt; } h2 { font-size: 12.5pt; margin: 10pt 0 4pt; }
.meta { color: #555; font-size: 9pt; }
.face { page-break-inside: avoid; break-inside: avoid; margin-top: 8pt; }
.pics { display: flex; gap: 8pt; } .pics figure { margin: 0; flex: 1; }
.pics img { width: 100%; border: 1px solid #ccc; }
figure { margin: 4pt 0; } figure img { max-width: 100%; max-height: 120mm; }
figcaption { font-size: 8.5pt; color: #555; }
table { border-collapse: collapse; width: 100%; margin-top: 6pt; font-size: 9.5pt; }
th, td { border-bottom: 1px solid #ddd; padding: 2pt 5pt; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { font-size: 8.5pt; color: #555; margin-top: 6pt; }
"""


def image_uri(rgb: np.ndarray) -> str:
    """An RGB (or grey) uint8 image as a data: URI of a JPEG (quality 92: a page of photos
    stays a few hundred kB, and anti-aliased lines survive it)."""
    arr = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise ValueError("could not encode the image")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _shrink(rgb: np.ndarray, side: int = 900) -> np.ndarray:
    h, w = rgb.shape[:2]
    k = side / max(h, w)
    if k >= 1:
        return rgb
    return cv2.resize(rgb, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)


def face_map(face: Any) -> np.ndarray:
    """The aligned face in grey, each region tinted by its line density (mm per cm²; full
    colour at DENSITY_SCALE), its wrinkle lines drawn on top in red."""
    grey = cv2.cvtColor(cv2.cvtColor(face.aligned, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    out = grey.astype(np.float32)
    mm = face.stats.get("mm", {})
    tint = np.array([70, 90, 200], np.float32)  # blue, away from the red lines
    for name in REGION_NAMES:
        region = face.regions.get(name)
        if region is None or name not in mm:
            continue
        a = 0.65 * min(1.0, mm[name]["density_mm_per_cm2"] / DENSITY_SCALE)
        out[region] = (1 - a) * out[region] + a * tint
    out = out.round().astype(np.uint8)
    scale = 3  # drawn at 3x the frame, so the lines are thin
    big = cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    lines = [np.round((ln.points + 0.5) * scale * 16 - 8).astype(np.int32) for ln in face.lines]
    cv2.polylines(big, lines, False, tuple(int(c) for c in RED), 2, cv2.LINE_AA, 4)
    return big


def _photo_crop(rgb: np.ndarray, mask: np.ndarray, face: Any) -> np.ndarray:
    x0, y0, x1, y1 = face.alignment.bounds(rgb.shape)
    view = wrinkle_view(rgb, mask, [face])
    return view[y0:y1, x0:x1]


def _row(label: str, cells: dict[str, float], share: float | None) -> str:
    return ("<tr><td>" + html.escape(label) + "</td>"
            f"<td>{cells['count']}</td><td>{cells['length_mm']:.0f}</td>"
            f"<td>{cells['width_mm']:.2f}</td><td>{cells['density_mm_per_cm2']:.1f}</td>"
            f"<td>{'' if share is None else f'{100 * share:.2f}'}</td></tr>")


def visit_report(name: str, rgb: np.ndarray, res: Any, model: str, model_about: str,
                 date: _dt.date | None = None) -> str:
    """The HTML of one photo's report: every analysed face with its lines, its face map and
    its region table in mm; the scale; the model."""
    date = date or _dt.date.today()
    parts = [f"<h1>Wrinkle report: {html.escape(name)}</h1>",
             f"<div class='meta'>{date.isoformat()} &middot; model: {html.escape(model)}"
             f"<br>{html.escape(model_about)}</div>"]
    if not res.faces:
        parts.append("<p>No face was found in this photo.</p>")
    for f in res.faces:
        mm = f.stats.get("mm")
        parts.append(f"<div class='face'><h2>Face {f.index}</h2>")
        parts.append("<div class='pics'>"
                     f"<figure><img alt='the face with its wrinkle lines' src='"
                     f"{image_uri(_shrink(_photo_crop(rgb, res.mask, f)))}'><figcaption>The "
                     f"photo, {_SHOWN[drawn_as_lines(f)]} in red.</figcaption></figure>")
        if mm:
            parts.append(f"<figure><img alt='face map' src='{image_uri(face_map(f))}'>"
                         "<figcaption>The face as the model saw it (aligned): regions shaded by "
                         f"line density (full colour at {DENSITY_SCALE:g} mm/cm²).</figcaption>"
                         "</figure>")
        parts.append("</div>")
        if not mm or f.scale is None:
            parts.append("<p class='note'>No landmarks: no regions, no millimetres.</p></div>")
            continue
        shares = {r["region"]: r["share"] for r in f.stats["regions"]}
        parts.append("<table><tr><th>region</th><th>lines</th><th>length (mm)</th>"
                     "<th>mean width (mm)</th><th>density (mm/cm²)</th><th>share (%)</th>"
                     "</tr>")
        parts.append(_row("whole face", mm["face"], f.stats["wrinkle_share"]))
        for region in REGION_NAMES:
            if region in mm:
                parts.append(_row(REGION_LABELS[region], mm[region], shares.get(region)))
        parts.append("</table>")
        parts.append(f"<p class='note'>Scale: {html.escape(f.scale.describe())}. Widths at "
                     f"{f.frame} px are coarse: about {f.scale.mm_per_px:.1f} mm a pixel; "
                     "compare them between photos taken alike. Share: wrinkle pixels over the "
                     "region's pixels. Left and right are the person's own.</p>")
        for note in f.notes:
            parts.append(f"<p class='note'>Note: {html.escape(note)}</p>")
        parts.append("</div>")
    parts.append("<p class='note'>F1 measures how well the model's wrinkle pixels overlap an "
                 "annotator's lines on faces it never saw (two annotators agree at about 0.54). "
                 "This report describes lines visible in one photo: light, expression and pose "
                 "change them; it is not a diagnosis.</p>")
    return _page(f"Wrinkle report: {name}", parts)


def model_about(predictor: Any) -> str:
    """One sentence on the model for a report: what it is and its out-of-fold F1."""
    return predictor.loaded.about or predictor.loaded.name


def report_path(out: Path, stem: str) -> Path:
    return out / f"{stem}_report.html"


def _page(title: str, body: list[str]) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>")


def comparison_report(comp: Any, pair: np.ndarray, differences: list[np.ndarray],
                      date: _dt.date | None = None) -> str:
    """The HTML of a before/after comparison (compare.py --report; utils.compare.Comparison):
    the aligned faces (`pair`, compare.side_by_side), the difference picture of each later
    photo, per region the share against its noise band with the verdict, and the lines in mm of
    each photo; the warnings first."""
    date = date or _dt.date.today()
    names = [Path(n).name for n in comp.names]
    body = [f"<h1>Wrinkle comparison: {html.escape(' → '.join(names))}</h1>",
            f"<div class='meta'>{date.isoformat()} &middot; the first photo is the "
            "reference</div>"]
    for w in comp.warnings:
        body.append(f"<p><b>Warning:</b> {html.escape(w)}</p>")
    body.append(f"<figure><img alt='aligned faces' src='{image_uri(pair)}'>"
                "<figcaption>Each face aligned into the same frame, wrinkles in red."
                "</figcaption></figure>")
    for i in range(1, len(comp.faces)):
        body.append(f"<h2>{html.escape(names[0])} → {html.escape(names[i])}</h2>")
        body.append(f"<figure><img alt='difference' src='"
                    f"{image_uri(differences[i - 1])}'></figure>")
        body.append("<table><tr><th>region</th><th>share before (%)</th><th>after (%)</th>"
                    "<th>change (points)</th><th>noise band</th><th>verdict</th>"
                    "<th>length before (mm)</th><th>after (mm)</th></tr>")
        for region in ("face", *REGION_NAMES):
            # by position: two photos may share a name
            a, b = (r for j, r in enumerate(x for x in comp.rows if x["region"] == region)
                    if j in (0, i))
            label = "whole face" if region == "face" else REGION_LABELS[region]
            mm_a = f"{a['length_mm']:.0f}" if "length_mm" in a else ""
            mm_b = f"{b['length_mm']:.0f}" if "length_mm" in b else ""
            body.append(f"<tr><td>{html.escape(label)}</td><td>{100 * a['share']:.2f}</td>"
                        f"<td>{100 * b['share']:.2f}</td><td>{100 * b['change_share']:+.2f}</td>"
                        f"<td>±{100 * b['noise_band']:.2f}</td>"
                        f"<td>{html.escape(b['verdict'])}</td><td>{mm_a}</td><td>{mm_b}</td></tr>")
        body.append("</table>")
    scales = [f.scale.describe() for f in comp.faces if f.scale is not None]
    body.append("<p class='note'>A change counts only beyond its noise band: the change of share "
                "this method measures between two photos of the same unchanged face (95th "
                "percentile, bench/bench_compare.py). Lengths in mm are each photo's own, from "
                "its pupil distance"
                + (f" ({html.escape(scales[0])})" if scales else "") + "; no noise band is "
                "measured for them yet, so read their changes with the shares' verdicts.</p>")
    return _page("Wrinkle comparison", body)


def clip_report(name: str, plot: str | Path, summary: list[dict[str, Any]], model: str,
                frames: int, date: _dt.date | None = None) -> str:
    """The HTML of a clip (predict.py clip.mp4 --report): each region's share over time (the
    plot predict.py draws) and, per followed face and region, the mean and spread over the
    frames of the share and of the line length in mm."""
    date = date or _dt.date.today()
    img = cv2.cvtColor(cv2.imread(str(plot), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    body = [f"<h1>Wrinkle report: {html.escape(name)}</h1>",
            f"<div class='meta'>{date.isoformat()} &middot; {frames} frames &middot; model: "
            f"{html.escape(model)}</div>",
            f"<figure><img alt='share over time' src='{image_uri(img)}'><figcaption>Each "
            "region's wrinkle share over the clip, a panel per followed face.</figcaption>"
            "</figure>"]
    for face_id in sorted({r["face"] for r in summary}, key=int):
        body.append(f"<h2>Face {html.escape(str(face_id))}</h2><table><tr><th>region</th>"
                    "<th>frames</th><th>share, mean (%)</th><th>sd</th><th>length, mean (mm)"
                    "</th><th>sd</th></tr>")
        for r in (x for x in summary if x["face"] == face_id):
            label = "whole face" if r["region"] == "face" else REGION_LABELS[r["region"]]
            body.append(f"<tr><td>{html.escape(label)}</td><td>{r['frames']}</td>"
                        f"<td>{100 * float(r['mean_share']):.2f}</td>"
                        f"<td>{100 * float(r['sd_share']):.2f}</td>"
                        f"<td>{r['mean_length_mm'] or ''}</td><td>{r['sd_length_mm'] or ''}</td>"
                        "</tr>")
        body.append("</table>")
    body.append("<p class='note'>The spread over a clip is what light, expression and pose do "
                "to the measurement from frame to frame; a still face in steady light varies by "
                "a few per cent. Lengths in mm from a 63 mm pupil distance (+-6 % between "
                "people) unless --ipd-mm was given.</p>")
    return _page(f"Wrinkle report: {name}", body)
