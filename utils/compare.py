"""Before and after: how a person's wrinkles changed between photos, region by region.

Each photo goes the predictor's way (utils/inference/predictor.py: the face found, aligned as FFHQ was,
predicted, measured in its aligned frame), so every photo's face lands in the same FFHQ frame and
its regions follow its own landmarks. For each region (and the whole face) the comparison gives
the wrinkle share (wrinkle pixels over region pixels), line count and line length per photo, and
the change from the first photo.

A change is reported as a change only when it is larger than what the method measures between
two photos of the same unchanged face (pose, scale, exposure): the noise band, per region, measured
by bench/bench_compare.py and stored in docs/compare_noise.json. Inside the band it is "within
measurement noise".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from utils.errors import UserError
from utils.faces.regions import REGION_LABELS, REGION_NAMES
from utils.inference.predictor import FaceResult, WrinklePredictor, holds_less_detail

REPO = Path(__file__).resolve().parents[1]
NOISE_FILE = REPO / "docs" / "compare_noise.json"
REGIONS = ("face", *REGION_NAMES)
CSV_FIELDS = ["region", "photo", "share", "lines", "length_px", "change_share", "change_lines",
              "change_length_px", "noise_band", "verdict", "line_count", "length_mm",
              "density_mm_per_cm2", "change_length_mm", "change_density_mm_per_cm2", "mm_per_px"]
# added to every verdict of a photo whose face may be another person's
OTHER_PERSON = " (may be another person)"
# the difference picture: wrinkles only in the first photo, only in the later one, in both
ONLY_FIRST = (0, 190, 255)
ONLY_LATER = (255, 40, 200)
BOTH = (255, 230, 0)


@dataclass
class Comparison:
    """Faces of several photos of one person, compared with the first."""

    names: list[str]
    faces: list[FaceResult]
    rows: list[dict[str, Any]]
    noise: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    identity_distance: list[float] = field(default_factory=list)
    other_person: list[bool] = field(default_factory=list)  # per later photo: flagged

    def row(self, region: str, photo: int) -> dict[str, Any]:
        return next(r for r in self.rows
                    if r["region"] == region and r["photo"] == self.names[photo])


def load_noise(path: Path = NOISE_FILE) -> dict[str, Any]:
    """The noise band (per region, the 95th percentile of |change of share| between two photos
    of the same face) and the same-person threshold, as bench/bench_compare.py measured them."""
    if not path.is_file():
        raise UserError(f"{path}: the noise band file is missing (run python "
                        "bench/bench_compare.py --write-noise to measure it)")
    return json.loads(path.read_text())


def region_values(face: FaceResult) -> dict[str, tuple[float, int, int]]:
    """(share, lines, length_px) per region, "face" for the whole face."""
    st = face.stats
    out = {"face": (st["wrinkle_share"], st["lines"], st["length_px"])}
    for r in st["regions"]:
        out[r["region"]] = (r["share"], r["lines"], r["length_px"])
    return out


def shape_distance(a: FaceResult, b: FaceResult) -> float:
    """How different two faces' landmark geometry is: the mean distance of their 68 points,
    in units of the frame side, after the best similarity fit (so pose does not count)."""
    pa, pb = a.aligned_landmarks / a.frame, b.aligned_landmarks / b.frame
    pa = pa - pa.mean(axis=0)
    pb = pb - pb.mean(axis=0)
    # the similarity that best maps b onto a (orthogonal Procrustes with scale)
    u, s, vt = np.linalg.svd(pb.T @ pa)
    rot = u @ vt
    scale = s.sum() / (pb ** 2).sum()
    return float(np.linalg.norm(pb @ rot * scale - pa, axis=1).mean())


def _pick(result: Any, face: int | None, name: str) -> FaceResult:
    if not result.faces:
        raise UserError(f"{name}: no face found")
    if face is None:
        return result.faces[0]
    if not 0 <= face < len(result.faces):
        raise UserError(f"{name}: has {len(result.faces)} face(s); --face {face} does not exist "
                        "(0 is the largest)")
    return result.faces[face]


def _rank(value: float, quantiles: list[float]) -> float:
    """The share of a distribution below `value`, from its 101 stored percentiles."""
    return float(np.interp(value, quantiles, np.linspace(0, 1, len(quantiles))))


def identity_warning(name: str, reference: str, distance: float, noise: dict[str, Any]) -> str:
    """Why two faces may be different people, with where their distance sits between the two
    distributions measured on ../shared (bench/bench_compare.py)."""
    text = (f"{name} and {reference} may show different people: their landmark geometry differs "
            f"by {distance:.4f} of the frame (threshold {noise['identity_threshold']:.4f})")
    ident = noise.get("identity")
    if ident:
        same = 100 * _rank(distance, ident["same_face_percentiles"])
        other = 100 * (1 - _rank(distance, ident["different_faces_percentiles"]))
        text += (f"; {same:.0f} % of pairs of photos of one face differ less, {other:.0f} % of "
                 "pairs of different people differ more")
    return text + ". A strong change of expression can do this too; compare with care."


def compare_faces(names: list[str], faces: list[FaceResult],
                  noise: dict[str, Any] | None = None) -> Comparison:
    """Compare already analysed faces (the first is the reference)."""
    if len(faces) < 2:
        raise UserError("a comparison needs at least two photos")
    noise = load_noise() if noise is None else noise
    band = noise["band"]
    values = [region_values(f) for f in faces]
    rows = []
    for region in REGIONS:
        s0, l0, n0 = values[0][region]
        for i, name in enumerate(names):
            s, lines, length = values[i][region]
            change = s - s0
            if i == 0:
                verdict = "reference"
            elif abs(change) <= band[region]:
                verdict = "within measurement noise"
            else:
                verdict = "decrease" if change < 0 else "increase"
            row = {"region": region, "photo": name, "share": s, "lines": lines,
                   "length_px": length, "change_share": change, "change_lines": lines - l0,
                   "change_length_px": length - n0, "noise_band": band[region],
                   "verdict": verdict}
            mm, mm0 = faces[i].stats.get("mm", {}), faces[0].stats.get("mm", {})
            if region in mm and region in mm0:  # the lines in mm, each photo at its own scale
                row |= {"line_count": mm[region]["count"],
                        "length_mm": mm[region]["length_mm"],
                        "density_mm_per_cm2": mm[region]["density_mm_per_cm2"],
                        "change_length_mm": mm[region]["length_mm"] - mm0[region]["length_mm"],
                        "change_density_mm_per_cm2": mm[region]["density_mm_per_cm2"]
                        - mm0[region]["density_mm_per_cm2"],
                        "mm_per_px": faces[i].scale.mm_per_px if faces[i].scale else ""}
            rows.append(row)
    comp = Comparison(list(names), list(faces), rows, band)
    for i in range(1, len(faces)):
        d = shape_distance(faces[0], faces[i])
        comp.identity_distance.append(d)
        flagged = d > noise["identity_threshold"]
        comp.other_person.append(flagged)
        if flagged:
            comp.warnings.append(identity_warning(names[i], names[0], d, noise))
            for r in rows:
                if r["photo"] == names[i]:
                    r["verdict"] += OTHER_PERSON
    sides = [f.alignment.side for f in faces]
    frame = faces[0].frame
    lo = int(np.argmin(sides))
    if holds_less_detail(min(sides), frame) or max(sides) > 2 * min(sides):
        comp.warnings.append(
            f"{names[lo]} limits the comparison: its face is {sides[lo]:.0f} px across in the "
            f"photo (the others {', '.join(f'{s:.0f}' for j, s in enumerate(sides) if j != lo)}"
            f" px; the model works at {frame} px), so fine lines there may be missed and read "
            "as a change")
    return comp


def compare_photos(predictor: WrinklePredictor, photos: list[tuple[str, np.ndarray]],
                   face: int | None = None, noise: dict[str, Any] | None = None,
                   threshold: float | None = None) -> Comparison:
    """Compare the largest face (or face number `face`) of each photo with the first photo's."""
    if len(photos) < 2:
        raise UserError("a comparison needs at least two photos")
    faces = []
    for name, rgb in photos:
        try:
            result = predictor.predict(rgb, threshold)
        except UserError as exc:  # no face, too small, ...: say which photo
            raise UserError(f"{name}: {exc}") from None
        faces.append(_pick(result, face, name))
    return compare_faces([n for n, _ in photos], faces, noise)


# ---------------------------------------------------------------- pictures and text


def _text(img: np.ndarray, text: str, org: tuple[int, int], width: int) -> None:
    """Write `text` at `org`, smaller (down to a point) where it would not fit in `width`."""
    scale = 0.5
    while scale > 0.3 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width:
        scale -= 0.05
    while len(text) > 4 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width:
        text = text[:-4] + "..."
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    """A caption bar under a picture (under, not over: a viewer's own label, such as the app's,
    sits on a picture's top left corner)."""
    bar = np.full((28, img.shape[1], 3), 255, np.uint8)
    _text(bar, text, (6, 19), img.shape[1] - 12)
    return np.vstack([img, bar])


def side_by_side(comp: Comparison, scale: int = 2) -> np.ndarray:
    """The aligned faces with their wrinkles (red), side by side, each labelled."""
    from utils.visualize import overlay

    tiles = []
    for name, f in zip(comp.names, comp.faces, strict=True):
        pic = overlay(f.aligned, f.mask)
        pic = cv2.resize(pic, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        tiles.append(_label(pic, name))
    gap = np.full((tiles[0].shape[0], 8, 3), 255, np.uint8)
    out = tiles[0]
    for t in tiles[1:]:
        out = np.hstack([out, gap, t])
    return out


def difference_picture(comp: Comparison, later: int = 1, scale: int = 2) -> np.ndarray:
    """Wrinkles only in the first photo, only in the later one, and in both, over the later
    aligned face (in grey), with a legend."""
    a, b = comp.faces[0], comp.faces[later]
    ma = a.mask & a.face
    mb = b.mask & b.face
    if ma.shape != mb.shape:
        from utils.data.masks import resize_mask

        ma = resize_mask(ma, mb.shape)
    grey = cv2.cvtColor(cv2.cvtColor(b.aligned, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    pic = (grey.astype(np.float32) * 0.8).astype(np.uint8)
    for m, colour in ((ma & ~mb, ONLY_FIRST), (mb & ~ma, ONLY_LATER), (ma & mb, BOTH)):
        pic[m] = colour
    pic = cv2.resize(pic, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    legend = np.full((30 * 3 + 8, pic.shape[1], 3), 255, np.uint8)
    for k, (colour, text) in enumerate(((ONLY_FIRST, f"only in {comp.names[0]}"),
                                        (ONLY_LATER, f"only in {comp.names[later]}"),
                                        (BOTH, "in both"))):
        y = 6 + 30 * k
        cv2.rectangle(legend, (8, y), (30, y + 20), colour, -1)
        _text(legend, text, (38, y + 15), pic.shape[1] - 46)
    return np.vstack([_label(pic, f"{comp.names[0]} -> {comp.names[later]}"), legend])


def summary_text(comp: Comparison) -> str:
    """A few lines a person can read: the whole face, the regions that changed, the caveats."""
    lines = [f"warning: {w}" for w in comp.warnings]  # first: they change how to read the rest
    first = comp.names[0]
    for i, name in enumerate(comp.names[1:], start=1):
        face = comp.row("face", i)
        lines.append(f"{name} vs {first}: wrinkles cover {100 * face['share']:.2f} % of the face "
                     f"({100 * comp.row('face', 0)['share']:.2f} % before): "
                     f"{_says(face)}.")
        changed = [comp.row(r, i) for r in REGION_NAMES
                   if _base(comp.row(r, i)["verdict"]) in ("decrease", "increase")]
        if changed:
            lines.append("  changed beyond the noise band: " + "; ".join(
                f"{REGION_LABELS[r['region']]} {_pct(r['change_share'])}" for r in changed))
        else:
            lines.append("  no region changed beyond the noise band")
    lines.append(f"A change counts only beyond the noise band: the 95th percentile of the change "
                 f"this method measures between two photos of the same unchanged face (pose, "
                 f"scale, exposure), per region; for the whole face "
                 f"{100 * comp.noise['face']:.2f} points of share.")
    return "\n".join(lines)


def _pct(change: float) -> str:
    return f"{100 * change:+.2f} points"


def _base(verdict: str) -> str:
    return verdict.removesuffix(OTHER_PERSON)


def _says(row: dict[str, Any]) -> str:
    verdict = _base(row["verdict"])
    if verdict == "within measurement noise":
        return (f"change {_pct(row['change_share'])}, within measurement noise "
                f"(+-{100 * row['noise_band']:.2f})")
    article = "an" if verdict == "increase" else "a"
    return f"{article} {verdict} of {abs(100 * row['change_share']):.2f} points of share"


def write_outputs(comp: Comparison, out: str | Path, report: bool = False) -> dict[str, str]:
    """comparison.csv, side_by_side.png, difference.png (difference_<N>.png for a series) and
    summary.txt (and report.html with `report`), written atomically into `out`."""

    from utils.io import csv_text, write_text
    from utils.visualize import write_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    def cells(r: dict[str, Any]) -> dict[str, Any]:
        out = {**r, "share": f"{r['share']:.6f}", "change_share": f"{r['change_share']:+.6f}",
               "noise_band": f"{r['noise_band']:.6f}"}
        if "length_mm" in r:
            out |= {"length_mm": f"{r['length_mm']:.2f}",
                    "density_mm_per_cm2": f"{r['density_mm_per_cm2']:.3f}",
                    "change_length_mm": f"{r['change_length_mm']:+.2f}",
                    "change_density_mm_per_cm2": f"{r['change_density_mm_per_cm2']:+.3f}",
                    "mm_per_px": f"{r['mm_per_px']:.5f}" if r["mm_per_px"] != "" else ""}
        return out

    rows = [cells(r) for r in comp.rows]
    write_text(out / "comparison.csv", csv_text(rows, CSV_FIELDS))
    pair = side_by_side(comp)
    differences = [difference_picture(comp, i) for i in range(1, len(comp.faces))]
    write_png(out / "side_by_side.png", pair)
    files = {"csv": str(out / "comparison.csv"), "side_by_side": str(out / "side_by_side.png")}
    for i, picture in enumerate(differences, 1):
        name = "difference.png" if len(comp.faces) == 2 else f"difference_{i}.png"
        write_png(out / name, picture)
        files[f"difference_{i}"] = str(out / name)
    write_text(out / "summary.txt", summary_text(comp) + "\n")
    files["summary"] = str(out / "summary.txt")
    if report:
        from utils.report import comparison_report

        write_text(out / "report.html", comparison_report(comp, pair, differences))
        files["report"] = str(out / "report.html")
    return files
