"""A model over a data loader: the loss and the shared metric collection, every image counted.

Training's per-epoch validation, evaluate.py and cross-validation all call `validate`, so what is
measured while training is what evaluation reports.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils import distributed
from utils.data.dataset import batch_to_device
from utils.data.pairs import upsampling_factor
from utils.evaluation.metrics import SegmentationMetrics
from utils.runtime import autocast, logits_to_probs


@torch.no_grad()
def validate(model: torch.nn.Module, loader: DataLoader, device: torch.device,
             dtype: torch.dtype | None, criterion: torch.nn.Module | None, threshold: float,
             bins: int = 200, channels_last: bool = True, progress: bool = True,
             desc: str = "validate", curve: bool = False,
             on_batch: Callable[[dict[str, Any], torch.Tensor, torch.Tensor], None] | None = None
             ) -> tuple[dict[str, Any], SegmentationMetrics]:
    """Run a model over a loader: loss and the shared metric collection (every image counted).

    A model on upsampled faces is scored at the images' own size: its probabilities and masks
    are max-pooled back (utils.data.pairs.upsampling_factor; the factor is out["pool"]).
    on_batch gets each batch with the probabilities and masks as scored."""
    data = loader.dataset
    pool = upsampling_factor(data.recipe.get("image_size"), data.pairs)
    model.eval()
    metrics = SegmentationMetrics(threshold=threshold, bins=bins, curve=curve, device=device)
    loss_sum = torch.zeros((), device=device)
    n = 0
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress, file=sys.stderr):
        x, y = batch_to_device(batch, loader.dataset.recipe, device, channels_last)
        with autocast(device, dtype):
            logits = model(x)
        if criterion is not None:
            loss_sum += criterion(logits.float(), y) * x.shape[0]
        probs, target = logits_to_probs(logits), y[:, 0]
        if pool > 1:  # a block is wrinkle if any of its pixels is: the masks' own rule
            probs, target = (torch.nn.functional.max_pool2d(t[:, None].float(), pool)[:, 0]
                             for t in (probs, target))
        metrics.update(probs, target, list(batch["id"]))
        if on_batch is not None:
            on_batch(batch, probs, target)
        n += x.shape[0]
    out = metrics.compute()  # torchmetrics sums the states over ranks first
    out["pool"] = pool
    totals = distributed.sum_across(torch.stack([loss_sum.float(),
                                                 torch.tensor(float(n), device=device)]))
    out["val_loss"] = float(totals[0] / totals[1].clamp(min=1)) if criterion is not None \
        else float("nan")
    return out, metrics
