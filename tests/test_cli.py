"""The scripts as users run them: --help, a real run end to end, and bad input without tracebacks."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch

from evaluate import main as evaluate_main
from tests.conftest import REPO
from train import main as train_main
from utils.errors import run_cli


def run(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ") or "\nerror: " in proc.stderr, proc.stderr
    for n in needles:
        assert n in proc.stderr, (n, proc.stderr)


def call(main, argv: list[str], capsys) -> subprocess.CompletedProcess:
    """Run a script's main in this process, exactly as its __main__ does (run_cli)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(lambda: main(argv))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, exc.value.code, captured.out, captured.err)


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_help(script):
    proc = run(script, "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout and "example:" in proc.stdout


def test_train_then_evaluate_end_to_end(small_data, tmp_path):
    img, mask = small_data
    proc = run(str(REPO / "train.py"), "--image-dir", str(img), "--mask-dir", str(mask),
               "-e", "1", "-b", "4", "--run-name", "demo", "--out-dir", str(tmp_path / "cp"),
               "--image-size", "64", "--base-channels", "8", "-j", "0", "--no-progress",
               "--set", "data.val_fraction=0.25", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "best epoch 1" in proc.stdout and "warning" not in proc.stdout
    ckpt = tmp_path / "cp" / "demo" / "best.pth"
    proc = run(str(REPO / "evaluate.py"), "--checkpoint", str(ckpt), "--split", "val",
               "--out", str(tmp_path / "eval"), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 4 and 0 <= metrics["micro"]["f1"] <= 1
    # The same run name again must not overwrite the run.
    proc = run(str(REPO / "train.py"), "--image-dir", str(img), "--mask-dir", str(mask),
               "-e", "1", "--run-name", "demo", "--out-dir", str(tmp_path / "cp"), cwd=tmp_path)
    user_error(proc, "exists", "--resume")


def test_train_bad_input(small_data, tmp_path, capsys):
    img, mask = small_data
    d = ["--image-dir", str(img), "--mask-dir", str(mask), "--out-dir", str(tmp_path / "cp")]

    def check(argv, *needles):
        user_error(call(train_main, argv, capsys), *needles)

    check(["--image-dir", str(tmp_path / "nope"), "--mask-dir", str(mask),
           "--out-dir", str(tmp_path / "cp")], "nope: image folder not found")
    check([*d, "--set", "train.epoch=3"], "did you mean 'train.epochs'")
    check([*d, "--set", "train.lr=fast"], "train.lr must be float")
    check([*d, "--config", str(tmp_path / "none.yaml")], "none.yaml: config file not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    check(["--image-dir", str(empty), "--mask-dir", str(mask), "--out-dir", str(tmp_path / "cp")],
          "no usable image/mask pairs")
    # --strict turns the report of an image without a mask into a failure.
    (mask / sorted(p.name for p in mask.iterdir())[0]).unlink()
    check([*d, "--strict"], "1 images have no mask", "--strict")
    check(["--resume", str(tmp_path / "missing" / "last.pth")], "checkpoint not found")
    assert not (tmp_path / "cp").exists()  # a failed start leaves no run folder behind


class NotAStateDict:
    pass


def test_evaluate_bad_checkpoints(tmp_path, trained_run, capsys):
    out = str(tmp_path / "out")

    def check(ckpt, *needles, extra=()):
        user_error(call(evaluate_main, ["-m", str(ckpt), "-o", out, *extra], capsys), *needles)

    check(tmp_path / "none.pth", "none.pth: checkpoint not found")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    check(empty, "empty")
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(3)}, foreign)
    check(foreign, "not a checkpoint of this project", "weights")
    evil = tmp_path / "evil.pth"
    with evil.open("wb") as fh:
        pickle.dump(NotAStateDict(), fh)
    check(evil, "refused to load")
    text = tmp_path / "text.pth"
    text.write_text("hello")
    check(text, "text.pth: this is a text file, not a checkpoint")
    check(trained_run / "best.pth", "bogus", extra=("-s", "bogus"))
    check(trained_run / "best.pth", "gone: image folder not found",
          extra=("--image-dir", str(tmp_path / "gone")))
    assert not (tmp_path / "out" / "metrics.json").exists()
