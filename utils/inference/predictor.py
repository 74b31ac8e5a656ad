"""The one predictor, used by predict.py, app.py, compare.py and the benchmarks.

`WrinklePredictor` loads any checkpoint it is given (utils/inference/loading.py recognises its
kind), applies the checkpoint's recipe (size, normalisation, face masking, texture channel), finds
every face in a photo and aligns it as FFHQ was aligned (utils/faces/), runs the model on a
backend (utils/inference/backends.py: torch with channels_last and bf16 autocast where the device
has it, or OpenVINO), measures per region, and returns probability maps and masks at the photo's
own size with wrinkle statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.checkpoints import with_tta
from utils.data.dataset import to_input
from utils.data.images import resize_image
from utils.errors import UserError
from utils.faces.alignment import Alignment, frame_alignment, snap_to_frame
from utils.faces.detection import MIN_FACE_PX, Face, detect_faces, landmark_roll
from utils.faces.lines import Line, Scale, frame_scale, line_stats, measure_lines
from utils.faces.regions import (
    landmark_face_region,
    parser_face_region,
    region_masks,
    wrinkle_stats,
)
from utils.inference.backends import (
    EXPORTED_SUFFIXES,
    OpenVINOModule,
    file_key,
    load_exported,
    resolve_backend,
    resolve_precision,
    to_openvino,
)
from utils.inference.loading import (
    BASELINE_RECIPE,
    BASELINE_THRESHOLD,
    DEFAULT_CHECKPOINT,
    FRAME_CHECKPOINT,
    LoadedModel,
    TextureBaseline,
    fold_batchnorm,
    load_any_checkpoint,
    named_for_tta,
)
from utils.runtime import autocast, logits_to_probs, resolve_device, stage

# A face is "small" for the model only when its FFHQ square in the photo is less than this share
# of the model's frame (the photo is upsampled by more than 1.25x). An FFHQ image at the model's
# own size measures 0.97-1.0 of it: its landmarks are a few px noisy.
SMALL_FACE_SHARE = 0.8


def holds_less_detail(side: float, frame: int) -> bool:
    """True when a face `side` px across in the photo holds clearly less detail than the model's
    `frame` (see SMALL_FACE_SHARE): the one rule of the notes, the demo and compare.py."""
    return side < SMALL_FACE_SHARE * frame


class NoFaceError(UserError):
    """No face was found in a photo and the caller asked to skip such photos."""


@dataclass
class FoundFaces:
    """A photo ready for the model: scaled as the predictor works on it, its notes, and its
    faces with their FFHQ squares (a face of None: the whole image as the frame)."""

    photo: np.ndarray
    notes: list[str]
    faces: list[tuple[Face | None, Alignment]]


@dataclass
class FaceResult:
    """One face: where it is in the photo, the aligned face the model saw, and what it found.

    Maps (`aligned`, `probs`, `mask`, `face`, `regions`) are in the aligned frame, `frame` px a
    side; the statistics are measured there. `alignment` maps that frame to the photo and back.
    """

    index: int
    box: tuple[int, int, int, int] | None  # detector box in the photo (None: the whole image)
    score: float | None  # detector confidence
    landmarks: np.ndarray | None  # (68, 2) in the photo
    alignment: Alignment
    aligned: np.ndarray
    probs: np.ndarray
    mask: np.ndarray
    face: np.ndarray
    regions: dict[str, np.ndarray]
    stats: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    detector: str = ""  # which detector found the face ("hog", "cnn"); "" for none
    lines: list[Line] = field(default_factory=list)  # wrinkle lines, aligned frame
    scale: Scale | None = None  # mm per aligned-frame pixel (None without landmarks)

    @property
    def frame(self) -> int:
        return int(self.aligned.shape[0])

    @property
    def aligned_landmarks(self) -> np.ndarray | None:
        if self.landmarks is None:
            return None
        return self.alignment.to_aligned(self.landmarks, self.frame)


@dataclass
class WrinkleResult:
    """A photo's prediction: maps at the photo's size (after any scaling down), every face."""

    probs: np.ndarray  # float32 (H, W) in [0, 1]; 0 away from the faces
    mask: np.ndarray  # bool (H, W)
    face: np.ndarray | None  # bool (H, W): the face regions the statistics are measured in
    threshold: float
    faces: list[FaceResult]
    notes: list[str] = field(default_factory=list)

    @property
    def stats(self) -> dict[str, Any] | None:
        """The statistics of the largest face (None when no face was analysed)."""
        return self.faces[0].stats if self.faces else None


class WrinklePredictor:
    """Load a wrinkle model once; find every face in a photo, align it as FFHQ was aligned,
    predict, measure per region, and paste the maps back into the photo.

    checkpoint: a file of any known kind (see load_any_checkpoint); None is the bundled model.
    baseline: the texture-map baseline instead of a model. faces: "all" or "largest".
    no_face: a photo without a face raises NoFaceError ("skip"), or is analysed whole, as if it
    were an aligned face ("whole"). face_region: "auto" (BiSeNet when res/cp/79999_iter.pth is
    there, else the landmark region) or "none" (the whole aligned frame). backend: "auto"
    (OpenVINO on a CPU where it is installed, else torch), "torch" or "openvino"; an exported
    .onnx / .xml file always runs on OpenVINO (utils/inference/backends.py). precision: "auto"
    (int8 on OpenVINO, else bf16 where the device has it, else fp32), "int8", "bf16" or "fp32"
    (backends.resolve_precision). tta: None serves
    the test-time augmentation the checkpoint names, "none" or "flip" (a face averaged with its
    mirror image, utils.checkpoints.Averaged) override it.
    """

    def __init__(self, checkpoint: str | Path | None = None, *, baseline: bool = False,
                 device: str = "auto", precision: str = "auto", max_side: int = 4096,
                 faces: str = "all", no_face: str = "skip", face_region: str = "auto",
                 parser: Any = None, backend: str = "auto", tta: str | None = None,
                 ipd_mm: float | None = None) -> None:
        if faces not in ("all", "largest") or no_face not in ("skip", "whole") or \
                face_region not in ("auto", "none"):
            raise ValueError(f"bad faces/no_face/face_region option: {faces!r}, {no_face!r}, "
                             f"{face_region!r}")
        if baseline and checkpoint is not None:
            raise ValueError("a checkpoint and the baseline exclude each other")

        self.device = resolve_device(device)
        exported = checkpoint is not None and Path(checkpoint).suffix in EXPORTED_SUFFIXES
        self.backend = "openvino" if exported else resolve_backend(backend, self.device)
        if exported and backend == "torch":
            raise UserError(f"{checkpoint}: an exported model runs on the OpenVINO backend")
        if baseline:
            self.backend = "torch"  # a single elementwise op: nothing to compile
        self.precision = resolve_precision("fp32" if baseline else precision, self.backend,
                                           self.device)
        # torch autocast's dtype (OpenVINO is given its precision when it compiles)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        if baseline:
            self.loaded = LoadedModel("texture_baseline", "texture-map baseline (no trained model)",
                                      dict(BASELINE_RECIPE), BASELINE_THRESHOLD, TextureBaseline(),
                                      ["no wrinkle weights: showing the texture-map baseline"],
                                      "the texture map itself (no training): it marks fine lines "
                                      "and skin texture alike")
        else:
            if checkpoint is None:
                checkpoint = DEFAULT_CHECKPOINT
                if not DEFAULT_CHECKPOINT.is_file():
                    raise UserError(f"the bundled model {DEFAULT_CHECKPOINT} is missing: restore "
                                    "it (git checkout res/cp/) or pass a checkpoint or the "
                                    "baseline")
            self.loaded = (load_exported(checkpoint, self.precision) if exported
                           else load_any_checkpoint(checkpoint))
            if exported:
                self.precision = self.loaded.model.precision
        if tta is not None:
            if exported:
                raise UserError(f"{checkpoint}: an exported model keeps the test-time "
                                "augmentation it was exported with")
            self.loaded.model = with_tta(self.loaded.model, tta)
            self.loaded.name = named_for_tta(self.loaded.name, tta)
        self.checkpoint = checkpoint
        # what a second predictor of this one's settings needs (for_frames)
        self.options = {"device": device, "precision": precision, "max_side": max_side,
                        "faces": faces, "no_face": no_face, "face_region": face_region,
                        "backend": backend, "tta": tta, "ipd_mm": ipd_mm}
        if ipd_mm is not None and not 40 <= ipd_mm <= 90:
            raise UserError(f"--ipd-mm {ipd_mm:g}: an adult's interpupillary distance is "
                            "about 50-75 mm (give it in millimetres)")
        self.ipd_mm = ipd_mm
        self.setup: list[str] = []  # what loading did that takes time once (int8 quantisation)
        self.max_side = max_side
        self.faces_mode, self.no_face, self.face_region_mode = faces, no_face, face_region
        self.parser = parser
        if parser is None and face_region == "auto":
            from bisenet.parser import default_parser

            self.parser = default_parser()
        if self.backend == "openvino" and not isinstance(self.loaded.model, OpenVINOModule):
            model = fold_batchnorm(self.loaded.model.eval())
            self.loaded.model = to_openvino(model, self.loaded.recipe, self.precision,
                                            cache_key=(*file_key(checkpoint), self.loaded.name),
                                            source=checkpoint, variant=self.loaded.name,
                                            log=self.setup.append)
        elif self.backend == "torch":
            model = fold_batchnorm(self.loaded.model.eval())
            self.loaded.model = model.to(self.device).to(memory_format=torch.channels_last)

    @classmethod
    def from_choice(cls, checkpoint: str | Path | None, baseline: bool,
                    **kwargs: Any) -> WrinklePredictor:
        """What the scripts' --checkpoint / --baseline flags ask for (default: the bundled model),
        with a line on stdout naming the model, the face region and any fallback."""
        predictor = cls(checkpoint or None, baseline=baseline, **kwargs)
        predictor.announce("model")
        print(f"face region: {predictor.face_description}")
        return predictor

    def announce(self, label: str) -> None:
        """Say on stdout which model this is, what loading it did (an int8 quantisation) and
        any note of its file."""
        print(f"{label}: {self.description}")
        for line in self.setup:
            print(line)
        for note in self.loaded.notes:
            print(f"note: {note}")

    def for_frames(self, choice: str = "auto", quiet: bool = False) -> WrinklePredictor:
        """The predictor of clips and the live webcam (--frame-model): `auto` is the bundled
        frame model when this one is the bundled photo model (a student a quarter of its cost,
        so that frames keep up on two cores), else this one; `photo` is this one; anything else
        is a checkpoint file. Shares the face parser; prints what it loaded unless `quiet`."""
        if choice == "photo" or self.is_baseline:
            return self
        if choice == "auto":
            bundled = self.checkpoint is not None and \
                Path(self.checkpoint).resolve() == DEFAULT_CHECKPOINT.resolve()
            if not bundled or not FRAME_CHECKPOINT.is_file():
                return self
            choice = str(FRAME_CHECKPOINT)
        frames = WrinklePredictor(choice, parser=self.parser, **self.options)
        if not quiet:
            frames.announce("frame model")
        return frames

    @property
    def short_name(self) -> str:
        """The model's file name and precision: what a video overlay prints on each frame."""
        if self.is_baseline or self.checkpoint is None:
            return self.loaded.name
        return f"{Path(str(self.checkpoint)).stem} ({self.precision})"

    @property
    def is_baseline(self) -> bool:
        return self.loaded.kind == "texture_baseline"

    @property
    def description(self) -> str:
        if self.is_baseline:
            return self.loaded.name
        where = "OpenVINO, cpu" if self.backend == "openvino" else self.device.type
        return f"{self.loaded.name} on {where} ({self.precision})"

    @property
    def face_description(self) -> str:
        """Which face region is in use, for the app's model line and the CSV."""
        if self.face_region_mode == "none":
            return "whole aligned face (face region off)"
        if self.parser is not None:
            return getattr(self.parser, "description", "BiSeNet face parser")
        return ("landmark face region (jaw line, forehead, eyes and lips cut out); the BiSeNet "
                "face parser is used instead when res/cp/79999_iter.pth is present")

    @property
    def face_fallback(self) -> bool:
        """True when the face region is not the face parser's."""
        return self.parser is None and self.face_region_mode == "auto"

    @property
    def threshold(self) -> float:
        return self.loaded.threshold

    @property
    def frame_size(self) -> int:
        """The side of the aligned frame: the model's input size (FFHQ's 1024 for native)."""
        return int(self.loaded.recipe.get("image_size") or 1024)

    # ------------------------------------------------------------ steps

    def _check(self, rgb: np.ndarray) -> tuple[np.ndarray, list[str]]:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise UserError(f"expected an RGB uint8 image, got shape {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        if min(h, w) < 16:
            raise UserError(f"the image of {w}x{h} px is too small to analyse (at least 16 px "
                            "a side, and a face of at least 40 px)")
        notes = []
        if max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            rgb = resize_image(rgb, (max(1, round(h * s)), max(1, round(w * s))))
            notes.append(f"scaled down from {w}x{h} to {rgb.shape[1]}x{rgb.shape[0]}")
        return rgb, notes

    def _find(self, rgb: np.ndarray, notes: list[str]) -> list[tuple[Face | None, Alignment]]:
        """The faces to analyse (largest first), or the whole image when asked for."""
        found = detect_faces(rgb)
        usable = []
        for f in found:
            if f.side < MIN_FACE_PX:
                notes.append(f"a face of {f.side:.0f} px at {f.box[:2]} is too small to analyse "
                             f"(at least {MIN_FACE_PX} px); skipped")
                continue
            usable.append(f)
        if self.faces_mode == "largest":
            if len(usable) > 1:
                notes.append(f"{len(usable)} faces found; the largest analysed")
            usable = usable[:1]
        if usable:
            out = []
            for f in usable:
                al = snap_to_frame(f.alignment, rgb.shape)
                if al is not f.alignment:
                    notes.append("the photo is already in the FFHQ frame (its face's landmarks "
                                 "say so): analysed as it is, without resampling")
                out.append((f, al))
            return out
        h, w = rgb.shape[:2]
        why = ("no face found" if not found else "no face large enough to analyse")
        if min(h, w) < 80:
            why += f" (the image is only {w}x{h} px; a face needs at least about 40 px)"
        if self.no_face == "skip":
            raise NoFaceError(why)
        notes.append(f"{why}: the whole image was analysed as if it were an aligned face "
                     f"(no regions)")
        return [(None, frame_alignment(rgb.shape))]

    def _face_region(self, aligned: np.ndarray, lm: np.ndarray | None) -> np.ndarray:
        size = aligned.shape[0]
        if self.face_region_mode == "none":
            return np.ones((size, size), bool)
        if self.parser is not None:
            mask = parser_face_region(self.parser(aligned))
            if mask.any():
                return mask
        if lm is None:
            return np.ones((size, size), bool)
        return landmark_face_region(lm, (size, size))

    @torch.inference_mode()
    def _probabilities(self, images: list[np.ndarray], faces: list[np.ndarray]) -> list[np.ndarray]:
        """Wrinkle probability maps of aligned faces (frame_size square), in batches."""
        recipe = self.loaded.recipe
        size = self.frame_size
        per_batch = max(1, (4 * 512 * 512) // (size * size))
        out: list[np.ndarray] = []
        for start in range(0, len(images), per_batch):
            xs = [to_input(im, recipe, f if recipe.get("face_masking") else None)
                  for im, f in zip(images[start:start + per_batch], faces[start:start + per_batch],
                                   strict=True)]
            x = torch.stack(xs).to(self.device).contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.dtype):
                logits = self.loaded.model(x)
            out += [np.clip(p, 0, 1) for p in logits_to_probs(logits).float().cpu().numpy()]
        return out

    def _analyse(self, items: list[tuple[int, int, Face | None, Alignment, np.ndarray]],
                 thr: float) -> list[FaceResult]:
        size = self.frame_size
        aligned, lms, regions_in = [], [], []
        for _, _, face, al, photo in items:
            with stage("align"):
                aligned.append(al.align(photo, size))
            lms.append(None if face is None else al.to_aligned(face.landmarks, size))
        with stage("face_region"):
            for im, lm in zip(aligned, lms, strict=True):
                regions_in.append(self._face_region(im, lm))
        with stage("model"):
            probs = self._probabilities(aligned, regions_in) if aligned else []
        results = []
        for (_, index, face, al, _), im, lm, region, p in zip(items, aligned, lms, regions_in,
                                                                 probs, strict=True):
            mask = p > thr
            with stage("statistics"):
                regs = {} if lm is None else region_masks(lm, (size, size), region)
                stats = wrinkle_stats(mask, region, regs)
                scale, lines = None, []
                if lm is not None:
                    scale = frame_scale(lm, self.ipd_mm)
                    lines = measure_lines(mask & region, scale, p, regs, landmark_roll(lm))
                    stats["mm"] = line_stats(lines, scale, regs, region)
            notes = []
            if face is not None and holds_less_detail(face.side, size):
                notes.append(f"face {index}: its FFHQ square is {face.side:.0f} px in the photo, "
                             f"smaller than the model's {size} px frame (under "
                             f"{SMALL_FACE_SHARE:.0%} of it): the photo holds less detail than "
                             "the model was trained on")
            results.append(FaceResult(
                index, face.box if face else None, face.score if face else None,
                face.landmarks if face else None, al, im, p.astype(np.float32), mask, region,
                regs, stats, notes,
                face.detector if face else "", lines, scale))
        return results

    # ------------------------------------------------------------ public

    def predict(self, rgb: np.ndarray, threshold: float | None = None) -> WrinkleResult:
        """Predict one RGB uint8 photo."""
        return self.predict_batch([rgb], threshold)[0]

    def predict_batch(self, rgbs: list[np.ndarray],
                      threshold: float | None = None) -> list[WrinkleResult]:
        """Predict several photos: every face aligned, predicted and measured in its aligned
        frame; maps pasted back at each photo's size (after any scaling down)."""
        self._threshold(threshold)  # a bad threshold fails before any work
        return self.finish([self.find(rgb) for rgb in rgbs], threshold)

    def find(self, rgb: np.ndarray) -> FoundFaces:
        """The first half of `predict`: the photo checked and scaled, its faces found and
        landmarked (NoFaceError where there is none). No model runs here, so a folder run does
        this for the next photo in a thread while the model works on this one."""
        with stage("scale"):
            photo, notes = self._check(rgb)
        return FoundFaces(photo, notes, self._find(photo, notes))

    def finish(self, found: list[FoundFaces], threshold: float | None = None
               ) -> list[WrinkleResult]:
        """The second half: every face aligned, the model, the statistics, the paste-back."""
        thr = self._threshold(threshold)
        items = [(i, j, face, al, f.photo) for i, f in enumerate(found)
                 for j, (face, al) in enumerate(f.faces)]
        faces = self._analyse(items, thr)
        results = []
        for i, f in enumerate(found):
            mine = [r for (k, *_), r in zip(items, faces, strict=True) if k == i]
            with stage("paste_back"):
                results.append(self._compose(f.photo.shape[:2], mine, thr, f.notes))
        return results

    def predict_aligned(self, rgb: np.ndarray, threshold: float | None = None) -> FaceResult:
        """The model on an image taken as an aligned face as it is: no face finding, no
        warping (a reference for benchmarks, and for images already in the FFHQ frame)."""
        thr = self._threshold(threshold)
        photo, _ = self._check(rgb)
        return self._analyse([(0, 0, None, frame_alignment(photo.shape), photo)], thr)[0]

    def _threshold(self, threshold: float | None) -> float:
        thr = self.threshold if threshold is None else float(threshold)
        if not 0.0 < thr < 1.0:
            raise UserError(f"threshold must be between 0 and 1, got {thr}")
        return thr

    def _compose(self, shape: tuple[int, int], faces: list[FaceResult], thr: float,
                 notes: list[str]) -> WrinkleResult:
        """Paste every face's maps back into the photo (the larger probability where two
        faces' squares overlap)."""
        probs = np.zeros(shape, np.float32)
        mask = np.zeros(shape, bool)
        face_px = np.zeros(shape, bool)
        for f in faces:
            (x0, y0, x1, y1), (p, m, fr), inside = f.alignment.paste_back_all(
                [(f.probs, "map"), (f.mask, "mask"), (f.face, "mask")], shape)
            if p.size == 0:
                continue
            roi = (slice(y0, y1), slice(x0, x1))
            probs[roi] = np.where(inside, np.maximum(probs[roi], p), probs[roi])
            mask[roi] |= m & inside
            face_px[roi] |= fr & inside
            notes = notes + [n for n in f.notes if n not in notes]
        return WrinkleResult(probs, mask, face_px if faces else None, thr, faces,
                             list(self.loaded.notes) + notes)
