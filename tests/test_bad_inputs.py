"""Bad input to every tool: each fails early and plainly (exit code 1, one line that names the
path and the problem, no traceback) and changes no file the user gave. The sweep runs the real
scripts in subprocesses; the rules behind it are tested on the library functions."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import IMAGES, MASKS, REPO, labelled_ids, link_pairs, needs_data
from utils.errors import UserError

pytestmark = needs_data


def png_claiming(w: int, h: int) -> bytes:
    """A small, complete PNG file whose header claims w x h pixels."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def unwritable_folder(tmp: Path) -> Path:
    """A folder this process cannot create files in: a read-only folder, or (as root, who may
    write anywhere on a normal disk) a read-only file system."""
    folder = tmp / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").touch()
    except OSError:
        return folder
    (folder / "probe").unlink()
    folder.chmod(0o700)
    return Path("/sys/wrinkle-test")  # sysfs: no new files, root included


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What a user hands the tools by mistake, next to what they hand them rightly."""
    root = tmp_path_factory.mktemp("sweep")
    face = IMAGES / f"{labelled_ids(1)[0]}.jpg"
    photo = root / "photo.jpg"
    photo.write_bytes(face.read_bytes())
    notes = root / "notes.txt"
    notes.write_text("my notes, not a checkpoint\n")
    (root / "mine.pth").write_text("a user's own file that happens to end in .pth\n")
    (root / "empty").mkdir()
    tiny = root / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    img_dir, mask_dir = link_pairs(root / "data", labelled_ids(4))
    return {"root": root, "photo": photo, "notes": notes, "empty": root / "empty",
            "tiny": tiny, "file_out": notes, "under_file": notes / "out",
            "locked": unwritable_folder(root), "images": img_dir, "masks": mask_dir}


def snapshot(root: Path) -> dict[str, str]:
    """Every file below root (links followed) with a hash of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cases(s: dict[str, Path]) -> list[tuple[str, list[str], str, str]]:
    """(what, command, path the message must name, words it must say)."""
    ckpt = str(REPO / "res" / "cp" / "default_ffhq256.pth")
    photo, notes = str(s["photo"]), str(s["notes"])
    data = ["--image-dir", str(s["images"]), "--mask-dir", str(s["masks"])]
    out = []
    for name, bad, words in (("a file", s["file_out"], "is a file"),
                             ("below a file", s["under_file"], "is a file"),
                             ("unwritable", s["locked"] / "out", "not writable")):
        out += [
            (f"predict --out {name}", ["predict.py", photo, "-o", str(bad)], str(bad), words),
            (f"compare --out {name}", ["compare.py", photo, photo, "-o", str(bad)], str(bad),
             words),
            (f"evaluate --out {name}", ["evaluate.py", "--baseline", "--split", "all", *data,
                                        "-o", str(bad)], str(bad), words),
            (f"train --out-dir {name}", ["train.py", *data, "--epochs", "1", "--out-dir",
                                         str(bad)], str(bad), words),
            (f"annotate --out {name}", ["annotate.py", photo, "-a", "ana", "-o", str(bad)],
             str(bad), words),
            (f"evaluate --agreement -o {name}", ["evaluate.py", "--agreement",
                                                 str(s["masks"]), str(s["masks"]), "-o",
                                                 str(bad)], str(bad), words),
            (f"pseudo_label --out {name}", ["pseudo_label.py", "-m", ckpt, "--images",
                                            str(s["images"]), "-o", str(bad)], str(bad), words),
        ]
    out += [
        ("export onto an existing file", ["export.py", ckpt, str(s["root"] / "mine.pth")],
         str(s["root"] / "mine.pth"), "already exists"),
        ("export onto a text file", ["export.py", ckpt, notes], notes, "not a model format"),
        ("export to an unknown format", ["export.py", ckpt, str(s["root"] / "m.bin")],
         str(s["root"] / "m.bin"), "not a model format"),
        ("export into an unwritable folder", ["export.py", ckpt, str(s["locked"] / "m.pth")],
         str(s["locked"]), "not writable"),
        ("a JPEG as --checkpoint", ["predict.py", photo, "-m", photo, "-o",
                                    str(s["root"] / "o1")], photo, "a JPEG image, not a checkpoint"),
        ("a text file as --init", ["train.py", *data, "--init", notes, "--out-dir",
                                   str(s["root"] / "o2")], notes, "a text file, not a checkpoint"),
        ("a text file as --resume", ["train.py", "--resume", notes], notes,
         "a text file, not a checkpoint"),
        ("a JPEG as export's source", ["export.py", photo, str(s["root"] / "o3.pth")], photo,
         "a JPEG image, not a checkpoint"),
        ("an empty folder to predict", ["predict.py", str(s["empty"]), "-o",
                                        str(s["root"] / "o4")], str(s["empty"]),
         "holds no image"),
        ("a folder as compare's photo", ["compare.py", photo, str(s["empty"]), "-o",
                                         str(s["root"] / "o5")], str(s["empty"]),
         "a folder, not an image"),
        ("a folder as --check-images", ["export.py", ckpt, str(s["root"] / "o6.pth"),
                                        "--check-images", str(s["empty"])], str(s["empty"]),
         "is a folder"),
        ("an empty folder to annotate", ["annotate.py", str(s["empty"]), "-a", "ana", "-o",
                                         str(s["root"] / "o8")], str(s["empty"]),
         "holds no image"),
        ("a text file as a folder of masks", ["evaluate.py", "--agreement", notes,
                                              str(s["masks"]), "-o", str(s["root"] / "o9")],
         notes, "not a folder of masks"),
        ("a 1x1 photo to compare", ["compare.py", photo, str(s["tiny"]), "-o",
                                    str(s["root"] / "o7")], str(s["tiny"]), "too small"),
        ("a JPEG as the teacher", ["pseudo_label.py", "-m", photo, "--images", str(s["images"]),
                                   "-o", str(s["root"] / "o8")], photo, "not"),
        ("an ensemble straight to ONNX", ["export.py", ckpt, str(s["root"] / "mine.pth"),
                                          str(s["root"] / "e.onnx")], "e.onnx",
         "written as .pth or .safetensors first"),
    ]
    return out


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)


def test_every_tool_fails_plainly_on_bad_input_and_changes_nothing(sandbox) -> None:
    todo = cases(sandbox)
    before = snapshot(sandbox["root"])
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: _run(c[1]), todo))
    wrong = []
    for (what, _, path, words), res in zip(todo, results, strict=True):
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        if res.returncode != 1 or "Traceback" in res.stderr or len(lines) != 1 \
                or path not in lines[0] or words not in lines[0]:
            wrong.append(f"{what}: exit {res.returncode}, stderr {res.stderr[-400:]!r}")
    assert not wrong, "\n".join(wrong)
    assert snapshot(sandbox["root"]) == before  # nothing the user gave was changed
    made = {p.name for p in sandbox["root"].iterdir()} - {
        "photo.jpg", "notes.txt", "mine.pth", "empty", "tiny.png", "data", "locked"}
    assert not made, made  # and no output was started


def test_outputs_are_checked_before_the_model_loads(sandbox) -> None:
    """A bad --out is the error even when the model could not be loaded at all."""
    res = _run(["predict.py", str(sandbox["photo"]), "-m", "no/such/model.pth", "-o",
                str(sandbox["under_file"])])
    assert res.returncode == 1 and "is a file" in res.stderr and "model.pth" not in res.stderr


def test_export_replaces_a_file_only_when_told(tmp_path) -> None:
    from export import main
    from utils.inference.loading import DEFAULT_CHECKPOINT, load_any_checkpoint

    dst = tmp_path / "model.pth"
    dst.write_text("keep me")
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        main([str(DEFAULT_CHECKPOINT), str(dst)])
    assert dst.read_text() == "keep me"
    assert main([str(DEFAULT_CHECKPOINT), str(dst), "--overwrite"]) == 0
    assert load_any_checkpoint(dst).kind == "ours"
    for name in ("user_file.txt", "weights.bin", "model"):
        with pytest.raises(UserError, match="not a model format the predictor loads"):
            main([str(DEFAULT_CHECKPOINT), str(tmp_path / name)])
        assert not (tmp_path / name).exists()


def test_a_checkpoint_path_says_what_the_file_really_is(tmp_path) -> None:
    from utils.checkpoints import read_checkpoint_file
    from utils.inference.loading import load_any_checkpoint

    photo = tmp_path / "model.pth"
    photo.write_bytes((IMAGES / f"{labelled_ids(1)[0]}.jpg").read_bytes())
    png = tmp_path / "mask.pth"
    png.write_bytes((MASKS / f"{labelled_ids(1)[0]}.png").read_bytes())
    text = tmp_path / "readme.safetensors"
    text.write_text("download the weights from ...")
    for path, kind in ((photo, "a JPEG image"), (png, "a PNG image"), (text, "a text file")):
        with pytest.raises(UserError, match=f"{path.name}: this is {kind}, not a checkpoint"):
            load_any_checkpoint(path)
    with pytest.raises(UserError, match="a folder, not a checkpoint"):
        read_checkpoint_file(tmp_path)


def test_one_size_rule_for_training_and_evaluation(tmp_path, trained_run) -> None:
    """A 1x1 pair and a 30000x30000 header are left out with their reasons, never counted,
    never fatal unless --strict; the figures equal those without them."""
    from tests.conftest import tiny_config
    from utils.data.pairs import find_pairs, min_image_side
    from utils.evaluation.evaluate import evaluate
    from utils.training.loop import train

    ids = labelled_ids(8)
    img_dir, mask_dir = link_pairs(tmp_path / "data", ids)
    clean = evaluate(trained_run / "best.pth", tmp_path / "clean", split="all",
                     image_dir=str(img_dir), mask_dir=str(mask_dir), overlays=0,
                     progress=False, log=lambda s: None)
    cv2.imwrite(str(img_dir / "90000.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(mask_dir / "90000.png"), np.full((1, 1), 255, np.uint8))
    (img_dir / "90001.png").write_bytes(png_claiming(30_000, 30_000))
    cv2.imwrite(str(mask_dir / "90001.png"), np.zeros((64, 64), np.uint8))
    logged: list[str] = []
    dirty = evaluate(trained_run / "best.pth", tmp_path / "dirty", split="all",
                     image_dir=str(img_dir), mask_dir=str(mask_dir), overlays=0,
                     progress=False, log=logged.append)
    assert dirty["images"] == clean["images"] == 8
    assert dirty["micro"] == clean["micro"]
    said = "\n".join(logged)
    assert "90000.png: 1x1 px is too small to hold a face" in said
    assert "90001.png: 30000x30000 px is too large" in said
    with pytest.raises(UserError, match="--strict"):
        evaluate(trained_run / "best.pth", tmp_path / "strict", split="all",
                 image_dir=str(img_dir), mask_dir=str(mask_dir), overlays=0, strict=True,
                 progress=False, log=lambda s: None)
    # training: the same rule, the same reasons
    report = find_pairs(img_dir, mask_dir, progress=False, min_side=min_image_side(256))
    assert sorted(p.id for p in report.pairs) == ids
    cfg = tiny_config(img_dir, mask_dir, tmp_path / "cp", epochs=1)
    logged.clear()
    summary = train(cfg, progress=False, log=logged.append)
    run = Path(summary["last_checkpoint"]).parent
    trained_on = (run / "train_ids.txt").read_text().split() + \
        (run / "val_ids.txt").read_text().split()
    assert sorted(trained_on) == ids
    assert any("too small to hold a face" in line for line in logged)
    assert any("too large" in line for line in logged)
    cfg = tiny_config(img_dir, mask_dir, tmp_path / "cp2", epochs=1)
    cfg["data"]["strict"] = True
    with pytest.raises(UserError, match="--strict"):
        train(cfg, progress=False, log=lambda s: None)
