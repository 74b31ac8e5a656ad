"""The face-parsing BiSeNet: exact checkpoint layout, strict loading, label maps at input size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bisenet import labels as L
from bisenet.model import BiSeNet
from bisenet.parser import FaceParser, weights_hint
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO.parent / "shared" / "compat" / "state_dict_manifests.json"
FACE = REPO.parent / "shared" / "data" / "ffhq-wrinkle-256" / "images256x256" / "00002.jpg"


def _manifest() -> dict[str, list[int]]:
    if not MANIFESTS.is_file():
        pytest.skip(f"compat manifests not found at {MANIFESTS}")
    return json.loads(MANIFESTS.read_text())["zll_bisenet_c19"]


def random_state(manifest: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the manifest's keys: He-scaled random convolutions, neutral BatchNorm."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in manifest.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith(("running_mean", ".bias")):
            state[key] = torch.zeros(shape)
        elif key.endswith("running_var") or len(shape) == 1:
            state[key] = torch.ones(shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cp") / "79999_iter.pth"
    torch.save(random_state(_manifest()), path)
    return path


@pytest.fixture(scope="module")
def parser(weights: Path) -> FaceParser:
    return FaceParser(weights, device="cpu", precision="fp32", batch_size=8)


def test_state_dict_matches_the_published_checkpoint_exactly() -> None:
    manifest = _manifest()
    state = BiSeNet().state_dict()
    assert list(state) == list(manifest)
    assert {k: list(v.shape) for k, v in state.items()} == manifest


def test_forward_returns_main_head_first_at_input_size() -> None:
    model = BiSeNet().eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 96, 64))
    assert isinstance(out, tuple) and len(out) == 3
    assert all(o.shape == (1, 19, 96, 64) for o in out)
    with torch.inference_mode():
        torch.testing.assert_close(model.forward_main(torch.ones(1, 3, 64, 64)),
                                   model(torch.ones(1, 3, 64, 64))[0])


def test_labels_table() -> None:
    assert L.FACE_LABELS == (L.SKIN, L.NOSE) == (1, 10)
    assert len(L.LABEL_NAMES) == L.N_CLASSES == 19
    assert (L.BACKGROUND, L.L_EYE, L.R_EYE, L.MOUTH, L.HAIR, L.HAT) == (0, 4, 5, 11, 17, 18)
    assert L.LABEL_NAMES[L.NOSE] == "nose"
    assert L.parse_labels(["1", "nose", "10"]) == (1, 10)
    with pytest.raises(ValueError, match="unknown label"):
        L.parse_labels(["beard"])
    with pytest.raises(ValueError, match="outside"):
        L.parse_labels(["19"])


@pytest.mark.skipif(not FACE.is_file(), reason=f"real face not found at {FACE}")
def test_parser_label_maps_at_input_size(parser: FaceParser) -> None:
    from utils.data.images import load_image, resize_image

    face = load_image(FACE)  # 256 x 256
    crop = resize_image(face, (512, 512))[100:300, 50:350]  # 300 wide, 200 high
    # Any mode is accepted too: grey, RGBA, 16-bit (one batch, one forward pass).
    grey = face[:, :, 0]
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    maps = parser.parse([face, crop, grey, rgba, grey.astype(np.uint16) * 257])
    assert [m.shape for m in maps] == [(256, 256), (200, 300)] + [(256, 256)] * 3
    for m in maps:
        assert m.dtype == np.uint8 and m.max() <= 18
    np.testing.assert_array_equal(maps[0], parser.parse([FACE])[0])  # a path works alike


def test_strict_loading_rejects_a_wrong_file(tmp_path: Path) -> None:
    state = random_state(_manifest())
    state.pop("conv_out.conv_out.weight")
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(UserError, match="not the face-parsing BiSeNet"):
        FaceParser(bad, device="cpu")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable PyTorch weights file"):
        FaceParser(junk, device="cpu")


def test_missing_weights_say_where_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        FaceParser(tmp_path / "79999_iter.pth")
    msg = str(info.value)
    assert "79999_iter.pth" in msg and "face-parsing.PyTorch" in msg and "Google Drive" in msg
    assert "res/cp/79999_iter.pth" in msg and "--weights" in msg
    assert msg == weights_hint(tmp_path / "79999_iter.pth")


def test_bad_precision_is_a_user_error(weights: Path) -> None:
    with pytest.raises(UserError, match="precision"):
        FaceParser(weights, precision="fp8")


@pytest.mark.skipif(not FACE.is_file(), reason=f"real face not found at {FACE}")
def test_face_parsing_extraction_outputs_and_resume(weights: Path, tmp_path: Path) -> None:
    from PIL import Image

    from bisenet.parser import labels_to_size
    from face_parsing_extraction import extract_face_parsing
    from utils.data.images import load_image

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    face = load_image(FACE)
    Image.fromarray(face).save(photos / "sub" / "00002.png")
    Image.fromarray(face[:200, :240, 0]).save(photos / "grey.png")  # grey, not square
    Image.fromarray(face[:, :, 0].astype(np.uint16) * 257).save(photos / "deep.png")  # 16-bit
    Image.fromarray(np.dstack([face, face[:, :, :1]])).save(photos / "rgba.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (photos / "notes.txt").write_text("not an image")
    labels, masked = tmp_path / "labels", tmp_path / "masked"
    rep = extract_face_parsing(photos, labels, masked, keep=(1, 10), weights=weights,
                               device="cpu", precision="fp32", batch_size=8, progress=False)
    assert sorted(rep.done) == ["00002", "deep", "grey", "rgba"]
    assert [f[0] for f in rep.failed] == [str(photos / "broken.jpg")] and rep.exit_code == 1
    assert any("not images" in n for n in rep.notes)
    for key, size in (("00002", (256, 256)), ("grey", (200, 240))):
        lab = np.load(labels / f"{key}.npy")
        assert lab.shape == (512, 512) and lab.dtype == np.uint8 and lab.max() <= 18
        out = load_image(masked / f"{key}.png")
        assert out.shape[:2] == size
        keep = np.isin(labels_to_size(lab, size), (1, 10))
        assert not out[~keep].any()
    # A rerun skips everything done, and needs no weights for it.
    (photos / "broken.jpg").unlink()
    again = extract_face_parsing(photos, labels, masked, weights=tmp_path / "none.pth",
                                 progress=False)
    assert again.done == [] and len(again.skipped) == 4 and again.exit_code == 0
