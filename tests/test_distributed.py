"""torchrun on the CPU (gloo): the same train.py, the same checkpoints, the same pooled metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, labelled_ids, link_pairs, needs_data
from utils.checkpoints import load_checkpoint

pytestmark = needs_data


def torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    img, mask = link_pairs(root / "data", labelled_ids(13))
    proc = torchrun(str(REPO / "train.py"), "--image-dir", str(img), "--mask-dir", str(mask),
                    "-e", "1", "-b", "2", "--run-name", "ddp", "--out-dir", str(root / "cp"),
                    "--image-size", "64", "--base-channels", "8", "-j", "0", "--no-progress",
                    "--amp", "off", "--set", "data.val_fraction=0.4", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


def test_torchrun_writes_the_single_process_checkpoint_format(two_process_run, trained_run):
    root, proc = two_process_run
    assert proc.stdout.count("epoch 1/1") == 1  # only rank 0 prints
    assert "2 processes" in proc.stdout
    run = root / "cp" / "ddp"
    ddp = load_checkpoint(run / "last.pth")
    single = load_checkpoint(trained_run / "last.pth")
    assert set(ddp) == set(single)
    assert set(ddp["state_dict"]) == set(single["state_dict"])  # no "module." prefix
    assert not any(k.startswith("module.") for k in ddp["state_dict"])
    assert ddp["epoch"] == 1 and len(ddp["split"]["val"]) == 5
    for name in ("best.pth", "history.csv", "config.yaml", "val_ids.txt", "summary.json"):
        assert (run / name).is_file()


def test_pooled_metrics_over_two_processes_equal_one_process(two_process_run):
    root, _ = two_process_run
    run = root / "cp" / "ddp"
    ckpt, ids = str(run / "best.pth"), str(run / "val_ids.txt")  # 5 ids: shards of 3 and 2
    script = str(REPO / "tests" / "dist_validate.py")
    two = torchrun(script, ckpt, ids, str(root / "two.json"), cwd=root)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, script, ckpt, ids, str(root / "one.json")],
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    a = json.loads((root / "two.json").read_text())
    b = json.loads((root / "one.json").read_text())
    assert a["world"] == 2 and b["world"] == 1
    assert sorted(a["ids"]) == sorted(b["ids"]) and len(a["ids"]) == 5  # nothing counted twice
    for key, value in b["metrics"].items():
        assert a["metrics"][key] == pytest.approx(value, abs=1e-6), key


def test_torchrun_resumes_a_run(two_process_run):
    root, _ = two_process_run
    run = root / "cp" / "ddp"
    proc = torchrun(str(REPO / "train.py"), "--resume", str(run / "last.pth"), "-e", "2",
                    "--no-progress", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stdout and proc.stdout.count("epoch 2/2") == 1
    assert [r["epoch"] for r in load_checkpoint(run / "last.pth")["history"]] == [1, 2]
