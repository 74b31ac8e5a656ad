#!/usr/bin/env python
"""Averaged predictions, out of fold and on the clock: test-time flips and model ensembles.

Out of fold (--cv): every fold model of a finished cross-validation folder predicts the faces it
held out as trained (fold<k>/oof.npz, from cross_validate.py) and averaged with each face's
left-right flip (fold<k>/oof_flip.npz, written here once). With two or more folders, each face
is also predicted by the average of the models that held it out, one per folder: an ensemble
judged on faces none of its members saw. Folders of one recipe made with different --fold-seed
values stand for the K-fold ensemble (members trained on 80 % of the faces; the one served would
hold K such models); folders of different recipes on the same folds (a model and its self-trained
student, two training seeds) are a servable two-model ensemble, judged fold by fold on the folds
all of them have finished. Figures are pooled as cross_validate.py pools them: F1 at each
candidate threshold, each fold's F1 at --threshold, and paired differences with their spread
(against the single models' mean and against the first folder, the reference).

On the clock (--time): a whole app request on a real 256 px face (face finding, landmarks,
alignment, face region, model, paste-back, overlay, heatmap, table) and the model alone on the
aligned face (its probabilities, nothing else), on the default backend, for one model, one model
with flips, an ensemble of --members models (one checkpoint's weights, each copy nudged by noise:
the time does not depend on the weights, and identical members could be merged by a compiler)
and that ensemble with flips. Run it on a quiet machine.

    python bench/bench_averaging.py --cv runs/cv/v3_e40 --out runs/bench_averaging.json
    python bench/bench_averaging.py --cv runs/cv/v3 runs/cv/v3_seed1 --out runs/bench_ens.json
    python bench/bench_averaging.py --time --out runs/bench_averaging_time.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import DATA, REPO
from utils.config import load_config
from utils.errors import UserError, run_cli
from utils.io import write_json
from utils.runtime import machine_facts
from utils.training.crossval import THRESHOLDS, pooled_f1, predict_held_out, read_oof


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cv", type=Path, nargs="+", default=[],
                   help="cross-validation folders (several: an ensemble, one member per "
                        "folder; one recipe on other fold seeds, or other recipes on the "
                        "same folds, the first being the reference)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="threshold of the per-fold figures (default 0.5, as cross_validate.py)")
    p.add_argument("--time", action="store_true", help="time app requests and the model alone")
    p.add_argument("--checkpoint", type=Path,
                   help="the model to time (default: the bundled one)")
    p.add_argument("--members", type=int, default=5,
                   help="ensemble size to time (default 5; 1: one model only, with and "
                        "without flips)")
    p.add_argument("--like", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="time a recipe's shape before training it: the checkpoint with this "
                        "model or preprocess key changed (repeatable; e.g. "
                        "model.base_channels=48, preprocess.image_size=512) and fresh weights "
                        "(the time does not depend on the weights)")
    p.add_argument("--repeats", type=int, default=15, help="timed requests per setting (median)")
    p.add_argument("--out", type=Path, help="JSON file for the figures")
    args = p.parse_args(argv)
    if not args.cv and not args.time:
        p.error("give --cv FOLDER(S), --time, or both")
    if not 0 < args.threshold < 1:
        p.error("--threshold must be between 0 and 1")
    if args.members < 1:
        p.error("--members must be at least 1")
    for item in args.like:
        key, _, value = item.partition("=")
        if key.split(".")[0] not in ("model", "preprocess") or "." not in key or not value:
            p.error(f"--like {item}: give model.KEY=VALUE or preprocess.KEY=VALUE")
    return args


def _folds(folder: Path) -> list[list[str]]:
    path = folder / "folds.json"
    if not path.is_file():
        raise UserError(f"{folder}: not a cross-validation folder (no folds.json)")
    return json.loads(path.read_text(encoding="utf-8"))["folds"]


def flip_predictions(folder: Path, log=print) -> list[int]:
    """Write fold<k>/oof_flip.npz for every finished fold that lacks it; return those folds (a
    folder run with --fold may hold only some)."""
    done = []
    for k, ids in enumerate(_folds(folder)):
        run = folder / f"fold{k}"
        if not (run / "last.pth").exists() or not (run / "oof.npz").exists():
            continue
        done.append(k)
        out = run / "oof_flip.npz"
        if not out.exists():
            predict_held_out(run / "last.pth", load_config(run / "config.yaml"), list(ids), out,
                             tta="flip")
            log(f"fold {k}: flip-averaged held-out predictions in {out}")
    if not done:
        raise UserError(f"{folder}: no finished fold (fold<k>/last.pth and oof.npz)")
    return done


def _figures(parts: list[dict[str, np.ndarray]], threshold: float) -> dict:
    f1s = pooled_f1(parts, THRESHOLDS)
    best = int(np.argmax(f1s))
    return {"pooled_f1": dict(zip(map(str, THRESHOLDS), f1s, strict=True)),
            "at_threshold": pooled_f1(parts, [threshold])[0],
            "best_threshold": THRESHOLDS[best], "best_f1": f1s[best],
            "fold_f1": [pooled_f1([p], [threshold])[0] for p in parts]}


def _paired(a: list[float], b: list[float]) -> dict:
    diff = [y - x for x, y in zip(a, b, strict=True)]
    return {"mean": statistics.fmean(diff), "sd": statistics.stdev(diff) if len(diff) > 1
            else 0.0, "per_fold": diff}


def flip_report(folder: Path, threshold: float) -> dict:
    """Plain against flip-averaged held-out predictions of one cross-validation folder."""
    done = flip_predictions(folder)
    out: dict = {"folds": done}
    out |= {name: _figures([read_oof(folder, i, name) for i in done], threshold)
            for name in ("oof", "oof_flip")}
    out["flip_minus_plain"] = _paired(out["oof"]["fold_f1"], out["oof_flip"]["fold_f1"])
    return out


def _by_face(folder: Path, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every held-out face of the folds that have `name` predictions, by id."""
    faces = {}
    for i in range(len(_folds(folder))):
        if not (folder / f"fold{i}" / f"{name}.npz").exists():
            continue
        part = read_oof(folder, i, name)
        for j, face in enumerate(part["ids"]):
            faces[str(face)] = (part["probs"][j], part["masks"][j])
    return faces


def _recipe(folder: Path) -> dict:
    path = folder / "recipe.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def ensemble_report(folders: list[Path], threshold: float, name: str = "oof") -> dict:
    """Each face averaged over the models (one per folder) that held it out, against each
    folder's single models, grouped by the first folder's folds for the per-fold figures; only
    faces every folder has predicted count."""
    all_ids = [{str(i) for fold in _folds(f) for i in fold} for f in folders]
    if any(ids != all_ids[0] for ids in all_ids[1:]):
        raise UserError("the folders hold out different faces: give folders of one data set")
    seeds = [json.loads((f / "folds.json").read_text(encoding="utf-8"))["seed"] for f in folders]
    recipes = [json.dumps(_recipe(f), sort_keys=True) for f in folders]
    for j, i in itertools.combinations(range(len(folders)), 2):
        if seeds[i] == seeds[j] and recipes[i] == recipes[j]:
            raise UserError(f"{folders[j]} and {folders[i]}: one recipe on one fold seed; an "
                            "ensemble needs each member on its own --fold-seed, or another "
                            "recipe (a student, another train.seed) on the same folds")
    faces = [_by_face(f, name) for f in folders]
    common = set.intersection(*(set(f) for f in faces))
    groups = [[i for i in g if i in common] for g in _folds(folders[0])]
    groups = [g for g in groups if g]
    if not groups:
        raise UserError(f"no face has {name} predictions from every folder: finish the same "
                        "folds in each first")

    def parts(pick) -> list[dict[str, np.ndarray]]:
        return [{"ids": np.array(g), "probs": np.stack([pick(i) for i in g]),
                 "masks": np.stack([faces[0][i][1] for i in g])} for g in groups]

    singles = [_figures(parts(lambda i, f=f: f[i][0]), threshold) for f in faces]
    mean = parts(lambda i: np.mean([f[i][0].astype(np.float32) for f in faces], axis=0))
    ens = _figures(mean, threshold)
    single_mean = [statistics.fmean(vals) for vals in zip(*(s["fold_f1"] for s in singles),
                                                          strict=True)]
    return {"folders": [str(f) for f in folders], "fold_seeds": seeds, "predictions": name,
            "faces": len(common), "groups": len(groups), "single": singles, "ensemble": ens,
            "ensemble_minus_single_mean": _paired(single_mean, ens["fold_f1"]),
            "ensemble_minus_first": _paired(singles[0]["fold_f1"], ens["fold_f1"])}


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up: compilation, caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timing(checkpoint: Path, members: int, repeats: int) -> dict:
    """Seconds per app request and of the model alone for one model, flips, an ensemble, both."""
    import torch

    from utils.checkpoints import load_checkpoint, save_checkpoint
    from utils.data.images import load_image
    from utils.inference.export import export_checkpoint

    image = load_image(sorted((DATA / "images256x256").glob("*.jpg"))[0]) \
        if (DATA / "images256x256").is_dir() else load_image(REPO / "examples" / "00541.jpg")
    out = {}
    base = load_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        settings = [("one model", checkpoint, "none"), ("one model, flips", checkpoint, "flip")]
        if members > 1:
            copies = []
            for i in range(members):  # distinct weights: a compiler may merge identical members
                copies.append(Path(tmp) / f"member{i}.pth")
                gen = torch.Generator().manual_seed(i)
                save_checkpoint(copies[-1], base | {"state_dict": {
                    k: v + 1e-4 * torch.randn(v.shape, generator=gen) if v.is_floating_point()
                    else v for k, v in base["state_dict"].items()}})
            ensemble = Path(tmp) / "ensemble.pth"
            export_checkpoint([str(c) for c in copies], ensemble)
            settings += [(f"{members} models", ensemble, "none"),
                         (f"{members} models, flips", ensemble, "flip")]
        for label, path, tta in settings:
            out[label] = time_model(path, tta, repeats, image)
            print(f"{label:22s} app request {out[label]['app_request_s']:.3f} s   model alone "
                  f"{out[label]['model_s']:.3f} s ({out[label]['backend']})", flush=True)
    return out


def shaped_like(checkpoint: Path, changes: list[str], dst: Path) -> Path:
    """A copy of `checkpoint` with recipe keys changed and freshly initialised weights."""
    import yaml

    from utils.checkpoints import build_model_from_recipe, load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(checkpoint)
    for item in changes:
        key, _, value = item.partition("=")
        section, name = key.split(".", 1)
        if name not in ckpt[section]:
            raise UserError(f"--like {item}: the {section} recipe has no key '{name}' (it has "
                            f"{', '.join(sorted(ckpt[section]))})")
        ckpt[section] = dict(ckpt[section], **{name: yaml.safe_load(value)})
    try:
        model = build_model_from_recipe(ckpt["model"])
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"--like {' '.join(changes)}: not a model recipe ({exc})") from None
    for k in ("members", "tta"):
        ckpt["model"].pop(k, None)
    save_checkpoint(dst, ckpt | {"state_dict": model.state_dict(), "fp32_reference": None})
    return dst


def time_model(checkpoint: Path, tta: str = "none", repeats: int = 20,
               image: np.ndarray | None = None) -> dict:
    """Median seconds of a whole app request on a real face and of the model alone on the
    aligned face, on the default backend (bench/cv_table.py's ms per face too)."""
    from utils.data.images import load_image, resize_image
    from utils.demo import run_prediction
    from utils.inference.predictor import WrinklePredictor

    if image is None:
        image = load_image(sorted((DATA / "images256x256").glob("*.jpg"))[0]) \
            if (DATA / "images256x256").is_dir() else load_image(REPO / "examples" / "00541.jpg")
    pred = WrinklePredictor(checkpoint, tta=tta)
    size = pred.frame_size  # the model alone sees the aligned face at its own input size
    aligned = resize_image(image, (size, size))
    whole = np.ones((size, size), bool)
    request = _timed(lambda: run_prediction(pred, image, pred.threshold), repeats)
    model = _timed(lambda: pred._probabilities([aligned], [whole]), repeats)
    return {"app_request_s": round(request, 4), "model_s": round(model, 4),
            "backend": pred.backend}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result: dict = {"threshold": args.threshold}
    for folder in args.cv:
        rep = flip_report(folder, args.threshold)
        result.setdefault("flips", {})[str(folder)] = rep
        print(f"{folder}: folds {', '.join(map(str, rep['folds']))}")
        for name in ("oof", "oof_flip"):
            r = rep[name]
            print(f"{folder} {name:9s} pooled F1 {r['at_threshold']:.4f} at {args.threshold}, "
                  f"best {r['best_f1']:.4f} at {r['best_threshold']}; folds "
                  + " ".join(f"{f:.3f}" for f in r["fold_f1"]))
        d = rep["flip_minus_plain"]
        print(f"{folder} flip - plain, per fold: {d['mean']:+.4f} +- {d['sd']:.4f}")
    if len(args.cv) > 1:
        for name in ("oof", "oof_flip"):
            rep = ensemble_report(args.cv, args.threshold, name)
            result.setdefault("ensembles", {})[name] = rep
            e, d = rep["ensemble"], rep["ensemble_minus_single_mean"]
            f = rep["ensemble_minus_first"]
            print(f"ensemble of {len(args.cv)} ({name}, {rep['faces']} faces): pooled F1 "
                  f"{e['at_threshold']:.4f} at {args.threshold}, best {e['best_f1']:.4f} at "
                  f"{e['best_threshold']}; per fold against the single models' mean "
                  f"{d['mean']:+.4f} +- {d['sd']:.4f}, against {args.cv[0]} "
                  f"{f['mean']:+.4f} +- {f['sd']:.4f}")
    if args.time:
        checkpoint = args.checkpoint or REPO / "res" / "cp" / "default_ffhq256.pth"
        if not checkpoint.is_file():
            raise UserError(f"{checkpoint}: checkpoint not found")
        with tempfile.TemporaryDirectory() as tmp:
            if args.like:
                checkpoint = shaped_like(checkpoint, args.like, Path(tmp) / "shaped.pth")
                result["like"] = args.like
            result["timing"] = timing(checkpoint, args.members, args.repeats)
    if args.out:
        write_json(args.out, result | {"machine": machine_facts()})
        print(f"figures: {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
