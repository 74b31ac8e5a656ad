"""The labelling loop behind annotate.py: every face of a folder of photos, aligned as FFHQ was at
1024 px, with the model's proposal as a layer to correct, saved in the FFHQ-Wrinkle layout.

    <out>/face_images/<id>.png            the aligned face, 1024x1024 RGB
    <out>/manual_wrinkle_masks/<id>.png   its wrinkle mask, 1024x1024, 0 / 255
    <out>/annotations.jsonl               one line per save (who, what, how much changed)

Ids (l00001, l00002, ...) are made here and reserved by creating a file exclusively, so no file
name can write outside the folder and two pages on one folder never take the same id; they never
clash with FFHQ's numeric ids, so the labels can be mixed with the bundled training faces. A face
is known by its photo's content (sha256) and its place among the photo's faces (largest first): a
rerun opens the first face without a label, and a saved face can be reopened and corrected (the
correction keeps its id and adds a line).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from utils.data.images import load_image
from utils.errors import UserError
from utils.visualize import write_png

if TYPE_CHECKING:
    from utils.inference.predictor import WrinklePredictor

SIDE = 1024  # the FFHQ-Wrinkle masks' frame
JOURNAL = "annotations.jsonl"
ID_PREFIX = "l"


@dataclass
class FaceItem:
    """One face to label: its photo, its place among the photo's faces, the aligned face."""

    photo: Path
    sha256: str
    face: int  # 0 = the largest face of the photo
    quad: list[list[float]]  # the FFHQ square in the photo (corners: tl, bl, br, tr)
    side_px: float  # the square's side in the photo
    aligned: np.ndarray | None = None  # 1024x1024 RGB, made when the face is opened
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return self.sha256, self.face


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class LabelFolder:
    """The output folder: saved labels, their journal, id reservation."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.images = self.out / "face_images"
        self.masks = self.out / "manual_wrinkle_masks"
        self.journal = self.out / JOURNAL
        self.reserved = self.out / ".ids"
        for d in (self.images, self.masks, self.reserved):
            d.mkdir(parents=True, exist_ok=True)

    def entries(self) -> list[dict[str, Any]]:
        """Every journal line (a line cut short by a crash is skipped)."""
        if not self.journal.is_file():
            return []
        out = []
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def labelled(self) -> dict[tuple[str, int], str]:
        """(photo sha256, face) -> id, for every face whose files are there."""
        done = {}
        for e in self.entries():
            if (self.masks / f"{e['id']}.png").is_file():
                done[(e["sha256"], int(e["face"]))] = e["id"]
        return done

    def new_id(self) -> str:
        """The next free id, reserved for good (an exclusive create: two pages never share
        one)."""
        n = len(list(self.reserved.iterdir())) + 1
        while True:
            name = f"{ID_PREFIX}{n:05d}"
            try:
                os.close(os.open(self.reserved / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return name
            except FileExistsError:
                n += 1

    def save(self, item: FaceItem, mask: np.ndarray, record: dict[str, Any],
             face_id: str | None = None) -> str:
        """Write the aligned face and the mask (atomically), then the journal line."""
        if item.aligned is None:
            raise ValueError("the face was never opened")
        if mask.shape != (SIDE, SIDE):
            raise UserError(f"the mask is {mask.shape[1]}x{mask.shape[0]} px, not {SIDE}x{SIDE}")
        face_id = face_id or self.new_id()
        write_png(self.images / f"{face_id}.png", item.aligned)
        write_png(self.masks / f"{face_id}.png", mask.astype(np.uint8) * 255)
        line = json.dumps({"id": face_id, "photo": item.photo.name, "sha256": item.sha256,
                           "face": item.face, "alignment": item.quad, **record}) + "\n"
        # one short line in append mode: written whole, between other pages' lines
        with self.journal.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return face_id


class AnnotationSession:
    """The faces of a folder of photos, in order (photo by photo, largest face first), the
    proposal for each, and saving."""

    def __init__(self, photos: list[Path], out: str | Path, annotator: str,
                 predictor: WrinklePredictor | None, start: str = "model",
                 threshold: float | None = None, log: Any = print) -> None:
        if start not in ("model", "empty"):
            raise UserError(f"--start must be model or empty, got {start!r}")
        if not annotator.strip():
            raise UserError("--annotator must name who draws the labels")
        self.folder = LabelFolder(out)
        self.annotator, self.predictor, self.start = annotator.strip(), predictor, start
        self.threshold = threshold if threshold is not None else (
            predictor.threshold if predictor is not None else 0.5)
        self.items = self._find(photos, log)
        self.skipped: set[tuple[str, int]] = set()
        self.claims: dict[tuple[str, int], str] = {}  # face -> the page that has it open

    def _find(self, photos: list[Path], log: Any) -> list[FaceItem]:
        from tqdm import tqdm

        from utils.faces.detection import detect_faces

        items: list[FaceItem] = []
        for p in tqdm(photos, desc="finding faces", disable=len(photos) < 5):
            try:
                rgb = load_image(p)
            except UserError as exc:
                log(f"skipped {exc}")
                continue
            faces = detect_faces(rgb)
            if not faces:
                log(f"skipped {p}: no face found")
            sha = sha256_of(p)
            items += [FaceItem(p, sha, k, f.alignment.quad.tolist(), f.alignment.side)
                      for k, f in enumerate(faces)]
        if not items:
            raise UserError("no face found in any of the photos")
        return items

    def progress(self) -> tuple[int, int]:
        done = self.folder.labelled()
        return sum(i.key in done for i in self.items), len(self.items)

    def next_item(self, page: str = "") -> FaceItem | None:
        """The first face without a label that no other page has open (skipped ones come last,
        once everything else has been seen); it is claimed for `page` until saved or skipped."""
        done = self.folder.labelled()
        todo = [i for i in self.items if i.key not in done
                and self.claims.get(i.key, page) == page]
        fresh = [i for i in todo if i.key not in self.skipped]
        item = (fresh or todo or [None])[0]
        for key in [k for k, v in self.claims.items() if v == page]:
            del self.claims[key]
        if item is not None:
            self.claims[item.key] = page
        return item

    def skip(self, item: FaceItem) -> None:
        self.skipped.add(item.key)
        self.claims.pop(item.key, None)

    def open(self, item: FaceItem) -> FaceItem:
        """Align the face at 1024 px (FFHQ's rule), with a note when the photo holds less."""
        from utils.faces.alignment import Alignment, snap_to_frame

        rgb = load_image(item.photo)
        al = snap_to_frame(Alignment(np.array(item.quad)), rgb.shape)
        item.aligned = al.align(rgb, SIDE)
        item.quad = al.quad.tolist()  # what was used (an FFHQ image is its own frame)
        item.notes = []
        if item.side_px < SIDE * 0.97:
            item.notes.append(f"the photo holds this face at {item.side_px:.0f} px: shown "
                              f"upsampled {SIDE / item.side_px:.1f}x to {SIDE} px (fine lines "
                              "may be blurred)")
        return item

    def proposal(self, item: FaceItem, threshold: float | None = None) -> np.ndarray:
        """The starting layer: the model's mask at 1024 px (its probabilities upsampled, then
        thresholded), or nothing with start="empty"."""
        if self.start == "empty" or self.predictor is None or item.aligned is None:
            return np.zeros((SIDE, SIDE), bool)
        thr = self.threshold if threshold is None else threshold
        probs = self.predictor.predict_aligned(item.aligned, thr).probs
        up = cv2.resize(probs, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
        return up > thr

    def save(self, item: FaceItem, mask: np.ndarray, proposal: np.ndarray, seconds: float,
             threshold: float | None = None, face_id: str | None = None) -> str:
        """Save a face: a new id, or `face_id` for a saved face reopened and corrected (the
        correction is a new journal line). A face another page saved meanwhile gets an id of its
        own: no page overwrites another's save."""
        record = {"annotator": self.annotator,
                  "start_model": None if self.start == "empty" or self.predictor is None
                  else self.predictor.description,
                  "threshold": self.threshold if threshold is None else threshold,
                  "added_px": int((mask & ~proposal).sum()),
                  "removed_px": int((proposal & ~mask).sum()),
                  "seconds": round(float(seconds), 1),
                  "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.skipped.discard(item.key)
        self.claims.pop(item.key, None)
        return self.folder.save(item, mask, record, face_id)

    def reopen(self, face_id: str) -> tuple[FaceItem, np.ndarray]:
        """A saved face and its saved mask, to correct."""
        entries = [e for e in self.folder.entries() if e["id"] == face_id]
        mask_path = self.folder.masks / f"{face_id}.png"
        if not entries or not mask_path.is_file():
            raise UserError(f"{face_id}: no saved label of that id in {self.folder.out}")
        e = entries[-1]
        item = next((i for i in self.items if i.key == (e["sha256"], int(e["face"]))), None)
        if item is None:  # its photo is not among this run's: open the saved face itself
            item = FaceItem(Path(e["photo"]), e["sha256"], int(e["face"]), e["alignment"], SIDE)
        item.aligned = load_image(self.folder.images / f"{face_id}.png")
        from utils.data.masks import read_mask

        return item, read_mask(mask_path)


def layer_of(mask: np.ndarray) -> np.ndarray:
    """A mask as the editor's drawing layer: red and opaque where wrinkle, clear elsewhere."""
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask] = (255, 0, 0, 255)
    return layer


def mask_of(layer: np.ndarray | None) -> np.ndarray:
    """The editor's drawing layer back to a mask: every pixel painted (alpha over half)."""
    if layer is None:
        return np.zeros((SIDE, SIDE), bool)
    layer = np.asarray(layer)
    if layer.ndim == 3 and layer.shape[2] == 4:
        return layer[..., 3] > 127
    return layer.reshape(layer.shape[0], layer.shape[1], -1).max(axis=2) > 0



def build_page(session: AnnotationSession) -> Any:
    """The labelling page: the face with the proposal as its drawing layer, brush and eraser,
    zoom and undo (the editor's own), a threshold for the proposal, save and next, skip, and
    reopening a saved face."""
    import html
    import uuid

    from utils.demo import SLIDER, _gradio

    gr = _gradio()

    def show(state: dict[str, Any], item: FaceItem | None, mask: np.ndarray | None,
             note: str = "") -> tuple[Any, str, dict[str, Any], Any]:
        done, total = session.progress()
        head = f"**{done} of {total} faces labelled** (annotator {html.escape(session.annotator)})"
        if item is None:
            state.update(item=None, proposal=None)
            return None, head + "\n\nEvery face has a label. Reopen one below to correct it.", \
                state, gr.update(choices=saved_ids())
        state.update(item=item, proposal=mask, t0=time.monotonic())
        lines = [head, f"{html.escape(item.photo.name)}, face {item.face + 1} (largest first)"
                 + (f", label {state['face_id']} reopened" if state.get("face_id") else "")]
        lines += [f"note: {n}" for n in item.notes] + ([note] if note else [])
        value = {"background": item.aligned, "layers": [layer_of(mask)], "composite": None}
        return value, "\n\n".join(lines), state, gr.update(choices=saved_ids())

    def saved_ids() -> list[str]:
        return sorted({e["id"] for e in session.folder.entries()})

    def next_face(state: dict[str, Any], thr: float, note: str = "") -> tuple[Any, ...]:
        state["face_id"] = None
        item = session.next_item(state["page"])
        if item is None:
            return show(state, None, None, note)
        session.open(item)
        return show(state, item, session.proposal(item, thr), note)

    def start(state: dict[str, Any] | None, thr: float) -> tuple[Any, ...]:
        state = {"page": uuid.uuid4().hex}
        return next_face(state, thr)

    def save(value: Any, state: dict[str, Any], thr: float) -> tuple[Any, ...]:
        item = state.get("item")
        if item is None:
            raise gr.Error("no face is open")
        layers = (value or {}).get("layers") or []
        mask = mask_of(layers[0] if layers else None)
        if mask.shape != (SIDE, SIDE):
            mask = cv2.resize(mask.astype(np.uint8), (SIDE, SIDE),
                              interpolation=cv2.INTER_NEAREST) > 0
        face_id = session.save(item, mask, state["proposal"], time.monotonic() - state["t0"],
                               thr, state.get("face_id"))
        return next_face(state, thr, f"saved {face_id}")

    def skip(state: dict[str, Any], thr: float) -> tuple[Any, ...]:
        if state.get("item") is not None:
            session.skip(state["item"])
        return next_face(state, thr)

    def rethreshold(state: dict[str, Any], thr: float) -> tuple[Any, ...]:
        item = state.get("item")
        if item is None or state.get("face_id"):
            return gr.update(), gr.update(), state, gr.update()
        return show(state, item, session.proposal(item, thr),
                    f"proposal redrawn at threshold {thr:.2f} (edits to the last one are gone)")

    def reopen(face_id: str | None, state: dict[str, Any]) -> tuple[Any, ...]:
        if not face_id:
            raise gr.Error("choose a saved label to reopen")
        try:
            item, mask = session.reopen(face_id)
        except UserError as exc:
            raise gr.Error(html.escape(str(exc)), print_exception=False) from None
        state["face_id"] = face_id
        return show(state, item, mask)

    with gr.Blocks(title="Wrinkle labels", analytics_enabled=False) as page:
        gr.Markdown("# Wrinkle labels\nEach face is shown aligned as FFHQ was, at 1024 px, with "
                    "the model's proposal in red (or nothing). Paint the wrinkles the proposal "
                    "missed with the brush, wipe what it marked wrongly with the eraser (the "
                    "toolbar also zooms and undoes), then **Save and next**.")
        status = gr.Markdown(elem_id="status")
        editor = gr.ImageEditor(
            type="numpy", image_mode="RGBA", sources=(), transforms=(), format="png",
            brush=gr.Brush(default_size=3, colors=["#ff0000"], color_mode="fixed"),
            eraser=gr.Eraser(default_size=12),
            layers=gr.LayerOptions(allow_additional_layers=False, layers=["wrinkles"]),
            canvas_size=(SIDE, SIDE), fixed_canvas=True, label="Face (paint the wrinkles)",
            elem_id="editor", height=760)
        with gr.Row():
            threshold = gr.Slider(*SLIDER, value=round(session.threshold, 2), step=0.01,
                                  label="Proposal threshold (lower proposes more)",
                                  elem_id="threshold", visible=session.start == "model")
            save_btn = gr.Button("Save and next", variant="primary", elem_id="save")
            skip_btn = gr.Button("Skip", elem_id="skip")
        with gr.Row():
            saved = gr.Dropdown(choices=[], label="Saved labels", elem_id="saved")
            reopen_btn = gr.Button("Reopen to correct", elem_id="reopen")
        state = gr.State(None)
        outs = [editor, status, state, saved]
        quiet = {"api_visibility": "private", "concurrency_limit": 1,
                 "concurrency_id": "labels"}
        page.load(start, [state, threshold], outs, **quiet)
        save_btn.click(save, [editor, state, threshold], outs, **quiet)
        skip_btn.click(skip, [state, threshold], outs, **quiet)
        threshold.release(rethreshold, [state, threshold], outs, **quiet)
        reopen_btn.click(reopen, [saved, state], outs, **quiet)
    page.queue(default_concurrency_limit=1, max_size=16)
    return page
