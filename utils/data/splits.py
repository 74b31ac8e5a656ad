"""Train/validation/test splits as id lists: seeded, or read from id-list files.

A split is a plain text file with one FFHQ id per line (e.g. the FFHQ-Wrinkle authors' 100 test
ids). Every run saves its own split next to its checkpoints, so evaluation uses exactly the ids
that training held out.
"""

from __future__ import annotations

import random
from pathlib import Path

from utils.errors import UserError
from utils.io import write_text


def read_ids(path: str | Path) -> list[str]:
    """Read an id-list file: one id per line; blank lines and # comments ignored; 0-padded to 5."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: id-list file not found")
    ids = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        stem = Path(line).stem
        if not stem.isdigit():
            raise UserError(f"{path}:{n}: '{line}' is not an FFHQ id (digits)")
        ids.append(normalize_id(stem))
    if not ids:
        raise UserError(f"{path}: the id list is empty")
    return ids


def normalize_id(stem: str) -> str:
    """FFHQ ids are 5 digits with leading zeros; other names are kept as they are."""
    return stem.zfill(5) if stem.isdigit() else stem


def write_ids(path: str | Path, ids: list[str]) -> None:
    """Write an id list (one per line) atomically."""
    write_text(path, "".join(f"{i}\n" for i in ids))


def make_split(ids: list[str], val_fraction: float, seed: int,
               val_ids: list[str] | None = None,
               test_ids: list[str] | None = None,
               test_fraction: float = 0.0) -> dict[str, list[str]]:
    """Split ids into train / val / test.

    Test ids (given, or a seeded `test_fraction` of all ids) are removed first; then either the
    given validation ids or a seeded random `val_fraction` of all ids is taken from the rest (so
    80/10/10 is val_fraction 0.1, test_fraction 0.1). The same ids and seed give the same split.
    """
    available = sorted(set(ids))
    if test_ids is None and test_fraction > 0:
        n_test = max(1, round(len(available) * test_fraction))
        test_ids = random.Random(seed + 1).sample(available, n_test)
    test = sorted(set(test_ids or []) & set(available))
    rest = [i for i in available if i not in set(test)]
    if val_ids is not None:
        val = sorted(set(val_ids) & set(rest))
        if not val:
            raise UserError("none of the validation ids has an image/mask pair")
    else:
        n_val = round(len(available) * val_fraction)
        if val_fraction > 0:
            n_val = max(1, n_val)
        if n_val >= len(rest):
            raise UserError(
                f"val_fraction {val_fraction} leaves no training pairs out of {len(rest)}"
            )
        val = sorted(random.Random(seed).sample(rest, n_val))
    train = [i for i in rest if i not in set(val)]
    if not train:
        raise UserError("the split leaves no training pairs")
    return {"train": train, "val": val, "test": test}


def save_split(split: dict[str, list[str]], folder: str | Path) -> None:
    """Save each part of a split as <part>_ids.txt in `folder`."""
    for part, ids in split.items():
        write_ids(Path(folder) / f"{part}_ids.txt", ids)
