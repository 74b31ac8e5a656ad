"""The mask rule on every file format, and line-preserving shrinking on real 1024 masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import MASKS, labelled_ids, needs_data
from utils.data.masks import nearest_resize_mask, read_mask, resize_mask
from utils.errors import UserError

TRUTH = np.zeros((32, 32), bool)
TRUTH[10, 3:29] = True
TRUTH[5:25, 20] = True


def _save(tmp_path, name, img):
    path = tmp_path / name
    img.save(path)
    return path


@pytest.mark.parametrize("kind", ["01", "0255", "bg2", "palette", "rgb", "rgba", "16bit", "1bit",
                                  "jpeg_like"])
def test_every_mask_format_reads_the_same(tmp_path, kind):
    t = TRUTH.astype(np.uint8)
    if kind == "01":
        img = Image.fromarray(t)
    elif kind == "0255":
        img = Image.fromarray(t * 255)
    elif kind == "bg2":
        img = Image.fromarray(np.where(TRUTH, 1, 2).astype(np.uint8))
    elif kind == "palette":
        img = Image.fromarray(t).convert("P")
        img.putpalette([10, 20, 30, 250, 0, 0] + [0] * 762)
    elif kind == "rgb":
        img = Image.fromarray(np.stack([t * 255, t * 0, t * 0], axis=2))  # red wrinkles
    elif kind == "rgba":
        img = Image.fromarray(np.stack([t * 255] * 3 + [np.full_like(t, 255)], axis=2))
    elif kind == "16bit":
        img = Image.fromarray((t.astype(np.uint16) * 65535), mode="I;16")
    elif kind == "1bit":
        img = Image.fromarray(TRUTH).convert("1")
    else:  # anti-aliased 0/255 with grey edges
        arr = t * 255
        arr = np.where((arr == 0) & (cv2.dilate(arr, np.ones((3, 3))) > 0), 60, arr)
        img = Image.fromarray(arr.astype(np.uint8))
    path = _save(tmp_path, f"{kind}.png", img)
    assert np.array_equal(read_mask(path), TRUTH), kind


def test_palette_uses_indices_not_colours(tmp_path):
    img = Image.fromarray(TRUTH.astype(np.uint8)).convert("P")
    # Index 0 drawn white and index 1 drawn black: the colours must not matter.
    img.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    assert np.array_equal(read_mask(_save(tmp_path, "p.png", img)), TRUTH)


def test_unreadable_mask_names_the_file(tmp_path):
    bad = tmp_path / "00001.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(UserError, match=r"00001\.png"):
        read_mask(bad)
    with pytest.raises(UserError, match="no such mask"):
        read_mask(tmp_path / "missing.png")


def test_shrinking_keeps_one_pixel_lines():
    mask = np.zeros((1024, 1024), bool)
    rows = [101, 302, 503, 707]  # 1-px lines at every offset modulo 4
    mask[rows, 100:900] = True
    kept = resize_mask(mask, (256, 256))
    lost = nearest_resize_mask(mask, (256, 256))
    assert kept[[r // 4 for r in rows], 100 // 4:900 // 4].all()
    assert lost.sum() < kept.sum() / 2  # nearest drops the lines not on its sampling grid
    # Non-integer factor (1024 -> 300) and enlarging also keep every line.
    assert cv2.connectedComponents(resize_mask(mask, (300, 300)).astype(np.uint8))[0] - 1 == 4
    assert np.array_equal(resize_mask(kept, (1024, 1024))[::4, ::4], kept)


def _components(mask):
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


@needs_data
def test_real_masks_keep_their_lines_when_shrunk_to_256():
    """Count connected wrinkle lines of real 1024 masks before and after shrinking to 256."""
    orig = pooled = nearest = 0
    lost_nearest = lost_pooled = 0
    for i in labelled_ids():
        m = read_mask(MASKS / f"{i}.png")
        assert m.shape == (1024, 1024)
        a, b = resize_mask(m, (256, 256)), nearest_resize_mask(m, (256, 256))
        orig, pooled, nearest = orig + _components(m), pooled + _components(a), \
            nearest + _components(b)
        n, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        for small, counter in ((a, "pooled"), (b, "nearest")):
            up = cv2.resize(small.astype(np.uint8), (1024, 1024),
                            interpolation=cv2.INTER_NEAREST) > 0
            survivors = len(set(np.unique(labels[up & m])) - {0})
            if counter == "pooled":
                lost_pooled += (n - 1) - survivors
            else:
                lost_nearest += (n - 1) - survivors
        # Max-pooling never loses a wrinkle pixel's block; nearest drops about half the area.
        assert a.sum() >= b.sum()
    # Max-pooling keeps every line (measured on the 165 masks: 2942 lines at 1024, 2161 at 256,
    # as lines a few pixels apart merge); nearest loses whole lines (23) and breaks the rest
    # into fragments (6803 pieces).
    assert lost_pooled == 0
    assert 0.65 * orig <= pooled <= orig
    assert lost_nearest > 0
    assert nearest > 1.5 * orig
