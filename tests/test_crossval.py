"""Cross-validation: folds are fixed and disjoint, no fold model sees its held-out faces, the
report's figures are those of the stored predictions and of evaluate.py, and a run resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import needs_data, tiny_config
from utils.errors import UserError
from utils.training.crossval import (
    labelled_ids,
    load_or_make_folds,
    make_folds,
    read_oof,
    run_fold,
    summarize,
)

pytestmark = needs_data


def test_folds_are_disjoint_cover_every_id_and_follow_the_seed():
    ids = [f"{i:05d}" for i in range(23)]
    folds = make_folds(ids, 5, seed=3)
    assert sorted(i for f in folds for i in f) == ids
    assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
    assert make_folds(ids, 5, seed=3) == folds
    assert make_folds(ids, 5, seed=4) != folds
    with pytest.raises(UserError, match="cannot make"):
        make_folds(ids[:3], 5, seed=0)


def test_stored_folds_are_reused_and_a_different_setting_is_refused(tmp_path):
    ids = [f"{i:05d}" for i in range(12)]
    first = load_or_make_folds(tmp_path, ids, 3, 0)
    assert load_or_make_folds(tmp_path, ids, 3, 0) == first
    with pytest.raises(UserError, match="another --out"):
        load_or_make_folds(tmp_path, ids, 4, 0)
    with pytest.raises(UserError, match="no image/mask pair"):
        load_or_make_folds(tmp_path, ids[:6], 3, 0)


def test_out_of_fold_pipeline_on_tiny_folds(small_data, tmp_path):
    from utils.evaluation.evaluate import evaluate

    cfg = tiny_config(*small_data, tmp_path / "unused", epochs=4, lr=0.01)
    out = tmp_path / "cv"
    ids = labelled_ids(cfg, log=lambda s: None)
    folds = load_or_make_folds(out, ids, 3, 0)
    quiet = {"progress": False, "log": lambda s: None}
    run_fold(cfg, out, 0, folds, **quiet)
    with pytest.raises(UserError, match="no held-out predictions"):
        summarize(out)  # folds 1 and 2 are not done yet
    stamp = (out / "fold0" / "oof.npz").stat().st_mtime_ns
    for k in range(3):
        run_fold(cfg, out, k, folds, **quiet)
    assert (out / "fold0" / "oof.npz").stat().st_mtime_ns == stamp  # done before: kept

    seen = []
    for k in range(3):
        trained_on = set((out / f"fold{k}" / "train_ids.txt").read_text().split())
        part = read_oof(out, k)
        assert sorted(part["ids"]) == folds[k] and not trained_on & set(folds[k])
        assert trained_on == set(ids) - set(folds[k])
        seen += list(part["ids"])
    assert sorted(seen) == ids  # every face predicted once, by the model that never saw it

    report = summarize(out)
    assert json.loads((out / "report.json").read_text())["pooled"]["f1"] == report["pooled"]["f1"]
    parts = [read_oof(out, k) for k in range(3)]
    probs = np.concatenate([p["probs"].astype(np.float32).ravel() for p in parts])
    truth = np.concatenate([p["masks"].ravel() for p in parts])
    pred = probs > 0.5
    tp, fp, fn = (pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()
    assert report["pooled"]["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-6)
    assert report["pooled"]["jaccard"] == pytest.approx(tp / (tp + fp + fn), abs=1e-6)
    t = report["thresholds"]
    assert t["best_f1"] == max(t["pooled_f1"]) and t["best"] in t["candidates"]
    pred = probs > t["best"]
    assert t["best_f1"] == pytest.approx(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))
    assert t["best_f1"] > 0.01  # a model that learned something: the checks below can fail
    assert len(report["epochs"]["mean_held_out_f1"]) == 4
    spread = report["fold_spread"]["f1"]
    assert spread["mean"] == pytest.approx(np.mean(report["folds"]["f1"]))
    _kept_counts_give_the_same_figures(out, report, tmp_path, cfg, folds)

    # evaluate.py on fold 1's model and faces gives that fold's figures
    ev = evaluate(out / "fold1" / "last.pth", tmp_path / "ev", split=str(out / "fold1_ids.txt"),
                  image_dir=cfg["data"]["image_dir"], mask_dir=cfg["data"]["mask_dir"],
                  amp="off", overlays=0, progress=False, log=lambda s: None)
    assert ev["micro"]["f1"] == pytest.approx(report["folds"]["f1"][1], abs=1e-6)
    assert ev["micro"]["jaccard"] == pytest.approx(report["folds"]["jaccard"][1], abs=1e-6)
    assert report["folds"]["f1"][1] > 0.01
    # the stored probabilities are float16: binned AUROC moves by a few 1e-4
    assert ev["micro"]["auroc"] == pytest.approx(report["folds"]["auroc"][1], abs=2e-3)

    # the picture of a held-out face: the photo, then its stored prediction against its mask
    from utils.data.images import load_image
    from utils.training.crossval import held_out_overlay
    from utils.visualize import GREEN, YELLOW

    face = folds[2][0]
    part = read_oof(out, 2)
    i = list(part["ids"]).index(face)
    probs, truth = part["probs"][i].astype(np.float32), part["masks"][i]
    thr = float(np.median(probs[truth]))  # some wrinkle pixels found, some missed
    pred = probs > thr
    pic = held_out_overlay(out, face, load_image(small_data[0] / f"{face}.jpg"), thr)
    assert pic.shape == (64, 128, 3)
    right = pic[:, 64:].astype(float)
    both, missed = pred & truth, truth & ~pred
    assert both.any() and missed.any()
    assert np.abs(right[both] - YELLOW).mean() < np.abs(right[missed] - YELLOW).mean()
    assert np.abs(right[missed] - GREEN).mean() < np.abs(right[both] - GREEN).mean()
    with pytest.raises(UserError, match="not a face of the folds"):
        held_out_overlay(out, "99999", pic[:, :64], 0.5)

    # a model exported with the report carries its figures and the best out-of-fold threshold
    from export import main
    from tests.conftest import IMAGES
    from utils.checkpoints import load_checkpoint
    from utils.inference.export import check_reference

    dst = tmp_path / "shipped.pth"
    faces = [IMAGES / f"{i}.jpg" for i in folds[0][:2]]
    assert main([str(out / "fold1" / "last.pth"), str(dst), "--half", "--oof-report",
                 str(out / "report.json"), "--threshold", "oof", "--check-images",
                 *map(str, faces)]) == 0
    shipped = load_checkpoint(dst)
    oof = shipped["out_of_fold"]
    assert shipped["threshold"] == oof["threshold"] == t["best"]
    assert oof["f1_at_threshold"] == t["best_f1"] and oof["k"] == 3 and oof["faces"] == 16
    assert oof["pooled_at_report_threshold"]["f1"] == report["pooled"]["f1"]
    assert oof["fold_f1"] == report["folds"]["f1"]
    assert shipped["fp32_reference"]["images"] == [f.name for f in faces]
    agree = check_reference(dst, IMAGES)
    assert sorted(agree) == sorted(f.name for f in faces) and min(agree.values()) >= 0.995
    with pytest.raises(UserError, match="no out-of-fold F1"):
        main([str(out / "fold1" / "last.pth"), str(tmp_path / "x.pth"), "--oof-report",
              str(out / "report.json"), "--threshold", "0.123"])
    with pytest.raises(UserError, match="needs --oof-report"):
        main([str(out / "fold1" / "last.pth"), str(tmp_path / "x.pth"), "--threshold", "oof"])


def _kept_counts_give_the_same_figures(out, report, tmp_path, cfg, folds):
    """bench/keep_cv.sh keeps a few kilobytes per fold; paired.py and cv_table.py read them as
    they read the full folder, at the candidate thresholds, and a new run of the same recipe
    counts those folds as done (--reuse-kept) and reports the same figures."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "bench"))
    import cv_table
    import paired

    from utils.training.crossval import f1_of, format_report, read_counts, reuse_kept

    recipe = {"config": "tiny", "set": [], "epochs": 4}
    (out / "recipe.json").write_text(json.dumps(recipe))
    counts = [read_counts(out, k, 0.5) for k in range(3)]
    assert f1_of(np.concatenate([c for _, c in counts])) == pytest.approx(
        report["pooled"]["f1"], abs=1e-6)
    assert [f1_of(c) for _, c in counts] == pytest.approx(report["folds"]["f1"], abs=1e-6)
    # a copy whose fold 0 lost its counts file (predicted before counts were kept) gets it back
    full = tmp_path / "full"
    shutil.copytree(out, full)
    (full / "fold0" / "oof.counts.json").unlink()
    # a destination relative to where the script is started (not to the folder it copies)
    env = {"KEEP_CV_DEST": "kept", "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["bash", str(REPO / "bench" / "keep_cv.sh"), str(full)], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    kept = tmp_path / "kept" / "full"
    assert not list(kept.rglob("*.npz")) and not list(kept.rglob("*.pth"))
    assert sum(f.stat().st_size for f in kept.rglob("*")) < 100_000
    for t in (0.5, report["thresholds"]["best"]):
        a, b = paired.compare(str(out), str(full), t), paired.compare(str(out), str(kept), t)
        assert a["pooled"]["b_minus_a"] == b["pooled"]["b_minus_a"] == 0
        assert b["pooled"]["b"] == pytest.approx(a["pooled"]["a"], abs=1e-9)
        assert [f["b"] for f in b["folds"]] == pytest.approx(report["folds"]["f1"] if t == 0.5
                                                             else [f["a"] for f in a["folds"]])
    assert cv_table.row(kept) == cv_table.row(out).replace("| cv |", "| full |")
    paired.compare(str(out), str(full), 0.123)  # probabilities kept: any threshold
    with pytest.raises(UserError, match="not one of its candidates"):
        paired.compare(str(out), str(kept), 0.123)
    bad = subprocess.run(["bash", str(REPO / "bench" / "keep_cv.sh"), str(tmp_path)], env=env,
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 1 and "no folds.json" in bad.stderr

    # a new machine: the kept folds count as done, and the report is the same
    new = tmp_path / "new"
    assert load_or_make_folds(new, sorted(i for f in folds for i in f), 3, 0) == folds
    assert reuse_kept(new, kept, recipe, folds, log=lambda s: None) == [0, 1, 2]
    assert run_fold(cfg, new, 1, folds, progress=False, log=lambda s: None)["epochs_run"] == 4
    assert not list(new.rglob("*.pth"))  # nothing trained
    again = summarize(new)
    for key in ("f1", "jaccard", "precision", "recall", "macro_f1"):
        assert again["pooled"][key] == pytest.approx(report["pooled"][key], abs=1e-6)
        assert again["folds"][key] == pytest.approx(report["folds"][key], abs=1e-6)
    assert again["thresholds"]["pooled_f1"] == pytest.approx(report["thresholds"]["pooled_f1"])
    assert again["thresholds"]["best"] == report["thresholds"]["best"]
    assert "auroc" not in again["pooled"] and "counts only" in format_report(again)
    with pytest.raises(UserError, match="another recipe"):
        reuse_kept(tmp_path / "other", kept, dict(recipe, epochs=40), folds)
    (full / "recipe.json").write_text(json.dumps(dict(recipe, epochs=40)))
    mixed = subprocess.run(["bash", str(REPO / "bench" / "keep_cv.sh"), str(full)], env=env,
                           capture_output=True, text=True, cwd=tmp_path)
    assert mixed.returncode == 1 and "another recipe" in mixed.stderr


def test_a_killed_fold_resumes_from_its_last_checkpoint(small_data, tmp_path):
    from utils.training.loop import train

    cfg = tiny_config(*small_data, tmp_path / "unused", epochs=3)
    out = tmp_path / "cv"
    folds = load_or_make_folds(out, labelled_ids(cfg, log=lambda s: None), 2, 0)

    class Killed(Exception):
        pass

    def kill(epoch, row):
        if epoch == 2:
            raise Killed

    from utils.training.crossval import fold_config

    fcfg = fold_config(cfg, out, 0, folds)
    with pytest.raises(Killed):
        train(fcfg, on_epoch_end=kill, progress=False, log=lambda s: None)
    logs = []
    run_fold(cfg, out, 0, folds, progress=False, log=logs.append)
    assert any("resuming" in line for line in logs)
    history = (out / "fold0" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3  # header and epochs 1-3, none twice
    assert (out / "fold0" / "oof.npz").is_file()


def test_cross_validate_script_help_and_bad_input(tmp_path, capsys):
    import subprocess
    import sys

    from tests.conftest import REPO

    script = str(REPO / "bench" / "cross_validate.py")
    res = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "out-of-fold" in res.stdout
    res = subprocess.run([sys.executable, script, "-o", str(tmp_path / "cv"), "-c",
                          str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert res.returncode == 1 and "missing.yaml: config file not found" in res.stderr
    assert "Traceback" not in res.stderr
    twice = str(tmp_path / "t")
    res = subprocess.run([sys.executable, script, "-o", str(tmp_path / "cv"), "--teachers", twice,
                          twice], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 1 and "names a folder twice" in res.stderr
    assert "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, script, "-o", str(tmp_path / "dev"), "--device", "gpu"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 1 and "unknown device 'gpu'" in res.stderr
    assert not (tmp_path / "dev").exists()  # refused before any folder or fold is made


@needs_data
def test_gpu_folds_are_summarised_on_a_cpu_and_never_mixed_with_cpu_runs(tmp_path):
    """A cross-validation trained on a lent GPU (bench/gpu_folds.sh, kept in
    bench/results/cv_gpu) records 'cuda' in its recipe: this machine summarises it without a GPU
    when told the device, and the same command without it is another recipe (bf16 on a GPU is a
    rerun, never pooled with CPU folds)."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import REPO

    kept = REPO / "bench" / "results" / "cv_gpu" / "v3_e60"
    folder = tmp_path / "v3_e60"
    shutil.copytree(kept, folder)
    (folder / "report.json").unlink()
    base = [sys.executable, str(REPO / "bench" / "cross_validate.py"), "--config",
            "configs/default_ffhq256.yaml", "--out", str(folder), "--epochs", "60",
            "--report-only"]
    res = subprocess.run([*base, "--device", "cuda"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    report = json.loads((folder / "report.json").read_text())
    expected = json.loads((kept / "report.json").read_text())
    assert report["pooled"]["f1"] == pytest.approx(expected["pooled"]["f1"], abs=1e-9)
    assert len(report["folds"]["f1"]) == 5 and 0.4 < report["pooled"]["f1"] < 0.6
    if not torch.cuda.is_available():
        res = subprocess.run([*base, "--device", "cpu"], capture_output=True, text=True,
                             cwd=REPO)
        assert res.returncode == 1 and "another recipe" in res.stderr
        res = subprocess.run([*base[:-1], "--device", "cuda"], capture_output=True, text=True,
                             cwd=REPO)
        assert res.returncode == 1 and "no CUDA GPU" in res.stderr


def test_schedule_fills_both_cores_and_gives_the_last_fold_every_core():
    from utils.training.crossval import next_batch

    def simulate(n_folds, jobs, cores):
        pending, running, starts = list(range(n_folds)), [], []
        while pending or running:
            batch, n = next_batch(pending, len(running), jobs, cores)
            del pending[:len(batch)]
            running += batch
            starts += [(k, n) for k in batch]
            if not batch:
                running.pop(0)  # the oldest fold finishes
        return starts

    # five folds, two at a time on two cores: 0+1, 2+3 with one thread, then 4 alone with two
    assert simulate(5, 2, 2) == [(0, 1), (1, 1), (2, 1), (3, 1), (4, 2)]
    assert simulate(2, 2, 2) == [(0, 1), (1, 1)]  # two folds, two jobs: side by side
    assert simulate(3, 1, 2) == [(0, 2), (1, 2), (2, 2)]
    assert next_batch([4], 1, 2, 2) == ([], 0)  # the last fold waits for a free CPU
    assert next_batch([0, 1], 0, 2, 2, threads=3) == ([0, 1], 3)


def test_a_recipe_on_upsampled_faces_is_scored_at_the_images_own_size(small_data, tmp_path):
    """A model trained on faces upsampled x2 has its held-out probabilities and masks max-pooled
    back to the images' own size, so its figures compare with every other recipe's."""
    import cv2

    from utils.checkpoints import load_checkpoint, model_from_checkpoint
    from utils.data.dataset import normalize_input, to_uint8_input
    from utils.data.images import resize_image
    from utils.data.masks import read_mask, resize_mask
    from utils.runtime import logits_to_probs

    img_dir, mask_dir = small_data
    small = tmp_path / "img64"  # 64 px faces (the masks stay at 1024)
    small.mkdir()
    for f in sorted(img_dir.glob("*.jpg"))[:8]:
        cv2.imwrite(str(small / f.name), cv2.resize(cv2.imread(str(f)), (64, 64),
                                                    interpolation=cv2.INTER_AREA))
    cfg = tiny_config(small, mask_dir, tmp_path / "unused", epochs=1)
    cfg["data"]["image_size"] = 128
    out = tmp_path / "cv"
    folds = load_or_make_folds(out, labelled_ids(cfg, log=lambda s: None), 2, 0)
    run_fold(cfg, out, 0, folds, progress=False, log=lambda s: None)
    part = read_oof(out, 0)
    assert part["probs"].shape == (4, 64, 64) and part["masks"].shape == (4, 64, 64)
    for i, face_id in enumerate(part["ids"]):
        # the masks are those made at 64 px from the 1024 px files (blocks of 16, any pixel)
        assert np.array_equal(part["masks"][i],
                              resize_mask(read_mask(mask_dir / f"{face_id}.png"), (64, 64)))
    # and the probabilities are the 128 px model's, each 2x2 block's largest
    ckpt = load_checkpoint(out / "fold0" / "last.pth")
    model = model_from_checkpoint(ckpt, "fold0").eval()
    rgb = cv2.cvtColor(cv2.imread(str(small / f"{part['ids'][0]}.jpg")), cv2.COLOR_BGR2RGB)
    x = to_uint8_input(resize_image(rgb, (128, 128)), ckpt["preprocess"])
    with torch.no_grad():
        probs = logits_to_probs(model(normalize_input(x[None], ckpt["preprocess"])))[0].numpy()
    assert probs.shape == (128, 128)
    pooled = probs.reshape(64, 2, 64, 2).max(axis=(1, 3))
    assert np.abs(part["probs"][0].astype(np.float32) - pooled).max() < 2e-3
    # training's validation of the last epoch and evaluate.py score the same faces the same way
    from utils.evaluation.evaluate import evaluate
    from utils.training.crossval import pooled_f1

    oof_f1 = pooled_f1([part], [0.5])[0]
    last = (out / "fold0" / "history.csv").read_text().splitlines()[-1].split(",")
    header = (out / "fold0" / "history.csv").read_text().splitlines()[0].split(",")
    assert float(last[header.index("f1")]) == pytest.approx(oof_f1, abs=1e-4)
    ev = evaluate(out / "fold0" / "last.pth", tmp_path / "ev", split="val", threshold=0.5,
                  device="cpu", amp="off", overlays=0, progress=False, log=lambda s: None)
    assert ev["micro"]["f1"] == pytest.approx(oof_f1, abs=1e-4)
    assert ev["scored_at"].startswith("64 px")


def test_paired_figures_when_every_fold_of_a_scored_alike(tmp_path):
    """Untrained folds (a dry run of bench/gpu_folds.sh) all score F1 0: A's fold spread is 0,
    and the gain in units of it is reported as not available instead of dividing by zero."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from utils.io import write_json
    from utils.training.crossval import THRESHOLDS

    sys.path.insert(0, str(REPO / "bench"))
    from paired import repeated

    folds = [["a1", "a2"], ["b1", "b2"]]
    n = len(THRESHOLDS)
    for name, hit in (("a", 0), ("b", 3)):
        for k, ids in enumerate(folds):
            write_json(tmp_path / name / "folds.json", {"folds": folds})
            write_json(tmp_path / name / f"fold{k}" / "oof.counts.json",
                       {"ids": ids, "thresholds": list(THRESHOLDS), "true": [10, 10],
                        "hit": [[hit] * n] * 2, "predicted": [[6] * n] * 2})
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    r = repeated([(a, b), (a, b)])
    assert r["pairs"][0]["a_fold_spread"] == 0 and r["pooled_gain_over_a_spread"] == [None, None]
    assert r["fold_difference"]["b_better"] == 4
    res = subprocess.run([sys.executable, str(REPO / "bench" / "paired.py"), a, b, a, b],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "n/a, n/a" in res.stdout, res.stderr
    # a fold with no wrinkle pixel drawn or marked has no F1 (NaN): the fold spread leaves it out
    c = tmp_path / "c"
    write_json(c / "folds.json", {"folds": folds, "seed": 0, "k": 2})
    for k, (true, hit, pred) in enumerate(((0, 0, 0), (10, 3, 6))):
        write_json(c / f"fold{k}" / "oof.counts.json",
                   {"ids": folds[k], "thresholds": list(THRESHOLDS), "true": [true] * 2,
                    "hit": [[hit] * n] * 2, "predicted": [[pred] * n] * 2})
        (c / f"fold{k}" / "history.csv").write_text("epoch,f1,seconds\n1,0.1,2.0\n")
    report = summarize(c)
    assert report["fold_spread"]["f1"]["mean"] == pytest.approx(2 * 6 / (12 + 20))
    assert report["fold_spread"]["f1"]["sd"] == 0.0
    assert report["pooled"]["f1"] == pytest.approx(2 * 6 / (12 + 20))
