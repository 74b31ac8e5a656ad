"""Segmentation losses for thin, rare structures (facial wrinkles).

Supported heads (the number of classes is read from ``logits.shape[1]``):

* 1 logit per pixel (sigmoid): ``logits`` is ``(N, 1, H, W)``.
* 2 classes (softmax): ``logits`` is ``(N, 2, H, W)``; class 1 is "wrinkle".

Targets are ``(N, H, W)`` or ``(N, 1, H, W)`` with values in {0, 1} (float, int or bool), or
soft targets in [0, 1] (a teacher's probabilities: Dice and focal take them as they are, the
skeleton term takes the lines where they are >= 0.5). An optional ``valid`` mask of the same
shape (bool, or numbers where > 0.5 means valid) drops pixels, e.g. outside the face, from
every loss; pixels outside it can hold anything, even NaN, without affecting the value or the
gradient. Everything is computed in float32, whatever
the dtype of the logits (bf16 under autocast loses too much precision in the sums).

Why the soft Dice is computed PER BATCH: wrinkles cover roughly 1% of the pixels and some
faces have no annotated wrinkle at all. For an image with an empty target, per-image Dice is
``smooth / (sum(p) + smooth)``, i.e. a loss close to 1 for any non-zero predicted mass, so a
batch average of per-image Dice is dominated by the empty images and pushes every prediction
towards zero. Pooling intersection and sums over the whole batch (and all pixels) makes a
small false-positive blob on an empty face cost in proportion to its size relative to the
batch's true wrinkles instead.

If the whole batch has no positive pixel, the Dice term is defined as 0 (a zero still attached
to the graph, so ``backward()`` works) and the focal term alone penalises false positives.
This avoids the same degenerate "empty target" behaviour at the batch level.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DiceFocalLoss", "SoftTargetMSE", "build_loss", "focal_loss", "skeleton_of",
           "skeleton_recall_loss", "soft_dice_loss"]


def _as_nhw(x: torch.Tensor, ref_shape: torch.Size, what: str) -> torch.Tensor:
    """Bring a target/mask of shape (N, H, W) or (N, 1, H, W) to (N, H, W)."""
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.shape != ref_shape:
        raise ValueError(
            f"{what} must have shape (N, H, W) or (N, 1, H, W) matching the logits "
            f"{tuple(ref_shape)}, got {tuple(x.shape)}"
        )
    return x


def _log_probs(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Return float32 (log p(wrinkle), log p(background), target, valid), each (N, H, W).

    Invalid pixels get logits 0 and target 0 *before* any computation, so garbage (inf, NaN)
    there cannot leak into the value or the gradient.
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (N, C, H, W), got shape {tuple(logits.shape)}")
    n_classes = logits.shape[1]
    if n_classes not in (1, 2):
        raise ValueError(f"logits must have 1 (sigmoid) or 2 (softmax) channels, got {n_classes}")
    nhw = torch.Size((logits.shape[0], *logits.shape[2:]))
    z = logits.float()
    t = _as_nhw(target, nhw, "target").to(device=z.device, dtype=torch.float32)

    mask: torch.Tensor | None = None
    if valid is not None:
        v = _as_nhw(valid, nhw, "valid").to(z.device)
        mask = v if v.dtype == torch.bool else v > 0.5
        z = torch.where(mask.unsqueeze(1), z, torch.zeros((), dtype=z.dtype, device=z.device))
        t = torch.where(mask, t, torch.zeros((), dtype=t.dtype, device=t.device))

    if n_classes == 1:
        log_pos = F.logsigmoid(z[:, 0])
        log_neg = F.logsigmoid(-z[:, 0])
    else:
        log_p = F.log_softmax(z, dim=1)
        log_pos, log_neg = log_p[:, 1], log_p[:, 0]
    return log_pos, log_neg, t, mask


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Batch-pooled soft Dice loss ``1 - (2I + s) / (P + T + s)`` of the wrinkle class.

    Returns a float32 scalar; 0 (with graph) when the batch has no positive valid pixel.
    See the module docstring for why the sums are pooled over the batch.
    """
    log_pos, _, t, mask = _log_probs(logits, target, valid)
    p = _masked(log_pos.exp(), mask)
    t = _masked(t, mask)
    inter = (p * t).sum()
    pred_sum = p.sum()
    true_sum = t.sum()
    dice = (2.0 * inter + smooth) / (pred_sum + true_sum + smooth)
    # torch.where instead of `if true_sum == 0` keeps it free of a host-device sync.
    return torch.where(true_sum > 0, 1.0 - dice, pred_sum * 0.0)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    alpha: float = 0.75,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Focal loss ``-alpha_t (1 - p_t)^gamma log p_t``, averaged over valid pixels.

    ``alpha`` weights the wrinkle class and ``1 - alpha`` the background, to offset the ~1%
    prevalence; ``gamma`` down-weights the many easy background pixels. Works from log
    probabilities only, so it stays finite for extreme logits. Returns a float32 scalar.
    """
    log_pos, log_neg, t, mask = _log_probs(logits, target, valid)
    log_pt = t * log_pos + (1.0 - t) * log_neg
    if gamma == 0:
        modulating = torch.ones_like(log_pt)
    else:
        # log(1 - p_t) is available exactly (log p of the other class): no 1 - p cancellation,
        # and exp(gamma * log) has a finite gradient even where 1 - p_t underflows to 0.
        log_one_minus_pt = t * log_neg + (1.0 - t) * log_pos
        modulating = torch.exp(gamma * log_one_minus_pt)
    alpha_t = alpha * t + (1.0 - alpha) * (1.0 - t)
    per_pixel = _masked(-alpha_t * modulating * log_pt, mask)
    if mask is None:
        return per_pixel.mean()
    return per_pixel.sum() / mask.sum().clamp_min(1).to(per_pixel.dtype)


def _erode(x: torch.Tensor) -> torch.Tensor:
    """3x3 cross erosion of (N, 1, H, W) maps in [0, 1]; outside the image is background."""
    padded = F.pad(x, (1, 1, 1, 1))
    return -torch.maximum(F.max_pool2d(-padded, (3, 1), stride=1)[:, :, :, 1:-1],
                          F.max_pool2d(-padded, (1, 3), stride=1)[:, :, 1:-1, :])


def _dilate(x: torch.Tensor) -> torch.Tensor:
    """3x3 cross dilation (the erosion's dual), so an opening keeps what fits a cross."""
    return torch.maximum(F.max_pool2d(x, (3, 1), stride=1, padding=(1, 0)),
                         F.max_pool2d(x, (1, 3), stride=1, padding=(0, 1)))


@torch.no_grad()
def skeleton_of(target: torch.Tensor, iterations: int = 8) -> torch.Tensor:
    """Morphological skeleton of binary masks (N, H, W): the union over erosion steps of what an
    opening removes. Lines 1-2 px wide are their own skeleton; a 5 px band keeps its centre line.
    `iterations` bounds the half-width handled (wrinkles at 256 px are a few px wide)."""
    img = target.float()[:, None]
    skel = torch.zeros_like(img)
    for _ in range(iterations):
        eroded = _erode(img)
        skel = torch.maximum(skel, (img - _dilate(eroded)).clamp_min(0))
        if not bool(eroded.any()):
            break
        img = eroded
    return skel[:, 0]


def skeleton_recall_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """1 - the soft recall of the true masks' centre lines, pooled over the batch.

    Dice and focal loss weigh a line by its pixels, so a faint 1 px line counts for little next
    to a wide fold; recall on the skeleton counts every line by its length (the skeleton-recall
    idea for thin structures). 0 (with graph) when the batch has no positive valid pixel.
    """
    log_pos, _, t, mask = _log_probs(logits, target, valid)
    # A soft target (a teacher's probabilities) has its lines where it is at least even odds.
    skel = _masked(skeleton_of(t >= 0.5), mask)
    p = _masked(log_pos.exp(), mask)
    total = skel.sum()
    recall = (p * skel).sum() / total.clamp_min(1e-6)
    return torch.where(total > 0, 1.0 - recall, p.sum() * 0.0)


class DiceFocalLoss(nn.Module):
    """Weighted sum ``dice_weight * Dice + focal_weight * focal + skeleton_weight * skeleton
    recall``.

    Dice optimises overlap directly (robust to the class imbalance); focal gives dense
    per-pixel gradients and is the only term that acts on batches without any wrinkle; the
    optional skeleton-recall term (off by default) counts every true line by its length.
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        focal_weight: float = 1.0,
        alpha: float = 0.75,
        gamma: float = 2.0,
        smooth: float = 1.0,
        skeleton_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if dice_weight < 0 or focal_weight < 0 or dice_weight + focal_weight == 0:
            raise ValueError(
                "dice_weight and focal_weight must be >= 0 and not both 0, got "
                f"{dice_weight}, {focal_weight}"
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        if skeleton_weight < 0:
            raise ValueError(f"skeleton_weight must be >= 0, got {skeleton_weight}")
        self.dice_weight = float(dice_weight)
        self.focal_weight = float(focal_weight)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.smooth = float(smooth)
        self.skeleton_weight = float(skeleton_weight)

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(
                logits, target, valid, smooth=self.smooth
            )
        if self.focal_weight:
            loss = loss + self.focal_weight * focal_loss(
                logits, target, valid, alpha=self.alpha, gamma=self.gamma
            )
        if self.skeleton_weight:
            loss = loss + self.skeleton_weight * skeleton_recall_loss(logits, target, valid)
        return loss

    def extra_repr(self) -> str:
        return (
            f"dice_weight={self.dice_weight}, focal_weight={self.focal_weight}, "
            f"alpha={self.alpha}, gamma={self.gamma}, smooth={self.smooth}, "
            f"skeleton_weight={self.skeleton_weight}"
        )


_LOSS_KEYS = ("dice_weight", "focal_weight", "alpha", "gamma", "smooth", "skeleton_weight")


class SoftTargetMSE(nn.Module):
    """Mean squared error between the wrinkle probability and a soft target in [0, 1].

    For stage 1 of the FFHQ-Wrinkle recipe: the weak labels are texture maps (grey levels, not
    masks), and the paper pretrains on them by regression with MSE. Regressing the probability
    (sigmoid, or softmax class 1) keeps the head the same for stage 2's Dice on manual masks.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits.float()
        if logits.shape[1] == 1:
            p = torch.sigmoid(logits[:, 0])
        elif logits.shape[1] == 2:
            p = torch.softmax(logits, dim=1)[:, 1]
        else:
            raise ValueError(f"expected 1 or 2 output channels, got {logits.shape[1]}")
        t = _as_nhw(target.float(), p.shape, "target")
        err = (p - t) ** 2
        if valid is None:
            return err.mean()
        v = _as_nhw(valid, p.shape, "valid") > 0.5
        return _masked(err, v).sum() / v.sum().clamp(min=1)


def build_loss(cfg: Mapping[str, Any] | None = None) -> nn.Module:
    """Build the loss from a config mapping; missing keys take defaults, unknown keys fail.

    ``name`` is ``dice_focal`` (manual masks) or ``mse`` (soft weak labels, stage 1). Failing on
    unknown keys catches typos (``"gama"``) that would otherwise silently train with the default
    value.
    """
    cfg = dict(cfg or {})
    name = cfg.pop("name", "dice_focal")
    if name == "mse":
        return SoftTargetMSE()
    if name != "dice_focal":
        raise ValueError(f"unknown loss name {name!r}; allowed: dice_focal, mse")
    unknown = sorted(set(cfg) - set(_LOSS_KEYS))
    if unknown:
        raise ValueError(f"unknown loss config keys {unknown}; allowed: {list(_LOSS_KEYS)}")
    return DiceFocalLoss(**{k: float(v) for k, v in cfg.items()})
