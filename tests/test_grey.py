"""Black-and-white photos: the bundled model sees a grey copy of a face as it sees the colour
one, whichever way the grey file was saved (8-bit grey, 16-bit grey, grey as RGB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.conftest import IMAGES, labelled_ids, needs_data
from utils.data.images import load_image

pytestmark = needs_data


@pytest.fixture(scope="module")
def predictor() -> Any:
    from utils.inference.predictor import WrinklePredictor

    return WrinklePredictor()


def _grey_files(rgb: np.ndarray, folder: Path, name: str) -> dict[str, Path]:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    files = {"grey8": folder / f"{name}_l8.png", "grey16": folder / f"{name}_l16.png",
             "grey_rgb": folder / f"{name}_rgb.jpg"}
    cv2.imwrite(str(files["grey8"]), grey)
    cv2.imwrite(str(files["grey16"]), grey.astype(np.uint16) * 257)
    cv2.imwrite(str(files["grey_rgb"]), cv2.merge([grey, grey, grey]),
                [cv2.IMWRITE_JPEG_QUALITY, 95])
    return files


def test_grey_copies_find_about_what_the_colour_face_finds(predictor: Any, tmp_path: Path
                                                           ) -> None:
    shares: dict[str, list[float]] = {"colour": [], "grey8": [], "grey16": [], "grey_rgb": []}
    for i in labelled_ids(16):
        rgb = load_image(IMAGES / f"{i}.jpg")
        shares["colour"].append(predictor.predict(rgb).stats["wrinkle_share"])
        for kind, path in _grey_files(rgb, tmp_path, i).items():
            image = load_image(path)
            assert image.shape == rgb.shape and image.dtype == np.uint8
            shares[kind].append(predictor.predict(image).stats["wrinkle_share"])
    colour = np.mean(shares["colour"])
    assert colour > 0.005  # the faces have wrinkles to find
    for kind in ("grey8", "grey16", "grey_rgb"):
        ratio = np.mean(shares[kind]) / colour
        assert 0.85 <= ratio <= 1.15, f"{kind}: grey share / colour share = {ratio:.3f}"
