"""Self-training: a teacher's wrinkle probabilities on unlabelled faces, kept as soft labels that
a student trains on beside the hand-labelled faces (data.pseudo_dir).

A teacher is one checkpoint or several of one recipe (their probabilities averaged), each face
averaged with its mirror image by default. Labels are 8-bit PNGs, probability x 255, one per
face id, at the teacher's input size; teacher.json beside them says who made them. In a
cross-validation the teacher of fold k is that fold's model, which never saw the faces fold k
holds out (bench/cross_validate.py --teachers).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.checkpoints import ensemble_checkpoint, load_checkpoint, model_from_checkpoint
from utils.data.dataset import WrinkleDataset, batch_to_device
from utils.data.pairs import find_pairs, min_image_side
from utils.errors import UserError
from utils.io import atomic_path, write_json
from utils.runtime import amp_dtype, autocast, logits_to_probs, resolve_device

TEACHER_FILE = "teacher.json"


def teacher(checkpoints: Sequence[str | Path], tta: str = "flip"
            ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The teacher model (members averaged, with `tta`) and its input recipe."""
    names = [str(c) for c in checkpoints]
    ckpts = [load_checkpoint(c) for c in names]
    ckpt = ckpts[0] if len(ckpts) == 1 else ensemble_checkpoint(ckpts, names)
    ckpt["model"] = dict(ckpt["model"], tta=tta)
    return model_from_checkpoint(ckpt, names[0]), ckpt["preprocess"]


def _same_teacher(out: Path, about: dict[str, Any]) -> bool:
    import json

    path = out / TEACHER_FILE
    if not path.is_file():
        return False
    old = json.loads(path.read_text(encoding="utf-8"))
    return {k: old.get(k) for k in ("teachers", "tta")} == {k: about[k] for k in ("teachers",
                                                                                  "tta")}


@torch.no_grad()
def write_soft_labels(checkpoints: Sequence[str | Path], image_dir: str | Path,
                      out: str | Path, skip_ids: set[str] | frozenset[str] = frozenset(),
                      tta: str = "flip", device: str = "auto", batch_size: int = 8,
                      progress: bool = True, log: Callable[[str], None] = print
                      ) -> dict[str, Any]:
    """Write <out>/<id>.png (probability x 255) for every face of image_dir not in skip_ids.

    A rerun with the same teacher keeps the labels already written (a killed run resumes); a
    different teacher in the same folder is refused rather than mixed in.
    """
    out = Path(out)
    about = {"teachers": [str(Path(c)) for c in checkpoints], "tta": tta,
             "image_dir": str(image_dir)}
    if out.is_dir() and any(out.glob("*.png")) and not _same_teacher(out, about):
        raise UserError(f"{out}: holds soft labels of another teacher; choose a new folder")
    model, recipe = teacher(checkpoints, tta)
    dev = resolve_device(device)
    model = model.to(dev).to(memory_format=torch.channels_last)
    report = find_pairs(image_dir, None, None, progress=False,
                        min_side=min_image_side(recipe.get("image_size")))
    pairs = [p for p in report.pairs if p.id not in skip_ids]
    if not pairs:
        raise UserError(f"{image_dir}: no face to label (every image is labelled or unreadable)")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / TEACHER_FILE, about | {"faces": len(pairs), "skipped_ids": len(skip_ids),
                                            "input_size": recipe.get("image_size")})
    todo = [p for p in pairs if not (out / f"{p.id}.png").is_file()]
    if len(todo) < len(pairs):
        log(f"{out}: {len(pairs) - len(todo)} soft labels kept from before")
    if todo:
        loader = DataLoader(WrinkleDataset(todo, recipe), batch_size=batch_size, shuffle=False)
        dtype = amp_dtype(dev, "auto")
        for batch in tqdm(loader, desc="soft labels", disable=not progress, file=sys.stderr):
            x, _ = batch_to_device(batch, recipe, dev)
            with autocast(dev, dtype):
                probs = logits_to_probs(model(x)).float().cpu().numpy()
            for face_id, p in zip(batch["id"], probs, strict=True):
                grey = np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)
                with atomic_path(out / f"{face_id}.png") as tmp:  # tmp ends in .png
                    if not cv2.imwrite(str(tmp), grey):
                        raise UserError(f"{out / f'{face_id}.png'}: could not be written")
    log(f"soft labels of {len(pairs)} faces in {out}/ (teacher: "
        f"{', '.join(about['teachers'])}; tta {tta})")
    return about | {"faces": len(pairs)}
