"""Run by tests/test_distributed.py under torchrun: validate a checkpoint on ids, sharded over
the processes, and write rank 0's pooled metrics as JSON (argv: checkpoint, ids file, out)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.utils.data import DataLoader

from utils import distributed
from utils.checkpoints import load_checkpoint, model_from_checkpoint
from utils.data.dataset import WrinkleDataset
from utils.data.pairs import find_pairs
from utils.data.splits import read_ids
from utils.evaluation.validation import validate


def main() -> None:
    ckpt_path, ids_path, out = sys.argv[1:4]
    info = distributed.setup()
    ckpt = load_checkpoint(ckpt_path)
    data = ckpt["config"]["data"]
    pairs = find_pairs(data["image_dir"], data["mask_dir"], ids=read_ids(ids_path),
                       progress=False).pairs
    ds = WrinkleDataset(pairs, ckpt["preprocess"])
    sampler = distributed.UnpaddedDistributedSampler(ds, info.world, info.rank) \
        if info.enabled else None
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    res, metrics = validate(model_from_checkpoint(ckpt), loader, torch.device("cpu"), None,
                            None, 0.5, progress=False)
    rows = metrics.image_rows()
    if info.main:
        res.pop("val_loss", None)
        Path(out).write_text(json.dumps({"metrics": res, "ids": [r["id"] for r in rows],
                                         "world": info.world}))
    distributed.cleanup()


if __name__ == "__main__":
    main()
