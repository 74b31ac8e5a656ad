"""Wrinkles as lines, in millimetres: a mask's centre lines traced as polylines, and the scale
of the aligned frame from the distance between the pupils.

Dermatology reports wrinkles as lines (how many, how long, how wide, per region), so a mask is
thinned to one-pixel centre lines (Guo-Hall thinning: connected, unlike the morphological
skeleton that `regions.skeleton_length` counts), the centre lines are split at their junctions
into polylines, and spurs shorter than about a millimetre (the thinning's whiskers on a wide
line) are pruned. Each line is measured in the aligned frame: its length along the polyline
(Euclidean, once its pixel staircase is simplified away), its mean width (the mask pixels nearest to
it over its length), its angle to the eye line and its mean probability.

The scale: the pupil centres are the means of landmarks 36-41 and 42-47; the interpupillary
distance (IPD) of adults averages about 63 mm, with a standard deviation of about 3.5 mm between
people (so a mm figure from the default carries about 6 % uncertainty, one sd); a person's own
measured IPD (`ipd_mm`) removes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

IPD_MM = 63.0  # adult mean interpupillary distance
IPD_SD_MM = 3.5  # its spread between adults (one standard deviation)
SPUR_MM = 1.0  # end branches shorter than this are the thinning's whiskers, not lines
SIMPLIFY_PX = 0.7  # a traced line's pixel staircase is simplified within this (Douglas-Peucker)

# the 8 neighbours in the order Zhang-Suen walks them: P2 (north) clockwise to P9 (north-west)
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def pupils(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The person's right and left pupil centres: the means of landmarks 36-41 and 42-47."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)


@dataclass
class Scale:
    """Millimetres per pixel of a frame, and where the figure came from."""

    mm_per_px: float
    ipd_px: float
    ipd_mm: float
    source: str  # "default" (the adult mean) or "measured" (the person's own, given)

    @property
    def uncertainty(self) -> float:
        """Relative uncertainty (one sd) of every mm figure: the adults' IPD spread with the
        default, none beyond the landmarks' own with a measured IPD."""
        return IPD_SD_MM / IPD_MM if self.source == "default" else 0.0

    def describe(self) -> str:
        if self.source == "default":
            return (f"{self.mm_per_px:.4f} mm/px from an assumed interpupillary distance of "
                    f"{self.ipd_mm:g} mm (the adult mean; +-{100 * self.uncertainty:.0f} % "
                    "between people)")
        return (f"{self.mm_per_px:.4f} mm/px from the measured interpupillary distance of "
                f"{self.ipd_mm:g} mm")


def frame_scale(landmarks: np.ndarray, ipd_mm: float | None = None) -> Scale:
    """The scale of the frame the landmarks are in (the aligned frame, for the statistics)."""
    right, left = pupils(landmarks)
    ipd_px = float(np.hypot(*(left - right)))
    if ipd_px <= 0:
        raise ValueError("the pupils coincide: no scale")
    mm = IPD_MM if ipd_mm is None else float(ipd_mm)
    return Scale(mm / ipd_px, ipd_px, mm, "default" if ipd_mm is None else "measured")


def _guo_hall_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each of the 256 neighbourhoods (bit i set: the i-th neighbour of _RING, P2 first),
    whether Guo-Hall's first and second sub-iteration delete the centre pixel."""
    bits = (np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1
    p2, p3, p4, p5, p6, p7, p8, p9 = (bits[:, i].astype(bool) for i in range(8))
    c = ((~p2 & (p3 | p4)).astype(int) + (~p4 & (p5 | p6)) + (~p6 & (p7 | p8))
         + (~p8 & (p9 | p2)))
    n = np.minimum((p9 | p2).astype(int) + (p3 | p4) + (p5 | p6) + (p7 | p8),
                   (p2 | p3).astype(int) + (p4 | p5) + (p6 | p7) + (p8 | p9))
    base = (c == 1) & (n >= 2) & (n <= 3)
    return base & ~((p6 | p7 | ~p9) & p8), base & ~((p2 | p3 | ~p5) & p4)


_DELETE = _guo_hall_tables()
# correlation kernel that writes each pixel's neighbourhood code (bit i: neighbour i of _RING)
_CODE = np.zeros((3, 3), np.float32)
for _i, (_dy, _dx) in enumerate(_RING):
    _CODE[_dy + 1, _dx + 1] = 1 << _i


# the neighbours' offsets (dy, dx) of each neighbourhood code
_OFFSETS = [[_RING[i] for i in range(8) if c >> i & 1] for c in range(256)]


def thin(mask: np.ndarray) -> np.ndarray:
    """Guo-Hall thinning of a binary mask: its centre lines, one pixel wide and 8-connected
    wherever the mask was. (Zhang-Suen, the other common choice, eats into diagonal lines two
    pixels wide from their ends: a 49 px line measured 26.) Each sub-iteration reads every
    pixel's neighbourhood as one code (a filter) and looks its fate up in a table."""
    img = np.asarray(mask, dtype=bool).astype(np.uint8)
    while True:
        changed = False
        for table in _DELETE:
            code = cv2.filter2D(img, cv2.CV_16S, _CODE, borderType=cv2.BORDER_CONSTANT)
            drop = (img == 1) & table[code]
            if drop.any():
                img[drop] = 0
                changed = True
        if not changed:
            return img.astype(bool)


def _ring(skel: np.ndarray) -> list[np.ndarray]:
    padded = np.pad(skel.astype(np.uint8), 1)
    h, w = skel.shape
    return [padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in _RING]


def nodes(skel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ends (one neighbour) and junctions (three or more branches by the crossing number, so
    a staircase corner of a diagonal line is not one) of a one-pixel skeleton."""
    skel = np.asarray(skel, dtype=bool)
    ring = _ring(skel)
    count = sum(ring)
    crossings = sum(((ring[i] == 0) & (ring[(i + 1) % 8] == 1)).astype(np.uint8)
                    for i in range(8))
    return skel & (count == 1), skel & (crossings >= 3)


def trace(skel: np.ndarray) -> list[tuple[np.ndarray, bool, bool]]:
    """The polylines of a one-pixel skeleton, split at its junctions: (points, starts at a
    junction, ends at a junction), points an (N, 2) array of (x, y) pixel centres. A closed
    loop without a junction is one polyline that returns to its first point."""
    skel = np.asarray(skel, dtype=bool)
    ends_map, junctions_map = nodes(skel)
    code = cv2.filter2D(skel.astype(np.uint8), cv2.CV_16S, _CODE,
                        borderType=cv2.BORDER_CONSTANT)
    ys, xs = np.nonzero(skel)
    # plain Python from here: a skeleton has hundreds of pixels, walked one at a time
    neighbours = {(y, x): [(y + dy, x + dx) for dy, dx in _OFFSETS[c]]
                  for y, x, c in zip(ys.tolist(), xs.tolist(), code[ys, xs].tolist(),
                                     strict=True)}
    junctions = set(zip(*(a.tolist() for a in np.nonzero(junctions_map)), strict=True))
    node = junctions | set(zip(*(a.tolist() for a in np.nonzero(ends_map)), strict=True))
    visited: set[tuple[int, int]] = set()
    done_pairs: set[frozenset] = set()
    out: list[tuple[np.ndarray, bool, bool]] = []

    def walk(start: tuple[int, int], first: tuple[int, int]) -> list[tuple[int, int]]:
        path, cur = [start, first], first
        while cur not in node:
            visited.add(cur)
            around = neighbours[cur]
            nxt = [p for p in around if p not in path[-2:] and p not in visited]
            if start in around and len(path) > 3 and start not in nxt:
                nxt.append(start)  # a loop closes
            if not nxt:
                break
            # a staircase offers a corner and the diagonal past it: take the diagonal and
            # count the corner as passed
            diag = [p for p in nxt if p[0] != cur[0] and p[1] != cur[1]]
            at_node = [p for p in nxt if p in node]  # never step past an end or a junction
            step = at_node[0] if at_node else diag[0] if diag and len(nxt) > 1 else nxt[0]
            if step[0] != cur[0] and step[1] != cur[1]:  # a diagonal step: its corner is passed
                for p in ((cur[0], step[1]), (step[0], cur[1])):
                    if p in nxt and p not in node:
                        visited.add(p)
            path.append(step)
            cur = step
            if cur == start:
                break
        return path

    def keep(path: list[tuple[int, int]]) -> None:
        pts = np.array([(px, py) for py, px in path], dtype=np.float64)
        out.append((pts, path[0] in junctions, path[-1] in junctions))

    for here in sorted(node):
        for nb in neighbours[here]:
            if nb in node:
                pair = frozenset((here, nb))
                if pair in done_pairs or (here in junctions and nb in junctions):
                    continue  # junction pixels side by side are one junction
                done_pairs.add(pair)
                keep([here, nb])
            elif nb not in visited:
                keep(walk(here, nb))
    for here in sorted(neighbours):  # loops without an end or a junction
        if here in node or here in visited:
            continue
        nbs = [p for p in neighbours[here] if p not in visited]
        if not nbs:
            continue
        visited.add(here)
        keep(walk(here, nbs[0]))
    return out


def prune(skel: np.ndarray, min_px: float, rounds: int = 3
          ) -> list[tuple[np.ndarray, bool, bool]]:
    """The skeleton's polylines with its spurs removed: branches free at one end and at a
    junction at the other, shorter than min_px (the whiskers thinning leaves on a wide line).
    A spur's pixels leave the skeleton (its junction pixel stays) and it is traced again, so
    the two halves of a line a whisker split become one line. A line free at both ends is kept
    whatever its length: a short wrinkle is still a wrinkle."""
    skel = np.asarray(skel, dtype=bool).copy()
    for _ in range(rounds):
        lines = trace(skel)
        spurs = [pts for pts, a, b in lines if a != b and polyline_length(pts) < min_px]
        if not spurs:
            return lines
        for pts, a, _b in [(p, a, b) for p, a, b in lines if a != b and
                           polyline_length(p) < min_px]:
            free = pts[1:] if a else pts[:-1]
            skel[free[:, 1].astype(int), free[:, 0].astype(int)] = False
    return trace(skel)


def simplify(points: np.ndarray, tolerance: float = SIMPLIFY_PX) -> np.ndarray:
    """A traced line without its pixel staircase: the fewest points within `tolerance` px of
    every pixel centre (Douglas-Peucker). The staircase of a digital line is up to 8 % longer
    than the line; simplified, lines of every angle measure within 1-2 px of their length."""
    if len(points) < 3:
        return np.asarray(points, dtype=np.float64)
    out = cv2.approxPolyDP(np.asarray(points, np.float32).reshape(-1, 1, 2), tolerance, False)
    return out.reshape(-1, 2).astype(np.float64)


def polyline_length(points: np.ndarray) -> float:
    """Euclidean length along a polyline's points."""
    if len(points) < 2:
        return 0.0
    return float(np.hypot(*np.diff(points, axis=0).T).sum())


@dataclass
class Line:
    """One wrinkle line in the aligned frame (points are (x, y) pixel centres)."""

    points: np.ndarray
    length_px: float
    area_px: int = 0
    region: str = ""
    angle_deg: float = 0.0
    mean_prob: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def width_px(self) -> float:
        return self.area_px / self.length_px if self.length_px > 0 else 0.0


def measure_lines(mask: np.ndarray, scale: Scale, probs: np.ndarray | None = None,
                  regions: dict[str, np.ndarray] | None = None,
                  eye_line_deg: float = 0.0) -> list[Line]:
    """The wrinkle lines of a mask in the aligned frame: thinned, traced, split at junctions,
    spurs under SPUR_MM pruned; each with its length, area (the mask pixels nearest to it),
    region (where most of its points lie), angle to the eye line and mean probability."""
    mask = np.asarray(mask, dtype=bool)
    traced = [pts for pts, _, _ in prune(thin(mask), SPUR_MM / scale.mm_per_px)]
    if not traced:
        return []
    # every mask pixel goes to the line whose skeleton pixel is nearest
    owner = np.full(mask.shape, -1, dtype=np.int32)
    for i, ln in enumerate(traced):
        pts = ln.astype(int)
        owner[pts[:, 1], pts[:, 0]] = i
    seeds = (owner < 0).astype(np.uint8)
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    zeros = np.nonzero(seeds == 0)
    label_owner = np.full(labels.max() + 1, -1, dtype=np.int32)
    label_owner[labels[zeros]] = owner[zeros]
    nearest = label_owner[labels]
    area = np.bincount(nearest[mask & (nearest >= 0)], minlength=len(traced))
    out = []
    for i, ln in enumerate(traced):
        pts = ln.astype(int)
        d = ln[-1] - ln[0]
        angle = float(np.degrees(np.arctan2(d[1], d[0]))) - eye_line_deg
        angle = (angle + 90) % 180 - 90  # a line has no direction: -90..90 to the eye line
        region = ""
        if regions:
            counts = {name: int(m[pts[:, 1], pts[:, 0]].sum()) for name, m in regions.items()}
            best = max(counts, key=counts.get) if counts else ""
            region = best if counts.get(best, 0) > 0 else ""
        prob = None if probs is None else float(np.asarray(probs)[pts[:, 1], pts[:, 0]].mean())
        line = simplify(ln)
        out.append(Line(line, polyline_length(line), int(area[i]), region, angle, prob))
    return out


def line_stats(lines: list[Line], scale: Scale, regions: dict[str, np.ndarray],
               face: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Per region (and "face", the whole face region) the lines as clinicians count them: how
    many, their total length and mean width in mm (area over length, so long lines weigh more),
    and the density: mm of line per cm² of the region."""
    mm, mm2_per_px = scale.mm_per_px, scale.mm_per_px ** 2
    areas = {name: int(m.sum()) for name, m in regions.items()}
    areas["face"] = int(face.sum()) if face is not None else 0
    out = {}
    for name, area in areas.items():
        mine = lines if name == "face" else [ln for ln in lines if ln.region == name]
        length = sum(ln.length_px for ln in mine)
        cm2 = area * mm2_per_px / 100
        out[name] = {"count": len(mine), "length_mm": length * mm,
                     "width_mm": sum(ln.area_px for ln in mine) / length * mm if length else 0.0,
                     "density_mm_per_cm2": length * mm / cm2 if cm2 else 0.0}
    return out
