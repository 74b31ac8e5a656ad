"""Model tests: checkpoint compatibility with the published manifests, shapes, factory."""

from __future__ import annotations

import json
import math
import urllib.error
from pathlib import Path

import pytest
import torch

from unet import MODEL_NAMES, ResNetUNet, UNet, build_model, count_parameters
from unet import resnet_unet as resnet_unet_module

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "shared/compat/state_dict_manifests.json"

# Model key in the manifest -> constructor producing it.
MANIFEST_MODELS = {
    "milesial_unet_n4_c2_bilinear": lambda: UNet(4, 2, bilinear=True),
    "milesial_unet_n3_c1_transposed": lambda: UNet(3, 1, bilinear=False),
    "milesial_unet_n3_c2_bilinear": lambda: UNet(3, 2, bilinear=True),
    "seed_resnet50_unet_n3_c1": lambda: ResNetUNet(n_classes=1, n_channels=3),
}

_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """One intra-op thread: on a small shared CPU box, OpenMP contention costs far more."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, list[int]]]:
    if not MANIFEST_PATH.is_file():
        pytest.skip(f"checkpoint manifest not found at {MANIFEST_PATH} (shared/compat missing)")
    return json.loads(MANIFEST_PATH.read_text())


@pytest.fixture(scope="module")
def resnet_unet() -> ResNetUNet:
    torch.manual_seed(0)
    return ResNetUNet().eval()


def _random_state_dict(manifest: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    sd = {}
    for name, shape in manifest.items():
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(7, dtype=torch.long)
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape) + 0.5
        else:
            sd[name] = torch.randn(shape)
    return sd


@pytest.mark.parametrize("key", sorted(MANIFEST_MODELS))
def test_state_dict_matches_manifest(manifests, resnet_unet, key):
    model = resnet_unet if key.startswith("seed_resnet50") else MANIFEST_MODELS[key]()
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    expected = manifests[key]
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, f"missing={missing[:5]} extra={extra[:5]}"
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not wrong, wrong


@pytest.mark.parametrize("key", sorted(MANIFEST_MODELS))
def test_random_manifest_state_dict_loads_strictly(manifests, key):
    # A fresh model: random weights would make the shared fixture's outputs overflow.
    model = MANIFEST_MODELS[key]()
    sd = _random_state_dict(manifests[key])
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # The values really landed in the model (one parameter, one buffer).
    own = model.state_dict()
    first_param = next(k for k in sd if not k.endswith(_BUFFER_SUFFIXES))
    first_buffer = next(k for k in sd if k.endswith("running_var"))
    assert torch.equal(own[first_param], sd[first_param])
    assert torch.equal(own[first_buffer], sd[first_buffer])


def test_official_unet_parameter_count(manifests):
    model = UNet(4, 2, bilinear=True, base_channels=64)
    from_manifest = sum(
        math.prod(shape)
        for name, shape in manifests["milesial_unet_n4_c2_bilinear"].items()
        if not name.endswith(_BUFFER_SUFFIXES)
    )
    # 17.26 M: the count read off the published manifest (buffers excluded).
    assert count_parameters(model) == from_manifest == 17_263_618


def test_count_parameters_trainable_only():
    model = UNet(3, 1, base_channels=8)
    total = count_parameters(model)
    for p in model.inc.parameters():
        p.requires_grad_(False)
    frozen = sum(p.numel() for p in model.inc.parameters())
    assert count_parameters(model, trainable_only=True) == total - frozen
    assert count_parameters(model) == total


@pytest.mark.parametrize("bilinear", [True, False])
@pytest.mark.parametrize("size", [(250, 190), (64, 64), (37, 53)])
def test_unet_output_matches_input_size(bilinear, size):
    torch.manual_seed(0)
    model = UNet(3, 2, bilinear=bilinear, base_channels=8).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 2, *size)
    assert torch.isfinite(out).all()


def test_unet_full_width_odd_size():
    torch.manual_seed(0)
    model = UNet(4, 2, bilinear=True).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 250, 190))
    assert out.shape == (1, 2, 250, 190)


def test_unet_returns_logits_not_probabilities():
    torch.manual_seed(0)
    model = UNet(3, 1, base_channels=8).eval()
    with torch.no_grad():
        model.outc.conv.bias.fill_(5.0)
        out = model(torch.randn(1, 3, 32, 32))
    assert out.max() > 1.0  # a sigmoid/softmax output could not exceed 1


def test_small_base_channels_is_much_smaller():
    small = UNet(3, 1, bilinear=True, base_channels=16)
    full = UNet(3, 1, bilinear=True, base_channels=64)
    assert small.base_channels == 16 and small.bilinear and small.n_classes == 1
    # Conv weights scale with width squared: 4x narrower -> ~16x fewer parameters.
    assert count_parameters(small) * 12 < count_parameters(full)


@pytest.mark.parametrize("size", [(256, 256), (200, 200)])
def test_resnet_unet_output_matches_input_size(resnet_unet, size):
    with torch.no_grad():
        out = resnet_unet(torch.randn(1, 3, *size))
    assert out.shape == (1, 1, *size)
    assert torch.isfinite(out).all()


def test_resnet_unet_padding_is_a_crop_of_the_aligned_case(resnet_unet):
    # For a size that needs padding, the central crop of a manually padded run is identical.
    x = torch.randn(1, 3, 60, 64)
    with torch.no_grad():
        out = resnet_unet(x)
        padded = resnet_unet(torch.nn.functional.pad(x, [0, 0, 2, 2], mode="replicate"))
    torch.testing.assert_close(out, padded[..., 2:62, :])


def test_resnet_unet_other_channel_count():
    model = ResNetUNet(n_classes=2, n_channels=4, dropout=0.0).eval()
    assert model.input_layer[0].weight.shape == (64, 4, 7, 7)
    with torch.no_grad():
        out = model(torch.randn(1, 4, 64, 64))
    assert out.shape == (1, 2, 64, 64)


def test_resnet_unet_dropout_only_after_the_six_manifest_layers(resnet_unet):
    seq = resnet_unet.up4.conv.double_conv
    assert len(seq) == 7
    assert isinstance(seq[6], torch.nn.Dropout2d) and seq[6].p == pytest.approx(0.1)
    assert len(ResNetUNet(dropout=0.0).up4.conv.double_conv) == 6


def test_imagenet_weights_error_names_file_and_folder(monkeypatch, tmp_path):
    # Offline: the hub cache is an empty temp dir and any download attempt fails at once.
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(RuntimeError) as info:
        resnet_unet_module._imagenet_resnet50_state_dict()
    msg = str(info.value)
    assert "resnet50-11ad3fa6.pth" in msg
    assert str(tmp_path / "checkpoints") in msg


def test_build_model_by_name():
    unet = build_model("unet", n_channels=4, n_classes=2, base_channels=8, bilinear=False)
    assert isinstance(unet, UNet)
    assert (unet.n_channels, unet.n_classes, unet.base_channels, unet.bilinear) == (4, 2, 8, False)
    assert set(MODEL_NAMES) == {"unet", "resnet50_unet"}


def test_build_model_resnet_rejects_base_channels():
    with pytest.raises(ValueError, match="base_channels"):
        build_model("resnet50_unet", base_channels=32)


def test_build_model_unet_rejects_pretrained_encoder():
    with pytest.raises(ValueError, match="pretrained"):
        build_model("unet", pretrained_encoder=True)


@pytest.mark.parametrize(
    ("name", "nearest"), [("resnet50unet", "resnet50_unet"), ("Unet", "unet"), ("unte", "unet")]
)
def test_build_model_unknown_name_suggests_nearest(name, nearest):
    with pytest.raises(ValueError) as info:
        build_model(name)
    msg = str(info.value)
    assert f"did you mean {nearest!r}" in msg
    assert "unet" in msg and "resnet50_unet" in msg
