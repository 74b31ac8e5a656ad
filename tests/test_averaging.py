"""Averaged predictions: test-time flips and ensembles of fold models, as served and as judged
out of fold (bench/bench_averaging.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import IMAGES, needs_data, tiny_config
from utils.data.images import load_image, resize_image
from utils.errors import UserError
from utils.inference.predictor import WrinklePredictor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

pytestmark = needs_data


def _probs(pred: WrinklePredictor, face: np.ndarray) -> np.ndarray:
    return pred._probabilities([face], [np.ones(face.shape[:2], bool)])[0]


def test_flips_make_the_bundled_model_see_a_mirrored_face_as_the_face():
    face = load_image(IMAGES / "00015.jpg")
    mirror = np.ascontiguousarray(face[:, ::-1])
    plain = WrinklePredictor(face_region="none", backend="torch", precision="fp32", tta="none")
    flip = WrinklePredictor(face_region="none", backend="torch", precision="fp32", tta="flip")
    # One model alone is not mirror-symmetric (so the check below can fail) ...
    assert np.abs(_probs(plain, mirror)[:, ::-1] - _probs(plain, face)).max() > 0.05
    # ... the flip average is, and it is the mean of the two views.
    both = _probs(flip, face)
    assert np.abs(_probs(flip, mirror)[:, ::-1] - both).max() < 1e-4
    want = (_probs(plain, face) + _probs(plain, mirror)[:, ::-1]) / 2
    assert np.abs(both - np.clip(want, 1e-6, 1 - 1e-6)).max() < 1e-4
    # OpenVINO runs the same average in one graph
    ov = WrinklePredictor(face_region="none", backend="openvino", precision="fp32", tta="flip")
    assert np.abs(_probs(ov, face) - both).max() < 1e-3


def _cv(small_data, out: Path, seed: int, lr: float = 0.01, folds_done: int = 2) -> Path:
    from utils.training.crossval import labelled_ids, load_or_make_folds, run_fold

    cfg = tiny_config(*small_data, out / "unused", epochs=3, lr=lr)
    folds = load_or_make_folds(out, labelled_ids(cfg, log=lambda s: None), 2, seed)
    for k in range(folds_done):
        run_fold(cfg, out, k, folds, progress=False, log=lambda s: None)
    return out


def test_flips_and_ensembles_out_of_fold_and_served(small_data, tmp_path):
    from bench_averaging import ensemble_report, flip_report

    from export import main as export_main
    from utils.training.crossval import read_oof

    a, b = _cv(small_data, tmp_path / "cv0", 0), _cv(small_data, tmp_path / "cv1", 1)
    # the results table reads the report of a finished folder, and the done folds of another
    from cv_table import row

    from utils.training.crossval import summarize

    report = summarize(a)
    assert f"| {report['pooled']['f1']:.3f} |" in row(a)
    import re  # with --time: the recipe's ms per face on the default backend
    assert re.search(r"\| \d+ \((openvino|torch)\) \|$", row(a, repeats=2))
    held = ("oof.npz", "oof.counts.json")  # fold 1 unfinished: neither probabilities nor counts
    for name in held:
        (b / "fold1" / name).rename(b / "fold1" / (name + ".keep"))
    assert "(folds 0 of 2)" in row(b) and row(tmp_path) is None
    for name in held:
        (b / "fold1" / (name + ".keep")).rename(b / "fold1" / name)
    rep = flip_report(a, 0.5)
    # the stored flip-averaged predictions are the fold model's two views, averaged
    part, flipped = read_oof(a, 1), read_oof(a, 1, "oof_flip")
    assert list(part["ids"]) == list(flipped["ids"])
    model = WrinklePredictor(a / "fold1" / "last.pth", face_region="none", backend="torch",
                             precision="fp32", tta="none")
    face = resize_image(load_image(small_data[0] / f"{part['ids'][0]}.jpg"), (64, 64))
    small = _probs(model, face)  # at the model's 64 px, resized as the data set resizes
    mirror = _probs(model, np.ascontiguousarray(face[:, ::-1]))[:, ::-1]
    assert np.abs(flipped["probs"][0].astype(np.float32) - (small + mirror) / 2).max() < 2e-3
    assert np.abs(part["probs"][0].astype(np.float32) - small).max() < 2e-3
    assert rep["flip_minus_plain"]["per_fold"] == pytest.approx(
        [f - p for p, f in zip(rep["oof"]["fold_f1"], rep["oof_flip"]["fold_f1"], strict=True)])
    # the paired comparison of two variants on the same faces says the same, face by face too
    from paired import compare

    pair = compare(str(a), f"{a}:oof_flip")
    assert [f["b_minus_a"] for f in pair["folds"]] == pytest.approx(
        rep["flip_minus_plain"]["per_fold"])
    assert pair["pooled"]["b"] == pytest.approx(rep["oof_flip"]["at_threshold"])
    low, high = pair["pooled"]["bootstrap_95"]
    assert low <= pair["pooled"]["b_minus_a"] <= high and pair["faces"] == 16
    with pytest.raises(UserError, match="hold out different faces"):
        compare(str(a), str(b))  # other fold seed: not paired
    # repeated 2-fold: one pair per fold seed, and their four folds together
    from paired import repeated

    flip_report(b, 0.5)
    both = repeated([(str(a), f"{a}:oof_flip"), (str(b), f"{b}:oof_flip")])
    assert both["pairs"][0] == pair
    diffs = [f["b_minus_a"] for r in both["pairs"] for f in r["folds"]]
    assert len(diffs) == both["fold_difference"]["folds"] == 4
    assert both["fold_difference"]["mean"] == pytest.approx(np.mean(diffs))
    assert both["fold_difference"]["b_better"] == sum(d > 0 for d in diffs)
    plain_b = [f["a"] for f in both["pairs"][1]["folds"]]  # fold seed 1's plain folds
    assert both["pooled_gain_over_a_spread"][1] == pytest.approx(
        both["pairs"][1]["pooled"]["b_minus_a"] / np.std(plain_b, ddof=1))

    # every face averaged over the two models that held it out, one per fold seed
    ens = ensemble_report([a, b], 0.5)
    faces = {}
    for folder in (a, b):
        for k in range(2):
            p = read_oof(folder, k)
            for i, face_id in enumerate(p["ids"]):
                faces.setdefault(str(face_id), []).append((p["probs"][i].astype(np.float32),
                                                           p["masks"][i]))
    assert all(len(v) == 2 for v in faces.values()) and len(faces) == 16
    probs = np.stack([(v[0][0] + v[1][0]) / 2 for v in faces.values()])
    truth = np.stack([v[0][1] for v in faces.values()])
    pred = probs > 0.5
    assert ens["ensemble"]["at_threshold"] == pytest.approx(
        2 * (pred & truth).sum() / (pred.sum() + truth.sum()), abs=1e-6)
    assert ens["ensemble"]["at_threshold"] > 0.01  # models that learned something
    assert ens["faces"] == 16 and ens["groups"] == 2
    assert ens["ensemble_minus_first"]["per_fold"] == pytest.approx(
        [e - s for s, e in zip(ens["single"][0]["fold_f1"], ens["ensemble"]["fold_f1"],
                               strict=True)])
    with pytest.raises(UserError, match="own --fold-seed"):
        ensemble_report([a, a], 0.5)
    # another recipe on the same folds (here another learning rate; a self-trained student in
    # docs/results/recipes.md), one fold finished: a two-model ensemble on that fold's faces only
    c = _cv(small_data, tmp_path / "cv0_lr", 0, lr=0.02, folds_done=1)
    (c / "recipe.json").write_text('{"set": ["train.lr=0.02"]}', encoding="utf-8")
    pair_ens = ensemble_report([a, c], 0.5)
    first, other = read_oof(a, 0), read_oof(c, 0)
    assert list(first["ids"]) == list(other["ids"]) and pair_ens["faces"] == len(first["ids"]) == 8
    avg = (first["probs"].astype(np.float32) + other["probs"].astype(np.float32)) / 2 > 0.5
    truth = first["masks"]
    assert pair_ens["ensemble"]["at_threshold"] == pytest.approx(
        2 * (avg & truth).sum() / (avg.sum() + truth.sum()), abs=1e-6)
    assert pair_ens["ensemble_minus_first"]["per_fold"] == pytest.approx(
        [pair_ens["ensemble"]["at_threshold"] - pair_ens["single"][0]["at_threshold"]])

    # the fold models exported as one file serve the average of their probabilities
    members = [a / "fold0" / "last.pth", a / "fold1" / "last.pth"]
    dst = tmp_path / "ensemble.pth"
    assert export_main([*map(str, members), str(dst), "--tta", "flip"]) == 0
    served = WrinklePredictor(dst, face_region="none", backend="torch", precision="fp32")
    assert "2 x unet" in served.description and served.description.endswith("+ flips on cpu (fp32)")
    singles = [WrinklePredictor(m, face_region="none", backend="torch", precision="fp32",
                                tta="flip") for m in members]
    want = np.mean([_probs(s, face) for s in singles], axis=0)
    assert np.abs(_probs(served, face) - want).max() < 1e-4
    # on OpenVINO too, with and without the flips the file names (two compilations, not one
    # reused for both: both are an average of members)
    plain_want = np.mean([_probs(WrinklePredictor(m, face_region="none", backend="torch",
                                                  precision="fp32"), face) for m in members], 0)
    assert np.abs(plain_want - want).max() > 1e-3  # so the two checks below can tell them apart
    for tta, expected in ((None, want), ("none", plain_want)):
        ov = WrinklePredictor(dst, face_region="none", backend="openvino", precision="fp32",
                              tta=tta)
        assert np.abs(_probs(ov, face) - np.clip(expected, 1e-6, 1 - 1e-6)).max() < 1e-3, tta
    with pytest.raises(UserError, match=r"written as \.pth or \.safetensors first"):
        export_main([*map(str, members), str(tmp_path / "e.onnx")])
    with pytest.raises(UserError, match="recipe differs"):  # 64 px models with the 256 px one
        export_main([str(members[0]), str(REPO / "res" / "cp" / "default_ffhq256.pth"),
                     str(tmp_path / "mixed.pth")])
    with pytest.raises(UserError, match="given twice"):
        export_main([str(members[0]), str(members[0]), str(tmp_path / "twice.pth")])
    assert not (tmp_path / "mixed.pth").exists() and not (tmp_path / "twice.pth").exists()


def test_a_checkpoint_names_its_test_time_flips(tmp_path):
    from utils.checkpoints import Averaged, load_checkpoint, model_from_checkpoint, save_checkpoint

    ckpt = load_checkpoint(REPO / "res" / "cp" / "default_ffhq256.pth")
    assert not isinstance(model_from_checkpoint(ckpt), Averaged)
    save_checkpoint(tmp_path / "f.pth", ckpt | {"model": dict(ckpt["model"], tta="flip")})
    model = model_from_checkpoint(load_checkpoint(tmp_path / "f.pth"))
    assert isinstance(model, Averaged) and model.flip
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), model(torch.flip(x, dims=[3])).flip(dims=[3]), atol=1e-4)
    pred = WrinklePredictor(tmp_path / "f.pth", face_region="none", tta="none", backend="torch")
    assert not isinstance(pred.loaded.model, Averaged)  # --tta none overrides the file
    assert "flips" not in pred.description
    assert WrinklePredictor(tmp_path / "f.pth", face_region="none").description.count(
        "+ flips") == 1  # and the name says what the file serves, once
    save_checkpoint(tmp_path / "bad.pth", ckpt | {"model": dict(ckpt["model"], tta="spin")})
    with pytest.raises(UserError, match="unknown test-time augmentation 'spin'"):
        WrinklePredictor(tmp_path / "bad.pth", face_region="none")


def test_a_recipe_shape_is_timed_before_it_is_trained(tmp_path):
    from bench_averaging import shaped_like

    bundled = REPO / "res" / "cp" / "default_ffhq256.pth"
    path = shaped_like(bundled, ["model.base_channels=48", "preprocess.image_size=128"],
                       tmp_path / "w48.pth")
    pred = WrinklePredictor(path, face_region="none", backend="torch", precision="fp32")
    assert pred.loaded.recipe["image_size"] == 128
    first = next(m for m in pred.loaded.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.out_channels == 48
    assert np.isfinite(_probs(pred, load_image(IMAGES / "00015.jpg"))).all()
    with pytest.raises(UserError, match="has no key 'width'"):
        shaped_like(bundled, ["model.width=48"], tmp_path / "bad.pth")
