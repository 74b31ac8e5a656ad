"""Faces through a video: stable ids from frame to frame, landmarks smoothed over time.

A detector per frame is slow (HOG scans the whole frame) and its boxes jump, so a face found once
is followed: its 68 landmarks are fitted in the next frame where they were, moved by a quarter of its
last motion (`follow_face`), and the detector runs again only every `detect_every` frames (new faces,
faces gone, and followed points that drifted are re-anchored) or when a face is lost. The landmarks that align each frame go through a one-euro filter: a still face's points
stop trembling (the aligned frame would shake by a pixel or two and wrinkle lines with it), while
a moving face's points follow with little lag, because the filter's cut-off rises with speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.faces.alignment import Alignment, ffhq_quad
from utils.faces.detection import (
    MIN_FACE_PX,
    Face,
    detect_faces,
    follow_face,
    landmark_roll,
    landmark_spread,
)
from utils.runtime import stage

# One-euro filter settings, in units of the face: speed is measured in landmark spreads (about
# a third of the face's width) per second, so one setting serves a small and a large face.
MIN_CUTOFF_HZ = 1.0  # a still face: jitter above about 1 Hz is removed
BETA = 4.0  # the cut-off rises by 4 Hz per spread/s of movement
DERIVATIVE_CUTOFF_HZ = 1.0
DETECT_EVERY = 10  # frames between detector passes while faces are followed
SECOND_EVERY = 30  # while no face is followed, the slow second detector runs at most this often
MISSES = 2  # a followed face the detector misses this many passes in a row is dropped
# A followed face is looked for where its last motion would take it, damped: a full step feeds a
# fit's error into the next (on a dark clip a still face's points ran off by 80 px with a full
# step, 25 px with a half; tests/test_video.py), while a walking face still gets a head start
MOMENTUM = 0.25
# On a detector pass, a followed face whose points lie further than this (in landmark spreads,
# on average) from the detector's fit of the same face is re-anchored to that fit.
REANCHOR = 0.25
MATCH = 1.5  # a detection within this many landmark spreads of a followed face is that face


def _alpha(dt: float, cutoff: float) -> float:
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A one-euro filter over a whole landmark set: one cut-off for all points, set by the set's
    mean speed, so the face's shape is smoothed as one piece and never distorted."""

    def __init__(self, min_cutoff: float = MIN_CUTOFF_HZ, beta: float = BETA,
                 d_cutoff: float = DERIVATIVE_CUTOFF_HZ) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t = 0.0

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """The filtered value of `x` at time `t` (s); `scale` is the unit speed is measured in."""
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        a_d = _alpha(dt, self.d_cutoff)
        self.dx = a_d * (x - self.x) / dt + (1 - a_d) * self.dx
        speed = float(np.hypot(*self.dx.reshape(-1, 2).T).mean()) / max(scale, 1e-6)
        a = _alpha(dt, self.min_cutoff + self.beta * speed)
        self.x = a * x + (1 - a) * self.x
        self.t = t
        return self.x.copy()


@dataclass
class Track:
    """One face followed through the video."""

    id: int
    face: Face  # the latest fit (raw landmarks: what the next frame is fitted from)
    smoother: OneEuroFilter | None
    misses: int = 0  # detector passes in a row that did not find it
    frames: int = 0  # frames it was followed in
    velocity: np.ndarray | None = None  # px per frame: how its landmarks moved last time


class FaceTracker:
    """Faces of a video, frame after frame, each with an id that stays while it is followed.

    `update(frame, t)` returns the faces of that frame (largest first) as (id, Face), the Face's
    landmarks and alignment smoothed over time when `smooth` is on. Ids start at 0 and are never
    reused within a video."""

    def __init__(self, smooth: bool = True, detect_every: int = DETECT_EVERY,
                 second_every: int = SECOND_EVERY, min_cutoff: float = MIN_CUTOFF_HZ,
                 beta: float = BETA) -> None:
        if detect_every < 1:
            raise ValueError("detect_every must be at least 1")
        self.smooth, self.detect_every, self.second_every = smooth, detect_every, second_every
        self.min_cutoff, self.beta = min_cutoff, beta
        self.tracks: list[Track] = []
        self.frame = -1
        self.last_detect = -10**9
        self.last_second = -10**9
        self.next_id = 0

    def _plausible(self, new: Face, old: Face, shape: tuple[int, ...]) -> bool:
        """Whether a followed fit is still the face: points of about the same size and roll,
        not far from where they were, their centre inside the frame."""
        s_new, s_old = landmark_spread(new.landmarks), landmark_spread(old.landmarks)
        if not 0.8 <= s_new / max(s_old, 1e-6) <= 1.25:
            return False
        if np.hypot(*(new.landmarks.mean(axis=0) - old.landmarks.mean(axis=0))) > 1.5 * s_old:
            return False
        turn = landmark_roll(new.landmarks) - landmark_roll(old.landmarks)
        if abs((turn + 180) % 360 - 180) > 25:
            return False
        cx, cy = new.landmarks.mean(axis=0)
        return bool(0 <= cx < shape[1] and 0 <= cy < shape[0] and new.side >= MIN_FACE_PX)

    def _find_near(self, rgb: np.ndarray, old: Face) -> Face | None:
        """The detector on the neighbourhood of where a face was (its box and one box width
        around it): a face that moved too fast to follow keeps its id, at a small part of the
        cost of a whole-frame pass."""
        x0, y0, x1, y1 = old.box
        w = x1 - x0
        cx0, cy0 = max(0, x0 - w), max(0, y0 - w)
        crop = rgb[cy0:min(rgb.shape[0], y1 + w), cx0:min(rgb.shape[1], x1 + w)]
        if min(crop.shape[:2]) < 2 * MIN_FACE_PX:
            return None
        found = detect_faces(np.ascontiguousarray(crop), second=False)
        if not found:
            return None
        origin = np.array([cx0, cy0], dtype=np.float64)
        c = old.landmarks.mean(axis=0) - origin
        near = min(found, key=lambda f: np.hypot(*(f.landmarks.mean(axis=0) - c)))
        lm = near.landmarks + origin
        bx0, by0, bx1, by1 = near.box
        return Face((bx0 + cx0, by0 + cy0, bx1 + cx0, by1 + cy0), near.score, lm,
                    Alignment(ffhq_quad(lm)), detector=near.detector)

    def _detect(self, rgb: np.ndarray) -> None:
        """A detector pass: followed faces it finds are kept, faces it misses twice dropped, new
        faces start tracks."""
        second = not self.tracks and self.frame - self.last_second >= self.second_every
        if second:
            self.last_second = self.frame
        found = [f for f in detect_faces(rgb, second=second) if f.side >= MIN_FACE_PX]
        self.last_detect = self.frame
        unmatched = list(range(len(found)))
        for tr in sorted(self.tracks, key=lambda tr: tr.id):
            c = tr.face.landmarks.mean(axis=0)
            s = landmark_spread(tr.face.landmarks)
            best = min(unmatched, default=None,
                       key=lambda i: np.hypot(*(found[i].landmarks.mean(axis=0) - c)))
            if best is not None and np.hypot(*(found[best].landmarks.mean(axis=0) - c)) < MATCH * s:
                unmatched.remove(best)
                tr.misses = 0
                apart = np.hypot(*(found[best].landmarks - tr.face.landmarks).T).mean()
                if apart > REANCHOR * s:  # the followed points drifted: start again from these
                    tr.face, tr.velocity = found[best], None
            else:
                tr.misses += 1
        self.tracks = [tr for tr in self.tracks if tr.misses < MISSES]
        for i in unmatched:
            self.tracks.append(Track(self.next_id, found[i], self._smoother()))
            self.next_id += 1

    def _smoother(self) -> OneEuroFilter | None:
        return OneEuroFilter(self.min_cutoff, self.beta) if self.smooth else None

    def _dedupe(self) -> None:
        """Two tracks on one face (one followed onto another's face): the older one stays."""
        keep: list[Track] = []
        for tr in sorted(self.tracks, key=lambda tr: tr.id):
            c = tr.face.landmarks.mean(axis=0)
            if all(np.hypot(*(c - k.face.landmarks.mean(axis=0)))
                   > 0.5 * landmark_spread(k.face.landmarks) for k in keep):
                keep.append(tr)
        self.tracks = keep

    def update(self, rgb: np.ndarray, t: float) -> list[tuple[int, Face]]:
        """The faces of the next frame (RGB uint8) at time `t` seconds, largest first."""
        self.frame += 1
        followed = []
        for tr in self.tracks:
            shift = None if tr.velocity is None else MOMENTUM * tr.velocity
            with stage("track"):
                new: Face | None = follow_face(rgb, tr.face, shift)
            ok = self._plausible(new, tr.face, rgb.shape)
            if not ok:  # moved too far to follow, or covered: look around where it was
                new = self._find_near(rgb, tr.face)
                ok = new is not None and self._plausible(new, tr.face, rgb.shape)
            if ok and new is not None:
                tr.velocity = new.landmarks.mean(axis=0) - tr.face.landmarks.mean(axis=0)
                tr.face = new
                followed.append(tr)
        lost = len(followed) < len(self.tracks)
        self.tracks = followed
        if lost or not self.tracks or self.frame - self.last_detect >= self.detect_every:
            self._detect(rgb)
        self._dedupe()
        out = []
        for tr in self.tracks:
            tr.frames += 1
            face = tr.face
            if tr.smoother is not None:
                lm = tr.smoother(face.landmarks, t, landmark_spread(face.landmarks))
                face = Face(face.box, face.score, lm, Alignment(ffhq_quad(lm)), list(face.notes),
                            face.detector)
            out.append((tr.id, face))
        out.sort(key=lambda item: -item[1].side)
        return out
