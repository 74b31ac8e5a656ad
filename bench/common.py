"""What the benchmark scripts share: the repository and the data in ../shared, the labelled
ids, and how figures leave a script (JSON with the machine's facts, written atomically, and a
line naming the file). Scripts end with `run_cli(main)`, as every script of the project does:
a user's mistake is one line and exit code 1."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from utils.errors import UserError, run_cli  # noqa: E402
from utils.io import write_json  # noqa: E402
from utils.runtime import machine_facts  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "ffhq-wrinkle-256"

__all__ = ["DATA", "REPO", "labelled_ids", "run_cli", "save"]


def labelled_ids(data: str | Path = DATA, limit: int | None = None) -> list[str]:
    """The ids of the faces that have a hand-drawn mask, sorted (the first `limit`)."""
    ids = sorted(p.stem for p in (Path(data) / "manual_wrinkle_masks").glob("*.png"))
    if not ids:
        raise UserError(f"{data}: no labelled faces (manual_wrinkle_masks/*.png); the shared/ "
                        "folder beside the repository holds them")
    return ids[:limit] if limit else ids


def save(figures: dict[str, Any], out: str | Path | None) -> None:
    """Write `figures` as JSON to `out` (nothing when None), with the machine's facts (CPU
    model and class, any ISA cap, cores, versions) unless they are already in."""
    if out is None:
        return
    write_json(out, figures if "machine" in figures else {"machine": machine_facts(), **figures})
    print(f"figures written to {out}")
