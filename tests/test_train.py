"""Training on real pairs: the loss falls, checkpoints are complete, a killed run resumes exactly."""

from __future__ import annotations

import csv

import pytest
import torch

from tests.conftest import needs_data, tiny_config
from utils.checkpoints import load_checkpoint, model_from_checkpoint
from utils.errors import UserError
from utils.training.loop import TrainingStopped, train

pytestmark = needs_data


class Killed(Exception):
    pass


def test_training_lowers_loss_and_writes_checkpoints(small_data, tmp_path):
    cfg = tiny_config(*small_data, tmp_path / "cp", epochs=6, lr=0.01)
    summary = train(cfg, progress=False, log=lambda s: None)
    run = tmp_path / "cp" / "t"
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert len(rows) == 6
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0] - 0.03 and min(losses[-2:]) < min(losses[:2]), losses
    for name in ("best.pth", "last.pth", "config.yaml", "train_ids.txt", "val_ids.txt",
                 "summary.json"):
        assert (run / name).is_file(), name
    val_ids = (run / "val_ids.txt").read_text().split()
    train_ids = (run / "train_ids.txt").read_text().split()
    assert len(val_ids) == 4 and len(train_ids) == 12 and not set(val_ids) & set(train_ids)

    best = load_checkpoint(run / "best.pth")
    last = load_checkpoint(run / "last.pth")
    assert best["epoch"] == summary["best_epoch"]
    assert best["model"] == {"name": "unet", "n_channels": 3, "n_classes": 1,
                             "base_channels": 8, "bilinear": True}
    assert best["preprocess"]["image_size"] == 64 and best["threshold"] == 0.5
    assert {"f1", "jaccard", "auroc"} <= set(best["metrics"])
    assert {"optimizer", "scheduler", "rng", "history"} <= set(last)
    assert best["split"]["val"] == val_ids
    # best.pth is a copy: when the best epoch is not the last, its weights differ from last.pth.
    if best["epoch"] != last["epoch"]:
        assert any(not torch.equal(best["state_dict"][k], last["state_dict"][k])
                   for k in best["state_dict"])
    model = model_from_checkpoint(best)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_training_on_every_face_runs_the_fixed_epochs_and_keeps_the_last(small_data, tmp_path):
    cfg = tiny_config(*small_data, tmp_path / "cp", epochs=3)
    cfg["data"]["val_fraction"] = 0.0
    with pytest.raises(UserError, match="early_stopping"):
        train(cfg, progress=False, log=lambda s: None)
    assert not (tmp_path / "cp" / "t").exists()  # refused before any run folder is made
    cfg["train"]["early_stopping"] = 0
    lines: list[str] = []
    summary = train(cfg, progress=False, log=lines.append)
    run = tmp_path / "cp" / "t"
    assert (run / "train_ids.txt").read_text().split() == sorted(p.stem for p in
                                                               small_data[1].glob("*.png"))
    assert (run / "val_ids.txt").read_text() == ""
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 3
    best, last = load_checkpoint(run / "best.pth"), load_checkpoint(run / "last.pth")
    assert best["epoch"] == last["epoch"] == 3 and best["metrics"] == {}
    assert all(torch.equal(best["state_dict"][k], last["state_dict"][k]) for k in best["state_dict"])
    assert any("no validation faces" in line for line in lines)
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [r["f1"] for r in rows] == ["", "", ""] and all(float(r["train_loss"]) > 0 for r in rows)


@pytest.mark.parametrize("workers", [0, 1])
def test_killed_run_resumes_where_it_stopped(small_data, tmp_path, workers):
    def config(out):
        cfg = tiny_config(*small_data, out)
        cfg["data"]["num_workers"] = workers  # 1: a persistent worker process across epochs
        return cfg

    full = train(config(tmp_path / "a"), progress=False, log=lambda s: None)
    ref = load_checkpoint(full["last_checkpoint"])

    def kill_after_first(epoch, row):
        if epoch == 1:
            raise Killed

    cfg = config(tmp_path / "b")
    with pytest.raises(Killed):
        train(cfg, on_epoch_end=kill_after_first, progress=False, log=lambda s: None)
    run = tmp_path / "b" / "t"
    after_one = load_checkpoint(run / "last.pth")
    assert after_one["epoch"] == 1

    seen = []
    train(config(tmp_path / "b"), resume=run / "last.pth",
          on_epoch_end=lambda e, r: seen.append(e), progress=False, log=lambda s: None)
    assert seen == [2, 3]  # resumed at the next epoch
    resumed = load_checkpoint(run / "last.pth")
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3]
    # Same optimizer state and the same weights as the run that was never interrupted.
    for k, v in ref["state_dict"].items():
        assert torch.allclose(v.float(), resumed["state_dict"][k].float(), atol=1e-6), k
    ref_opt, res_opt = ref["optimizer"]["state"], resumed["optimizer"]["state"]
    for pid in ref_opt:
        assert torch.allclose(ref_opt[pid]["exp_avg"], res_opt[pid]["exp_avg"], atol=1e-6)
    assert ref["history"][-1]["train_loss"] == pytest.approx(
        resumed["history"][-1]["train_loss"], rel=1e-5)


def test_existing_run_is_not_overwritten(small_data, tmp_path):
    cfg = tiny_config(*small_data, tmp_path / "cp", epochs=1)
    train(cfg, progress=False, log=lambda s: None)
    before = (tmp_path / "cp" / "t" / "last.pth").stat().st_mtime_ns
    with pytest.raises(UserError, match="exists"):
        train(tiny_config(*small_data, tmp_path / "cp", epochs=1), progress=False,
              log=lambda s: None)
    assert (tmp_path / "cp" / "t" / "last.pth").stat().st_mtime_ns == before


def test_nan_loss_stops_and_keeps_last_good_checkpoint(small_data, tmp_path, monkeypatch):
    import utils.training.loop as training

    real_epoch = training._train_epoch

    def epoch_with_nan(model, *args):
        if args[8] == 2:  # the epoch number: poison one weight, so every loss is NaN
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
        return real_epoch(model, *args)

    monkeypatch.setattr(training, "_train_epoch", epoch_with_nan)
    cfg = tiny_config(*small_data, tmp_path / "cp", epochs=3)
    with pytest.raises(TrainingStopped, match=r"NaN.*epoch 2.*last good checkpoint"):
        train(cfg, progress=False, log=lambda s: None)
    kept = load_checkpoint(tmp_path / "cp" / "t" / "last.pth")
    assert kept["epoch"] == 1
    assert all(torch.isfinite(v.float()).all() for v in kept["state_dict"].values())


def test_wandb_offline_logs_without_an_account(small_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = tiny_config(*small_data, tmp_path / "cp", epochs=1)
    cfg["logging"]["wandb"] = "offline"
    train(cfg, progress=False, log=lambda s: None)
    runs = list((tmp_path / "cp" / "t" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
