"""The visit report: predict.py --report writes one self-contained HTML page per photo whose
table says what wrinkles.csv says, and Chromium prints it on one A4 page."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IMAGES, REPO, labelled_ids, needs_data

pytestmark = needs_data
CHROMIUM = Path("/usr/bin/chromium")


def test_predict_py_report_is_self_contained_matches_the_csv_and_prints_on_a4(
        tmp_path: Path) -> None:
    src = IMAGES / f"{labelled_ids()[3]}.jpg"
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "predict.py", str(src), "--report", "--out", str(out),
                        "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    page = (out / f"{src.stem}_report.html").read_text(encoding="utf-8")
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 2 and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert "http" not in page.replace("https://", "") and "<link" not in page  # nothing fetched
    with (out / "wrinkles.csv").open() as fh:
        (face,) = list(csv.DictReader(fh))
    whole = re.search(r"<tr><td>whole face</td><td>(\d+)</td><td>(\d+)</td>", page)
    assert whole is not None
    assert int(whole.group(1)) == int(face["line_count"])
    assert int(whole.group(2)) == round(float(face["length_mm"]))
    assert "interpupillary distance of 63 mm" in page and "+-6 %" in page
    assert "out-of-fold F1" in page
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed: the print to PDF is not checked")
    pdf = tmp_path / "report.pdf"
    subprocess.run([str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                    (out / f"{src.stem}_report.html").as_uri()], capture_output=True,
                   timeout=120, check=True)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 30_000  # the two pictures are in it
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1  # one face: one A4 page
    box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert box is not None and abs(float(box.group(1)) - 595) < 2  # A4: 595 x 842 pt
    assert abs(float(box.group(2)) - 842) < 2


def test_compare_py_report_and_mm_columns_say_what_the_comparison_says(tmp_path: Path) -> None:
    """Two photos of one real face: comparison.csv carries each photo's lines in mm and their
    change, and report.html (self-contained) shows every region's verdict as the CSV has it."""
    from utils.data.images import load_image
    from utils.faces.photos import make_photo
    from utils.visualize import write_png

    face = load_image(IMAGES / f"{labelled_ids()[5]}.jpg")
    photos = []
    for seed in (1, 2):
        path = tmp_path / f"visit{seed}.png"
        write_png(path, make_photo(face, seed=seed).rgb)
        photos.append(str(path))
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "compare.py", *photos, "--report", "--ipd-mm", "60",
                        "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    with (out / "comparison.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 22  # 11 regions (the whole face first) x 2 photos
    for a, b in zip(rows[::2], rows[1::2], strict=True):
        assert float(b["change_length_mm"]) == pytest.approx(
            float(b["length_mm"]) - float(a["length_mm"]), abs=0.02)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert all(s.startswith("data:image/jpeg;base64,") for s in re.findall(r"src='([^']*)'",
                                                                            page))
    verdicts = re.findall(r"<td>([+-]\d+\.\d+)</td><td>±[\d.]+</td><td>([^<]+)</td>", page)
    assert [v for _, v in verdicts] == [b["verdict"] for b in rows[1::2]]
    assert "measured interpupillary distance of 60 mm" in page

