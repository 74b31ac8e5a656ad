"""K-fold cross-validation over the labelled faces: the protocol every recipe is judged by.

Each face is predicted by the one fold model that never saw it (out of fold, OOF), and the figures
are pooled over all faces. Fold models train for a fixed number of epochs and are scored at their
last epoch, so nothing about a fold model is chosen on its held-out faces. Every fold also records
its held-out metrics per epoch (history.csv), which is how the epoch count of a final model trained
on every face is chosen out of fold.

A cross-validation folder holds:

    folds.json                 K, seed, the ids of each fold (fixed once written)
    fold<k>/                   one training run folder (last.pth, history.csv, summary.json, ...)
    fold<k>/oof.npz            the held-out faces: ids, probabilities (float16), true masks
    fold<k>/oof.counts.json    the same faces as counts: per face and candidate threshold, the
                               predicted and the correctly predicted pixels, and the true pixels
    report.json                the out-of-fold figures (`summarize`)

The counts are a few kilobytes per fold where the probabilities are megabytes: they are what
bench/results/cv keeps in git (with the JSON and CSV files of each folder), so the figures of a
recipe compared in docs/results/recipes.md can be recomputed by bench/paired.py and bench/cv_table.py without
its training runs.

Everything is resumable: a finished fold is skipped, a killed one resumes from its last.pth.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import random
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from utils.checkpoints import load_checkpoint, model_from_checkpoint
from utils.data.dataset import WrinkleDataset
from utils.data.pairs import find_pairs, min_image_side, resolve_pairs
from utils.data.splits import write_ids
from utils.errors import UserError
from utils.evaluation.metrics import SegmentationMetrics
from utils.evaluation.validation import validate
from utils.io import write_json
from utils.runtime import amp_dtype, resolve_device
from utils.training.loop import train

# Candidate thresholds; the fine steps near 1 are for recipes that shift calibration upwards
# (a recall-weighted loss predicts high probabilities widely).
THRESHOLDS = (*(round(float(t), 2) for t in np.arange(0.05, 0.951, 0.05)), 0.97, 0.98, 0.99)


def make_folds(ids: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """Split ids into k folds of near-equal size: a seeded shuffle dealt round-robin."""
    ids = sorted(set(ids))
    if k < 2:
        raise UserError(f"--folds must be at least 2, got {k}")
    if len(ids) < k:
        raise UserError(f"{len(ids)} labelled faces cannot make {k} folds")
    order = random.Random(seed).sample(ids, len(ids))
    return [sorted(order[i::k]) for i in range(k)]


def labelled_ids(cfg: dict[str, Any], log: Callable[[str], None] = print) -> list[str]:
    """Ids of every usable image/mask pair the config's data section names."""
    d = cfg["data"]
    if d["mask_dir"] is None:
        raise UserError("data.mask_dir is not set: cross-validation needs manual masks")
    report = find_pairs(d["image_dir"], d["mask_dir"], d["face_labels_dir"], progress=False,
                        min_side=min_image_side(d["image_size"]))
    pairs = resolve_pairs(report, d["strict"], f"{d['image_dir']} + {d['mask_dir']}", log)
    return sorted(p.id for p in pairs)


def load_or_make_folds(folder: Path, ids: Sequence[str], k: int, seed: int,
                       limit: int | None = None) -> list[list[str]]:
    """The folds of a cross-validation folder: read when present (they must match), else made.

    `limit` keeps a seeded subset of the ids first (quick runs and tests).
    """
    ids = sorted(set(ids))
    if limit is not None:
        ids = sorted(random.Random(seed + 1).sample(ids, min(limit, len(ids))))
    path = folder / "folds.json"
    wanted = {"k": k, "seed": seed, "limit": limit}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if {key: stored.get(key) for key in wanted} != wanted:
            raise UserError(f"{path}: made with {({key: stored.get(key) for key in wanted})}, "
                            f"not {wanted}; use another --out folder")
        missing = sorted(set().union(*map(set, stored["folds"])) - set(ids))
        if missing:
            raise UserError(f"{path}: {len(missing)} ids of the stored folds have no image/mask "
                            f"pair now (first: {missing[0]})")
        return [list(f) for f in stored["folds"]]
    folds = make_folds(ids, k, seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(path, wanted | {"folds": folds})
    return folds


def fold_config(cfg: dict[str, Any], folder: Path, k: int, folds: list[list[str]]
                ) -> dict[str, Any]:
    """The training config of fold k: its faces are the validation split, nothing stops early."""
    cfg = copy.deepcopy(cfg)
    ids_file = folder / f"fold{k}_ids.txt"
    write_ids(ids_file, folds[k])
    cfg["data"].update(val_ids=str(ids_file), test_ids=None, test_fraction=0.0)
    cfg["train"].update(run_name=f"fold{k}", out_dir=str(folder), early_stopping=0)
    return cfg


def _exclude_file(folder: Path, cfg: dict[str, Any], keep: set[str]) -> str | None:
    """An exclude-id file for faces that are labelled but outside the folds (a --limit run)."""
    extra = sorted(set(labelled_ids(cfg, log=lambda s: None)) - keep)
    if not extra:
        return cfg["data"]["exclude_ids"]
    path = folder / "outside_folds_ids.txt"
    write_ids(path, extra)
    return str(path)


def check_teachers(teachers: str | Path, folds: list[list[str]]) -> None:
    """Refuse teachers whose folds differ from ours: one of them would have trained on faces
    its student's fold holds out."""
    path = Path(teachers) / "folds.json"
    if not path.is_file():
        raise UserError(f"{teachers}: not a cross-validation folder (no folds.json)")
    theirs = json.loads(path.read_text(encoding="utf-8"))["folds"]
    if [sorted(f) for f in theirs] != [sorted(f) for f in folds]:
        raise UserError(f"{teachers}: its folds differ from these (a teacher would have seen "
                        "faces its student's fold holds out); use the teachers' --folds, "
                        "--fold-seed and --limit")


def run_fold(cfg: dict[str, Any], folder: str | Path, k: int, folds: list[list[str]],
             progress: bool = True, log: Callable[[str], None] = print,
             teachers: str | Path | Sequence[str | Path] | None = None) -> dict[str, Any]:
    """Train fold k (or resume it, or skip it when done) and write its out-of-fold predictions.

    teachers: one or several finished cross-validation folders with the same folds; their fold-k
    models (averaged) label the unlabelled faces (utils.training.distill) and fold k's model
    trains on them too."""
    folder = Path(folder)
    fcfg = fold_config(cfg, folder, k, folds)
    if teachers is not None:
        from utils.training.distill import write_soft_labels

        folders = [teachers] if isinstance(teachers, (str, Path)) else list(teachers)
        models = []
        for t in folders:
            check_teachers(t, folds)
            model = Path(t) / f"fold{k}" / "last.pth"
            if not (model.parent / "summary.json").is_file() or not model.is_file():
                raise UserError(f"{model}: the teacher of fold {k} is missing or unfinished "
                                "(finish that fold of the teachers' cross-validation first; "
                                "a fold reused from bench/results/cv has no model)")
            models.append(model)
        pseudo = folder / f"pseudo{k}"
        write_soft_labels(models, cfg["data"]["image_dir"],
                          pseudo, skip_ids=set(labelled_ids(cfg, log=lambda s: None)),
                          device=cfg["train"]["device"], progress=progress, log=log)
        fcfg["data"]["pseudo_dir"] = str(pseudo)
    if cfg["data"]["exclude_ids"]:
        raise UserError("data.exclude_ids cannot be combined with cross-validation: the folds "
                        "are made from every labelled face")
    # Faces outside the folds (a --limit run) never train.
    fcfg["data"]["exclude_ids"] = _exclude_file(folder, cfg, set().union(*map(set, folds)))
    run = folder / f"fold{k}"
    oof = run / "oof.npz"
    if fold_done(folder, k):
        log(f"fold {k}: done before, kept ({oof if oof.exists() else counts_path(oof)})")
        return json.loads((run / "summary.json").read_text(encoding="utf-8"))
    last = run / "last.pth"
    summary_path = run / "summary.json"
    if last.exists() and not summary_path.exists():
        log(f"fold {k}: resuming {last}")
        summary = train(fcfg, resume=last, progress=progress, log=log)
    elif summary_path.exists():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    else:
        summary = train(fcfg, progress=progress, log=log)
    predict_held_out(last, fcfg, folds[k], oof, progress=progress)
    log(f"fold {k}: held-out predictions in {oof}")
    return summary


@torch.no_grad()
def predict_held_out(checkpoint: Path, cfg: dict[str, Any], ids: list[str], out: Path,
                     progress: bool = False, tta: str | None = None) -> None:
    """Probabilities of a fold model on its held-out faces, with their masks, as one .npz file
    (tta: a test-time augmentation instead of the checkpoint's own, utils.checkpoints.with_tta)."""
    ckpt = load_checkpoint(checkpoint)
    if tta is not None:
        ckpt["model"] = dict(ckpt["model"], tta=tta)
    device = resolve_device(cfg["train"]["device"])
    model = model_from_checkpoint(ckpt, str(checkpoint)).to(device)
    model.to(memory_format=torch.channels_last)
    d = cfg["data"]
    report = find_pairs(d["image_dir"], d["mask_dir"], d["face_labels_dir"], progress=False,
                        min_side=min_image_side(d["image_size"]))
    by_id = {p.id: p for p in report.pairs}
    ds = WrinkleDataset([by_id[i] for i in ids], ckpt["preprocess"])
    loader = DataLoader(ds, batch_size=cfg["eval"]["batch_size"], shuffle=False)
    got: dict[str, list] = {"ids": [], "probs": [], "masks": []}

    def keep(batch: dict[str, Any], probs: torch.Tensor, masks: torch.Tensor) -> None:
        got["ids"].extend(batch["id"])
        got["probs"].append(probs.float().cpu().numpy().astype(np.float16))
        got["masks"].append(masks.cpu().numpy() > 0.5)

    validate(model, loader, device, amp_dtype(device, cfg["train"]["amp"]), None,
             ckpt.get("threshold", 0.5), cfg["eval"]["auc_bins"], True, progress,
             desc="held-out faces", on_batch=keep)
    probs, masks = np.concatenate(got["probs"]), np.concatenate(got["masks"])
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez_compressed(tmp, ids=np.array(got["ids"]), probs=probs, masks=masks)
    write_counts(counts_path(out), got["ids"], probs, masks)
    tmp.replace(out)


def counts_path(npz: Path) -> Path:
    """The counts file beside held-out predictions (fold<k>/oof.npz -> fold<k>/oof.counts.json)."""
    return npz.with_name(npz.stem + ".counts.json")


def face_counts(probs: np.ndarray, masks: np.ndarray, threshold: float) -> np.ndarray:
    """Per face: correctly predicted pixels, predicted pixels, true pixels (an n x 3 array)."""
    pred = probs.astype(np.float32) > threshold
    axes = tuple(range(1, pred.ndim))
    return np.stack([(pred & masks).sum(axes), pred.sum(axes), masks.sum(axes)], 1).astype(float)


def write_counts(path: Path, ids: Sequence[str], probs: np.ndarray, masks: np.ndarray,
                 thresholds: Sequence[float] = THRESHOLDS) -> None:
    """Held-out predictions as per-face counts at every candidate threshold (see the module
    docstring): enough for pooled and per-fold F1, precision, recall and paired differences."""
    per = [face_counts(probs, masks, t) for t in thresholds]
    write_json(path, {"ids": [str(i) for i in ids], "thresholds": list(thresholds),
                      "true": per[0][:, 2].astype(int).tolist(),
                      "hit": np.stack([c[:, 0] for c in per], 1).astype(int).tolist(),
                      "predicted": np.stack([c[:, 1] for c in per], 1).astype(int).tolist()})


def ensure_counts(folder: str | Path) -> list[Path]:
    """Write the counts file of every held-out prediction file in a cross-validation folder
    that lacks one (predictions made before counts were kept); return the files written."""
    written = []
    for npz in sorted(Path(folder).glob("fold*/*.npz")):
        path = counts_path(npz)
        if npz.name.endswith(".tmp.npz") or path.is_file():
            continue
        with np.load(npz) as z:
            write_counts(path, [str(i) for i in z["ids"]], z["probs"], z["masks"])
        written.append(path)
    return written


def has_oof(folder: str | Path, k: int, name: str = "oof") -> bool:
    """Whether fold k holds held-out predictions, as probabilities or as counts."""
    run = Path(folder) / f"fold{k}"
    return (run / f"{name}.npz").is_file() or counts_path(run / f"{name}.npz").is_file()


def fold_done(folder: str | Path, k: int) -> bool:
    """Whether fold k is finished: trained (or kept) and its held-out faces predicted."""
    return has_oof(folder, k) and (Path(folder) / f"fold{k}" / "summary.json").is_file()


def read_counts(folder: str | Path, k: int, threshold: float, name: str = "oof"
                ) -> tuple[list[str], np.ndarray]:
    """Fold k's face ids and their counts at `threshold` (`face_counts`): from the
    probabilities where the fold still has them (any threshold), else from its counts file (one
    of its candidate thresholds)."""
    npz = Path(folder) / f"fold{k}" / f"{name}.npz"
    if npz.is_file():
        part = read_oof(folder, k, name)
        return [str(i) for i in part["ids"]], face_counts(part["probs"], part["masks"], threshold)
    path = counts_path(npz)
    if not path.is_file():
        raise UserError(f"{npz}: fold {k} has no held-out predictions yet; run its training first")
    c = json.loads(path.read_text(encoding="utf-8"))
    hit = [i for i, t in enumerate(c["thresholds"]) if abs(t - threshold) < 1e-9]
    if not hit:
        raise UserError(f"{path}: threshold {threshold} is not one of its candidates "
                        f"({', '.join(map(str, c['thresholds']))}) and the probabilities are "
                        "not kept; use one of those")
    j = hit[0]
    counts = np.array([[h[j], p[j], t] for h, p, t in
                       zip(c["hit"], c["predicted"], c["true"], strict=True)], dtype=float)
    return list(c["ids"]), counts


def f1_of(counts: np.ndarray) -> float:
    """Pooled F1 of per-face counts (`face_counts`)."""
    denom = counts[:, 1].sum() + counts[:, 2].sum()
    return float(2 * counts[:, 0].sum() / denom) if denom else float("nan")


def next_batch(pending: list[int], running: int, jobs: int, cores: int,
               threads: int | None = None) -> tuple[list[int], int]:
    """Folds to start now in child processes, and the torch threads each gets.

    Up to `jobs` folds run at once with cores/jobs threads. The last folds, too few to fill
    every slot, wait until nothing runs and then share every core (five folds on two cores:
    two pairs with one thread each, then the fifth with two). `threads` overrides the count.
    """
    free = jobs - running
    tail = len(pending) < jobs
    if not pending or free <= 0 or (tail and running):
        return [], 0
    batch = pending[:free]
    n = max(1, cores // len(batch)) if tail else max(1, cores // jobs)
    return batch, threads or n


def read_oof(folder: str | Path, k: int, name: str = "oof") -> dict[str, np.ndarray]:
    """One fold's held-out predictions (ids, float16 probabilities, bool masks); `name` picks a
    variant written beside them (oof_flip: with test-time flips, bench/bench_averaging.py)."""
    path = Path(folder) / f"fold{k}" / f"{name}.npz"
    if not path.exists():
        raise UserError(f"{path}: fold {k} has no held-out predictions yet; run its training first")
    with np.load(path) as z:
        return {key: z[key] for key in ("ids", "probs", "masks")}


def _metrics(parts: list[dict[str, np.ndarray]], threshold: float, bins: int) -> dict[str, Any]:
    m = SegmentationMetrics(threshold=threshold, bins=bins)
    for part in parts:
        for i in range(0, len(part["ids"]), 16):
            m.update(torch.from_numpy(part["probs"][i:i + 16].astype(np.float32)),
                     torch.from_numpy(part["masks"][i:i + 16]), list(part["ids"][i:i + 16]))
    return m.compute()


def pooled_f1(parts: list[dict[str, np.ndarray]], thresholds: Sequence[float]) -> list[float]:
    """Pooled F1 over every face of `parts` at each threshold (fast: counts only)."""
    return [f1_of(np.concatenate([face_counts(p["probs"], p["masks"], t) for p in parts]))
            for t in thresholds]


def _count_metrics(c: np.ndarray) -> dict[str, float]:
    tp, pred, true = c[:, 0].sum(), c[:, 1].sum(), c[:, 2].sum()
    defined = (c[:, 1] + c[:, 2]) > 0  # faces with neither have no F1 (as SegmentationMetrics)
    per_face = 2 * c[defined, 0] / (c[defined, 1] + c[defined, 2])

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b else float("nan")

    return {"f1": f1_of(c), "jaccard": ratio(tp, pred + true - tp), "precision": ratio(tp, pred),
            "recall": ratio(tp, true),
            "macro_f1": float(per_face.mean()) if per_face.size else float("nan")}


def _metrics_from_counts(folder: Path, k: int, threshold: float, thresholds: Sequence[float]
                         ) -> tuple[dict[str, float], list[dict[str, float]], list[float]]:
    """Pooled and per-fold figures, and the pooled F1 at each candidate, from per-face counts."""
    at = [read_counts(folder, i, threshold)[1] for i in range(k)]
    f1s = [f1_of(np.concatenate([read_counts(folder, i, t)[1] for i in range(k)]))
           for t in thresholds]
    return _count_metrics(np.concatenate(at)), [_count_metrics(c) for c in at], f1s


def reuse_kept(out: str | Path, kept: str | Path, recipe: dict[str, Any],
               folds: list[list[str]], log: Callable[[str], None] = print) -> list[int]:
    """Count the folds finished in `kept` (a bench/results/cv copy of the same recipe on the same
    folds, bench/keep_cv.sh) as done in `out`: their summaries, histories and counts are copied
    there, so a queue that lost its training runs with its machine goes on where it was. Folds
    `out` holds already are left as they are. Returns the folds reused."""
    import shutil

    out, kept = Path(out), Path(kept)
    if not (kept / "folds.json").is_file():
        return []
    theirs = json.loads((kept / "folds.json").read_text(encoding="utf-8"))["folds"]
    if [sorted(f) for f in theirs] != [sorted(f) for f in folds]:
        raise UserError(f"{kept / 'folds.json'}: other folds than {out / 'folds.json'}; "
                        "reuse needs the same --fold-seed, --folds and --limit")
    their_recipe = kept / "recipe.json"
    if not their_recipe.is_file() or json.loads(their_recipe.read_text("utf-8")) != recipe:
        raise UserError(f"{their_recipe}: another recipe than this run's ({json.dumps(recipe)}); "
                        "reuse only the kept folds of the same recipe")
    reused = []
    for i in range(len(folds)):
        src, dst = kept / f"fold{i}", out / f"fold{i}"
        if not (src / "summary.json").is_file() or not has_oof(kept, i):
            continue
        if (dst / "summary.json").is_file() or (dst / "last.pth").is_file():
            continue  # trained (or training) here
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.suffix in (".json", ".csv"):
                shutil.copy2(f, dst / f.name)
        reused.append(i)
        log(f"fold {i}: reused from {kept} (counts only, no model)")
    return reused


def _mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sd over folds; a fold whose figure is undefined (NaN: no wrinkle pixel marked or
    drawn, as in a tiny dry run) is left out rather than poisoning both."""
    defined = [v for v in values if not math.isnan(v)]
    if not defined:
        return math.nan, math.nan
    return statistics.fmean(defined), (statistics.stdev(defined) if len(defined) > 1 else 0.0)


def _histories(folder: Path, k: int) -> list[list[dict[str, float]]]:
    out = []
    for i in range(k):
        path = folder / f"fold{i}" / "history.csv"
        with path.open(encoding="utf-8") as f:
            out.append([{key: float(v) for key, v in row.items() if v not in ("", None)}
                        for row in csv.DictReader(f)])
    return out


def summarize(folder: str | Path, threshold: float = 0.5, bins: int = 200,
              thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """The out-of-fold report of a finished cross-validation folder (also written as report.json).

    pooled: every face's held-out prediction, pooled (F1, Jaccard, precision, recall, F1 with a
    1 px tolerance, AUROC, AP); folds: each fold's pooled figures, and their mean and standard
    deviation (the fold spread); threshold: the pooled F1 at each candidate threshold and the best
    one; epochs: the mean held-out F1 of the folds at each epoch, and the best epoch count.
    """
    folder = Path(folder)
    stored = json.loads((folder / "folds.json").read_text(encoding="utf-8"))
    k = stored["k"]
    missing = [i for i in range(k) if not has_oof(folder, i)]
    if missing:
        raise UserError(f"{folder / f'fold{missing[0]}'}: fold {missing[0]} has no held-out "
                        "predictions yet; run its training first")
    if all((folder / f"fold{i}" / "oof.npz").is_file() for i in range(k)):
        parts = [read_oof(folder, i) for i in range(k)]
        pooled = _metrics(parts, threshold, bins)
        per_fold = [_metrics([p], threshold, bins) for p in parts]
        keys: tuple[str, ...] = ("f1", "jaccard", "precision", "recall", "f1_tol1", "macro_f1",
                                 "auroc", "average_precision")
        f1s = pooled_f1(parts, thresholds)
    else:  # some folds kept as counts only (reused from bench/results/cv): no AUROC, AP, 1 px
        pooled, per_fold, f1s = _metrics_from_counts(folder, k, threshold, thresholds)
        keys = ("f1", "jaccard", "precision", "recall", "macro_f1")
    folds = {key: [f[key] for f in per_fold] for key in keys}
    spread = {key: dict(zip(("mean", "sd"), _mean_sd(v), strict=True)) for key, v in folds.items()}
    best = max(range(len(thresholds)), key=lambda i: (f1s[i], -abs(thresholds[i] - threshold)))
    hist = _histories(folder, k)
    n_epochs = min(len(h) for h in hist)
    curve = [statistics.fmean(h[e]["f1"] for h in hist) for e in range(n_epochs)]
    seconds = sum(sum(r.get("seconds", 0.0) for r in h) for h in hist)
    report = {
        "faces": sum(len(f) for f in stored["folds"]), "k": k, "seed": stored["seed"],
        "threshold": threshold, "pooled": pooled, "folds": folds, "fold_spread": spread,
        "thresholds": {"candidates": list(thresholds), "pooled_f1": f1s,
                       "best": thresholds[best], "best_f1": f1s[best]},
        "epochs": {"mean_held_out_f1": curve,
                   "best": int(np.argmax(curve)) + 1 if curve else None},
        "training_fold_minutes": seconds / 60,
    }
    write_json(folder / "report.json", report)
    return report


def held_out_overlay(folder: str | Path, face_id: str, image: np.ndarray, threshold: float
                     ) -> np.ndarray:
    """The photo beside its out-of-fold prediction against the annotator's mask (truth green,
    prediction red, both yellow): a picture of what the recipe does on a face it never saw."""
    import cv2

    from utils.visualize import overlay

    folder = Path(folder)
    k = json.loads((folder / "folds.json").read_text(encoding="utf-8"))["k"]
    for i in range(k):
        part = read_oof(folder, i)
        hit = np.flatnonzero(part["ids"] == face_id)
        if hit.size:
            probs, truth = part["probs"][hit[0]].astype(np.float32), part["masks"][hit[0]]
            break
    else:
        raise UserError(f"{face_id}: not a face of the folds in {folder / 'folds.json'}")
    h, w = probs.shape
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return np.concatenate([image, overlay(image, probs > threshold, truth)], axis=1)


def format_report(report: dict[str, Any], name: str = "") -> str:
    """A few plain lines for the terminal."""
    p, s, t = report["pooled"], report["fold_spread"], report["thresholds"]
    lines = [
        f"{name + ': ' if name else ''}{report['faces']} faces, {report['k']} folds, "
        f"threshold {report['threshold']}",
        f"  out-of-fold pooled F1 {p['f1']:.4f}  (folds {s['f1']['mean']:.4f} +- "
        f"{s['f1']['sd']:.4f})  Jaccard {p['jaccard']:.4f}  precision {p['precision']:.4f}  "
        f"recall {p['recall']:.4f}",
        (f"  F1 with 1 px tolerance {p['f1_tol1']:.4f}  per-image F1 {p['macro_f1']:.4f}  "
         f"AUROC {p['auroc']:.4f}  AP {p['average_precision']:.4f}") if "auroc" in p else
        (f"  per-image F1 {p['macro_f1']:.4f} (no AUROC, AP or 1 px tolerance: some folds are "
         "kept as counts only)"),
        f"  best threshold out of fold {t['best']} (pooled F1 {t['best_f1']:.4f})",
    ]
    e = report["epochs"]
    if e["best"] is not None:
        curve = e["mean_held_out_f1"]
        lines.append(f"  held-out F1 by epoch: best at epoch {e['best']} of {len(curve)} "
                     f"({curve[e['best'] - 1]:.4f}; last {curve[-1]:.4f})")
    lines.append(f"  training: {report['training_fold_minutes']:.1f} fold-minutes (sum of the folds' "
                 "training times; less wall time with --jobs)")
    return "\n".join(lines)

