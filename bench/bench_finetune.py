#!/usr/bin/env python
"""Does fine-tuning on a few dozen faces move the model toward a new labelling style?

An annotator who never marks the forehead is stood for by a rule: the manual masks of
../shared with every forehead line removed (the forehead placed by each face's landmarks). 40
faces labelled by that rule are saved in annotate.py's layout (1024 px faces and masks, ids
l00001...), the bundled model is fine-tuned on them with configs/finetune_small.yaml (the real
train.py command), and both models are scored on 20 other faces labelled by the same rule:
pooled F1 against the rule's labels, and the share of the predicted wrinkle pixels that lie on
the forehead. (The bundled model trained on every labelled face, these 60 too: the figures say
how far the fine-tune moves it, not how good either is on unseen faces.)

    python bench/bench_finetune.py --out runs/bench_finetune.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from bench.common import DATA, REPO, labelled_ids, run_cli, save
from utils.data.images import load_image
from utils.data.masks import read_mask, resize_mask
from utils.faces.detection import detect_faces
from utils.faces.regions import region_masks
from utils.inference.predictor import WrinklePredictor
from utils.runtime import machine_facts


def rule_label(i: str, data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face (256), its manual mask without forehead lines (1024) and its forehead (256)."""
    rgb = load_image(data / "images256x256" / f"{i}.jpg")
    mask = read_mask(data / "manual_wrinkle_masks" / f"{i}.png")
    lm = detect_faces(rgb)[0].landmarks
    fore1024 = region_masks((lm + 0.5) * 4 - 0.5, mask.shape)["forehead"]
    return rgb, mask & ~fore1024, region_masks(lm, rgb.shape[:2])["forehead"]


def score(predictor: WrinklePredictor, faces: list[tuple]) -> dict[str, float]:
    tp = fp = fn = 0
    on_forehead = total = 0
    for rgb, rule, fore in faces:
        pred = predictor.predict_aligned(rgb).mask
        truth = resize_mask(rule, pred.shape)
        tp += int((pred & truth).sum())
        fp += int((pred & ~truth).sum())
        fn += int((~pred & truth).sum())
        on_forehead += int((pred & fore).sum())
        total += int(pred.sum())
    return {"pooled_f1_vs_rule": 2 * tp / max(1, 2 * tp + fp + fn),
            "forehead_share_of_predicted": on_forehead / max(1, total),
            "predicted_px_per_face": total / len(faces)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help=f"data folder (default {DATA})")
    p.add_argument("--train-faces", type=int, default=40)
    p.add_argument("--eval-faces", type=int, default=20)
    p.add_argument("--base", default=str(REPO / "res/cp/default_ffhq256.pth"),
                   help="the model to fine-tune (default: the bundled one)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    ids = labelled_ids(args.data)
    rng = np.random.default_rng(0)
    ids = [ids[k] for k in rng.permutation(len(ids))]
    train_ids = ids[:args.train_faces]
    eval_ids = ids[args.train_faces:args.train_faces + args.eval_faces]
    with tempfile.TemporaryDirectory() as tmp_dir:
        labels = Path(tmp_dir) / "labels"
        (labels / "face_images").mkdir(parents=True)
        (labels / "manual_wrinkle_masks").mkdir()
        for n, i in enumerate(train_ids, 1):  # as annotate.py saves them: 1024 px, l-ids
            rgb, rule, _ = rule_label(i, args.data)
            big = cv2.resize(rgb, (1024, 1024), interpolation=cv2.INTER_LANCZOS4)
            cv2.imwrite(str(labels / "face_images" / f"l{n:05d}.png"),
                        cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(labels / "manual_wrinkle_masks" / f"l{n:05d}.png"),
                        rule.astype(np.uint8) * 255)
        held = [rule_label(i, args.data) for i in eval_ids]
        before = score(WrinklePredictor(args.base), held)
        print(f"before: {before}", flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, str(REPO / "train.py"), "--config",
               str(REPO / "configs/finetune_small.yaml"), "--init", args.base,
               "--image-dir", str(labels / "face_images"),
               "--mask-dir", str(labels / "manual_wrinkle_masks"),
               "--out-dir", str(Path(tmp_dir) / "runs"), "--no-progress"]
        subprocess.run(cmd, check=True, cwd=REPO)
        minutes = (time.perf_counter() - t0) / 60
        tuned = Path(tmp_dir) / "runs" / "finetune_small" / "last.pth"
        after = score(WrinklePredictor(tuned), held)
        print(f"after ({minutes:.1f} min of fine-tuning): {after}", flush=True)
    result = {"machine": machine_facts(), "train_faces": len(train_ids),
              "eval_faces": len(eval_ids), "base": args.base, "minutes": minutes,
              "before": before, "after": after}
    save(result, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
