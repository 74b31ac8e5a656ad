"""The manual: a short README, a docs/ folder of pages whose links and anchors all resolve,
reference pages generated from the code and current, scripts named in the README that answer
--help, and no page that tells the project's history other than by versions and dates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", REPO / "MODEL_CARD.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every #anchor a page offers: its headings (duplicates numbered as GitHub does) and its
    explicit <a id> marks. Headings inside code blocks are not headings."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    seen: dict[str, int] = {}
    out = set(re.findall(r'<a id="([^"]+)"', text))
    for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = _slug(h)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_the_readme_is_a_front_door_and_the_manual_has_its_pages() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    # the quick start first: the two commands, the test command's block as CI reads it
    assert readme.index("## Quick start") < readme.index("## Entry points")
    assert "<!-- test-command -->\n```bash\nbash .ci/install_browser.sh && python3 -m venv .venv" \
        in readme
    assert "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt && " \
           ".venv/bin/python app.py" in readme
    pages = {p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")}
    for kind in ("getting-started.md", "how-to/", "reference/", "explanation/", "results/"):
        assert any(p.startswith(kind) for p in pages), kind
    assert len(pages) >= 6


def test_every_link_and_anchor_of_the_manual_resolves() -> None:
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address: not checked offline
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such anchor)")
    assert not broken, "\n".join(broken)


def test_no_page_tells_the_history_by_working_session() -> None:
    told = re.compile(r"\bsessions? \d|working session|lent-GPU session|session's script",
                      re.I)
    files = [*PAGES, *(REPO / "configs").glob("*.yaml"), *(REPO / "bench").glob("*.sh"),
             *(REPO / "bench").glob("*.py"), REPO / "config.yaml"]
    found = [f"{f.relative_to(REPO)}:{n}: {line.strip()}" for f in files
             for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
             if told.search(line)]
    assert not found, "\n".join(found)


def test_the_generated_reference_pages_are_current() -> None:
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import make_reference
    finally:
        sys.path.remove(str(REPO / "docs"))
    for path, text in make_reference.pages().items():
        assert path.is_file(), f"{path} missing: run python docs/make_reference.py"
        assert path.read_text(encoding="utf-8") == text, \
            f"{path.relative_to(REPO)} is out of date: run python docs/make_reference.py"
    # and they say what the code does: a flag and a key picked from each source
    flags = (REPO / "docs" / "reference" / "flags.md").read_text(encoding="utf-8")
    assert "| `--frame-model` auto\\|photo\\|FILE | `auto` |" in flags
    config = (REPO / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    assert "| `loss.alpha` | `0.75` |" in config


def _readme_scripts() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"),
                        flags=re.S)
    named = re.findall(r"(?:python3?|\.venv/bin/python) ([\w/]+\.py)", "\n".join(blocks))
    return sorted(set(named))


@pytest.mark.parametrize("script", _readme_scripts())
def test_every_script_a_readme_command_names_answers_help(script: str) -> None:
    assert (REPO / script).is_file(), f"the README runs {script}, which does not exist"
    r = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout and len(r.stdout) > 200
