"""Atomic file writes: a temporary file in the same folder, then a rename.

A killed process never leaves a half-written checkpoint, CSV or image behind under the final name.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from utils.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates the file for its owner only; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically, indented, keys in insertion order."""
    write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def write_with(path: str | Path, writer: Callable[[Path], Any]) -> None:
    """Call `writer(tmp_path)` and move the result onto `path` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def csv_text(rows: list[dict[str, Any]], fields: list[str], float_format: str | None = None
             ) -> str:
    """CSV text with a header: one line per row, only `fields`, floats as `float_format`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        if float_format:
            row = {k: (format(v, float_format) if isinstance(v, float) else v)
                   for k, v in row.items()}
        writer.writerow(row)
    return buf.getvalue()


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Fail before any work when `path` cannot be (or become) a folder this process writes in.

    Nothing is created: the nearest existing folder on the way is tested with a temporary file,
    which catches a read-only file system and missing permissions alike."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{p}: {flag} is a file, not a folder")
    existing = p
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{p}: {flag} cannot be created: {existing} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        where = "" if existing == p else f" (in {existing})"
        raise UserError(f"{p}: {flag} is not writable{where}: {exc.strerror}") from None
    return p


def check_output_file(path: str | Path, overwrite: bool = False, flag: str = "the output"
                      ) -> Path:
    """Fail before any work when `path` cannot be written as a new file: a folder, an existing
    file (unless `overwrite`), or a place this process cannot write in."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p}: {flag} is a folder, expected a file name")
    if p.exists() and not overwrite:
        raise UserError(f"{p}: {flag} already exists; pass --overwrite to replace it")
    check_output_dir(p.parent, f"the folder of {flag}")
    return p
