"""Loss tests: batch-pooled Dice, focal, their combination, masks, dtypes, stability."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losses import DiceFocalLoss, build_loss, focal_loss, soft_dice_loss


def _two_class(z: torch.Tensor) -> torch.Tensor:
    """2-class logits [0, z]: softmax class 1 equals sigmoid(z)."""
    return torch.cat([torch.zeros_like(z), z], dim=1)


def _line_target(n: int = 2, h: int = 32, w: int = 32) -> torch.Tensor:
    """Thin horizontal 'wrinkles' (~3% of pixels), one per image, float (N, 1, H, W)."""
    t = torch.zeros(n, 1, h, w)
    for i in range(n):
        t[i, 0, 8 + 4 * i, 4:28] = 1.0
    return t


def _per_image_dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0):
    """Reference per-image soft Dice loss, for contrast with the batch-pooled version."""
    dims = tuple(range(1, prob.dim()))
    inter = (prob * target).sum(dims)
    dice = (2 * inter + smooth) / (prob.sum(dims) + target.sum(dims) + smooth)
    return 1 - dice


@pytest.mark.parametrize("two_class", [False, True])
def test_perfect_prediction_costs_nearly_nothing(two_class):
    target = _line_target()
    z = torch.where(target > 0, 20.0, -20.0)
    logits = _two_class(z) if two_class else z
    assert soft_dice_loss(logits, target).item() < 1e-6
    assert focal_loss(logits, target).item() < 1e-8
    assert DiceFocalLoss()(logits, target).item() < 1e-6


@pytest.mark.parametrize("two_class", [False, True])
def test_wrong_prediction_costs_a_lot(two_class):
    target = _line_target()
    z = torch.where(target > 0, -20.0, 20.0)
    logits = _two_class(z) if two_class else z
    assert soft_dice_loss(logits, target).item() > 0.99
    assert focal_loss(logits, target).item() > 1.0


def test_target_shapes_and_dtypes_are_equivalent():
    torch.manual_seed(0)
    target = _line_target()
    z = torch.randn_like(target)
    ref = DiceFocalLoss()(z, target)
    for t in (target[:, 0], target.bool(), target[:, 0].long()):
        torch.testing.assert_close(DiceFocalLoss()(z, t), ref)


def test_batch_dice_is_lenient_with_empty_image_false_positive():
    # Image 0: wrinkle predicted perfectly. Image 1: no wrinkle, a 4x4 false-positive blob.
    target = torch.zeros(2, 1, 32, 32)
    target[0, 0, 10, 2:30] = 1.0  # 28 px
    z = torch.where(target > 0, 20.0, -20.0)
    z[1, 0, 5:9, 5:9] = 20.0  # 16 px false positive on the empty face

    batch = soft_dice_loss(z, target).item()
    per_image = _per_image_dice_loss(torch.sigmoid(z), target)
    # Per-image Dice: the empty image alone costs ~16/17 whatever the blob's size.
    assert per_image[0].item() < 1e-6
    assert per_image[1].item() > 0.9
    assert per_image.mean().item() > 0.45
    # Batch-pooled: (2*28 + 1) / (44 + 28 + 1) -> loss ~0.22, well below 1 and the above.
    assert batch == pytest.approx(1 - 57 / 73, abs=1e-4)
    assert batch < 0.5 * per_image.mean().item()


@pytest.mark.parametrize("two_class", [False, True])
def test_all_empty_batch_dice_is_zero_focal_still_penalises(two_class):
    target = torch.zeros(2, 1, 16, 16)
    z = torch.full((2, 1, 16, 16), -20.0)
    z[0, 0, 4:8, 4:8] = 3.0  # false positive
    z.requires_grad_(True)
    logits = _two_class(z) if two_class else z

    dice = soft_dice_loss(logits, target)
    assert dice.item() == 0.0
    assert dice.requires_grad  # still part of the graph: backward() must not fail
    focal = focal_loss(logits, target)
    assert focal.item() > 0.0

    total = DiceFocalLoss()(logits, target)
    total.backward()
    grad = z.grad[:, 0]
    assert torch.isfinite(grad).all()
    # Gradient descent pushes the false-positive logits down, the rest barely moves.
    assert (grad[0, 4:8, 4:8] > 0).all()
    assert grad[0, 4:8, 4:8].min() > 100 * grad[1].abs().max()


def test_sigmoid_and_two_class_heads_agree():
    torch.manual_seed(0)
    z = 3 * torch.randn(3, 1, 20, 24)
    target = (torch.rand(3, 1, 20, 24) < 0.1).float()
    valid = torch.rand(3, 20, 24) > 0.2
    two = _two_class(z)
    torch.testing.assert_close(soft_dice_loss(z, target), soft_dice_loss(two, target))
    torch.testing.assert_close(focal_loss(z, target), focal_loss(two, target))
    torch.testing.assert_close(
        DiceFocalLoss()(z, target, valid), DiceFocalLoss()(two, target, valid)
    )


@pytest.mark.parametrize("two_class", [False, True])
def test_valid_mask_ignores_pixels_outside(two_class):
    torch.manual_seed(0)
    n, h, w = 2, 24, 24
    z = torch.randn(n, 1, h, w)
    target = (torch.rand(n, 1, h, w) < 0.1).float()
    target[:, 0, 10, 6:18] = 1.0
    valid = torch.zeros(n, h, w, dtype=torch.bool)
    valid[:, 4:20, 6:18] = True

    def losses(logit_map, tgt, mask):
        logits = _two_class(logit_map) if two_class else logit_map
        return (
            soft_dice_loss(logits, tgt, mask),
            focal_loss(logits, tgt, mask),
            DiceFocalLoss()(logits, tgt, mask),
        )

    ref = losses(z, target, valid)
    # Garbage outside the valid region: huge logits, NaN, inf, and a random target.
    z_bad = z.clone()
    t_bad = target.clone()
    outside = ~valid.unsqueeze(1)
    z_bad[outside] = 1e4
    z_bad[:, :, 0, 0] = float("nan")
    z_bad[:, :, 1, 1] = float("inf")
    t_bad[outside] = torch.rand(int(outside.sum())).round()
    z_bad.requires_grad_(True)
    got = losses(z_bad, t_bad, valid.unsqueeze(1))  # (N, 1, H, W) mask form
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(a, b)
    # Equal to the loss on the valid crop alone.
    crop = losses(z[:, :, 4:20, 6:18], target[:, :, 4:20, 6:18], None)
    for a, b in zip(ref, crop, strict=True):
        torch.testing.assert_close(a, b)
    # No gradient (and no NaN) reaches the ignored pixels.
    got[2].backward()
    assert torch.isfinite(z_bad.grad).all()
    assert (z_bad.grad[outside] == 0).all()
    assert z_bad.grad[~outside].abs().sum() > 0


def test_empty_valid_mask_gives_zero_not_nan():
    z = torch.randn(1, 1, 8, 8, requires_grad=True)
    target = torch.ones(1, 8, 8)
    loss = DiceFocalLoss()(z, target, torch.zeros(1, 8, 8, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("two_class", [False, True])
def test_bf16_logits_give_float32_loss_close_to_fp32(two_class):
    torch.manual_seed(0)
    z = 2 * torch.randn(2, 1, 32, 32)
    target = _line_target()
    logits = _two_class(z) if two_class else z
    loss_fn = DiceFocalLoss()
    ref = loss_fn(logits, target)
    low = loss_fn(logits.bfloat16(), target)
    assert low.dtype == torch.float32
    assert soft_dice_loss(logits.bfloat16(), target).dtype == torch.float32
    assert focal_loss(logits.bfloat16(), target).dtype == torch.float32
    # Only the bf16 rounding of the logits differs, not the arithmetic.
    torch.testing.assert_close(low, ref, rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(low, loss_fn(logits.bfloat16().float(), target))


def test_focal_without_focusing_is_half_bce():
    torch.manual_seed(0)
    z = 4 * torch.randn(2, 1, 16, 16)
    target = (torch.rand(2, 1, 16, 16) < 0.3).float()
    bce = F.binary_cross_entropy_with_logits(z, target)
    torch.testing.assert_close(focal_loss(z, target, alpha=0.5, gamma=0.0), 0.5 * bce)
    ce = F.cross_entropy(_two_class(z), target[:, 0].long())
    torch.testing.assert_close(focal_loss(_two_class(z), target, alpha=0.5, gamma=0.0), 0.5 * ce)


def test_focal_single_pixel_matches_formula():
    alpha, gamma = 0.75, 2.0
    z, p = 0.4, 1 / (1 + math.exp(-0.4))
    pos = focal_loss(torch.full((1, 1, 1, 1), z), torch.ones(1, 1, 1), alpha=alpha, gamma=gamma)
    neg = focal_loss(torch.full((1, 1, 1, 1), z), torch.zeros(1, 1, 1), alpha=alpha, gamma=gamma)
    assert pos.item() == pytest.approx(-alpha * (1 - p) ** gamma * math.log(p), rel=1e-5)
    assert neg.item() == pytest.approx(-(1 - alpha) * p**gamma * math.log(1 - p), rel=1e-5)


def test_focal_alpha_weights_the_wrinkle_class():
    # Symmetric mistakes: a missed wrinkle pixel vs a false-positive pixel of the same margin.
    miss = focal_loss(torch.full((1, 1, 1, 1), -2.0), torch.ones(1, 1, 1), alpha=0.75)
    false_pos = focal_loss(torch.full((1, 1, 1, 1), 2.0), torch.zeros(1, 1, 1), alpha=0.75)
    assert miss.item() == pytest.approx(3 * false_pos.item(), rel=1e-5)


@pytest.mark.parametrize("two_class", [False, True])
def test_gradients_finite_for_extreme_logits(two_class):
    target = torch.zeros(2, 1, 4, 4)
    target[:, :, :2] = 1.0
    # All four combinations of {right, wrong} x {positive, negative}, at +-1e4.
    sign = torch.ones(2, 1, 4, 4)
    sign[:, :, :, 2:] = -1.0
    z = (1e4 * sign).requires_grad_(True)
    logits = _two_class(z) if two_class else z
    for gamma in (0.0, 0.5, 2.0):
        loss = DiceFocalLoss(gamma=gamma)(logits, target)
        assert torch.isfinite(loss)
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0  # the wrong pixels still receive a signal


def test_invalid_inputs_raise():
    target = torch.zeros(1, 8, 8)
    with pytest.raises(ValueError, match="channels"):
        focal_loss(torch.zeros(1, 3, 8, 8), target)
    with pytest.raises(ValueError, match="shape"):
        soft_dice_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 8, 7))
    with pytest.raises(ValueError, match="alpha"):
        DiceFocalLoss(alpha=1.5)


def test_weights_combine_the_two_terms():
    torch.manual_seed(0)
    z = torch.randn(2, 1, 16, 16)
    target = (torch.rand(2, 1, 16, 16) < 0.1).float()
    dice = soft_dice_loss(z, target, smooth=0.5)
    focal = focal_loss(z, target, alpha=0.6, gamma=1.0)
    combo = DiceFocalLoss(dice_weight=0.3, focal_weight=2.0, alpha=0.6, gamma=1.0, smooth=0.5)
    torch.testing.assert_close(combo(z, target), 0.3 * dice + 2.0 * focal)
    only_focal = DiceFocalLoss(dice_weight=0.0, alpha=0.6, gamma=1.0)
    torch.testing.assert_close(only_focal(z, target), focal)


def test_build_loss_defaults_values_and_unknown_keys():
    default = build_loss({})
    assert isinstance(default, DiceFocalLoss)
    assert (default.dice_weight, default.focal_weight, default.alpha, default.gamma) == (
        1.0,
        1.0,
        0.75,
        2.0,
    )
    custom = build_loss({"alpha": 0.9, "gamma": 1, "focal_weight": 0.5})
    assert (custom.alpha, custom.gamma, custom.focal_weight, custom.smooth) == (0.9, 1.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="gama"):
        build_loss({"gama": 2.0})


# ---------------------------------------------------------------- skeleton recall


def test_skeleton_is_the_centre_line_and_matches_the_region_statistics():
    from losses import skeleton_of
    from tests.conftest import MASKS, labelled_ids
    from utils.data.masks import read_mask, resize_mask
    from utils.faces.regions import skeleton_length

    band = torch.zeros(1, 20, 30)
    band[0, 5:10, 2:28] = 1  # a 5 px wide line
    skel = skeleton_of(band)[0]
    assert skel[7, 6:24].all() and skel[5:10, 6:24].sum() == 18  # one centre row inside
    thin = _line_target(1)[:, 0]
    assert torch.equal(skeleton_of(thin), thin)  # a 1 px line is its own skeleton
    if not MASKS.is_dir():
        pytest.skip("real masks not found")
    for i in labelled_ids(6):  # the loss and utils.faces.regions measure the same centre lines
        m = resize_mask(read_mask(MASKS / f"{i}.png"), (256, 256))
        s = skeleton_of(torch.from_numpy(m)[None])[0] > 0
        assert int(s.sum()) == skeleton_length(m) and not (s.numpy() & ~m).any()


def test_skeleton_recall_counts_lines_by_length_not_width():
    from losses import skeleton_recall_loss

    t = torch.zeros(1, 1, 32, 64)
    t[0, 0, 4:11, 2:30] = 1    # a wide fold: 7 x 28 px
    t[0, 0, 20, 2:62] = 1      # a thin line: 1 x 60 px
    wide_only = torch.where(t[:, :, :16] > 0, 20.0, -20.0)
    wide_only = torch.cat([wide_only, torch.full((1, 1, 16, 64), -20.0)], dim=2)
    thin_only = torch.where((t > 0) & (torch.arange(32)[:, None] >= 16), 20.0, -20.0)
    # Dice prefers the fold (more pixels); skeleton recall prefers the longer line
    assert soft_dice_loss(wide_only, t) < soft_dice_loss(thin_only, t)
    assert skeleton_recall_loss(thin_only, t) < skeleton_recall_loss(wide_only, t)
    perfect = torch.where(t > 0, 20.0, -20.0)
    assert float(skeleton_recall_loss(perfect, t)) == pytest.approx(0.0, abs=1e-6)
    z = torch.zeros(1, 1, 32, 64, requires_grad=True)
    DiceFocalLoss(skeleton_weight=1.0)(z, t).backward()
    assert torch.isfinite(z.grad).all() and z.grad[0, 0, 20, 30] < 0  # pushes the line up
    empty = skeleton_recall_loss(z, torch.zeros_like(t))
    assert float(empty.detach()) == 0.0 and empty.requires_grad
    valid = torch.ones_like(t, dtype=torch.bool)
    valid[0, 0, 16:] = False  # only the fold is valid: the wide-only prediction is perfect
    assert float(skeleton_recall_loss(wide_only, t, valid)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="skeleton_weight"):
        DiceFocalLoss(skeleton_weight=-1)
