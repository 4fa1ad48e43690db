import math

import pytest
import torch

from medmem.train.losses import (LossWeights, actual_iou, dice_per_mask, focal_per_mask, mask_losses,
                                 sigmoid_focal_loss)


def test_focal_hand_values():
    # logit 0, target 1: p = .5, ce = ln 2, (1 - p_t)^2 = .25, alpha_t = .25
    v = sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0]))
    assert v.item() == pytest.approx(0.25 * 0.25 * math.log(2), rel=1e-6)
    # logit 2, target 0: p = σ(2), ce = ln(1 + e^2), (1 - p_t)^2 = p^2, alpha_t = .75
    p = 1 / (1 + math.exp(-2))
    v = sigmoid_focal_loss(torch.tensor([2.0]), torch.tensor([0.0]))
    assert v.item() == pytest.approx(0.75 * p * p * math.log(1 + math.e ** 2), rel=1e-6)
    # gamma 0 and no alpha: plain BCE
    v = sigmoid_focal_loss(torch.tensor([-1.0]), torch.tensor([1.0]), alpha=-1, gamma=0)
    assert v.item() == pytest.approx(math.log(1 + math.e), rel=1e-6)


def test_focal_per_mask_is_pixel_mean():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = 3.0
    target = torch.zeros(1, 1, 2, 2)
    target[0, 0, 0, 0] = 1
    got = focal_per_mask(logits, target)
    want = sigmoid_focal_loss(logits, target.expand(1, 2, 2, 2)).mean(dim=(-1, -2))
    assert torch.allclose(got, want)
    # mask 0: one positive pixel at p=.5 (.25·.25·ln2) and three negatives at p=.5 (.75·.25·ln2)
    assert got[0, 0].item() == pytest.approx((0.0625 + 3 * 0.1875) * math.log(2) / 4, rel=1e-6)


def test_dice_hand_values():
    target = torch.zeros(1, 1, 2, 2)
    target[0, 0, 0, 0] = 1
    half = torch.zeros(1, 1, 2, 2)                    # p = .5 everywhere: (2·.5 + 1) / (2 + 1 + 1)
    assert dice_per_mask(half, target).item() == pytest.approx(0.5)
    perfect = torch.where(target > 0, 50.0, -50.0)
    assert dice_per_mask(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    empty = torch.full((1, 1, 2, 2), -50.0)             # empty prediction, empty target: smoothed to 0
    assert dice_per_mask(empty, torch.zeros(1, 1, 2, 2)).item() == pytest.approx(0.0, abs=1e-6)


def test_actual_iou():
    target = torch.tensor([[[[1, 1], [0, 0]]]], dtype=torch.float32)
    logits = torch.tensor([[[[1.0, -1.0], [1.0, -1.0]], [[1.0, 1.0], [-1.0, -1.0]]]])  # (1, 2, 2, 2)
    iou = actual_iou(logits, target)
    assert iou.tolist() == [[pytest.approx(1 / 3), 1.0]]
    assert actual_iou(torch.full((1, 1, 2, 2), -1.0), torch.zeros(1, 1, 2, 2)).item() == 0.0


def test_mask_losses_supervises_best_of_multimask():
    torch.manual_seed(0)
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    good = torch.where(target > 0, 8.0, -8.0)[:, 0]
    logits = torch.stack([torch.randn(2, 8, 8), good, -good], dim=1).requires_grad_(True)  # (2, 3, 8, 8)
    ious = torch.full((2, 3), 0.5, requires_grad=True)
    obj = torch.tensor([[3.0], [3.0]], requires_grad=True)
    out = mask_losses(logits, ious, obj, target)
    assert out["best"].tolist() == [1, 1]
    w = LossWeights()
    focal = focal_per_mask(logits, target)
    assert torch.allclose(out["mask"], focal[:, 1])
    # IoU head: L1 to the actual IoU of every mask (supervise_all_iou)
    assert torch.allclose(out["iou"], (ious - actual_iou(logits, target)).abs().mean(-1))
    total = w.mask * out["mask"] + w.dice * out["dice"] + w.iou * out["iou"] + w.cls * out["cls"]
    assert torch.allclose(out["total"], total)
    out["total"].sum().backward()
    g = logits.grad.abs().flatten(2).sum(-1)
    assert (g[:, 0] == 0).all() and (g[:, 2] == 0).all() and (g[:, 1] > 0).all()  # only the best mask
    only_best = mask_losses(logits.detach(), ious.detach(), obj.detach(), target,
                            LossWeights(supervise_all_iou=False))
    assert torch.allclose(only_best["iou"], (0.5 - actual_iou(logits, target)[:, 1]).abs())


def test_absent_object_only_class_loss_and_sentinel():
    target = torch.zeros(1, 1, 4, 4)
    logits = torch.full((1, 1, 4, 4), -1024.0)           # the model's "no object" sentinel
    out = mask_losses(logits, torch.tensor([[0.3]]), torch.tensor([[-2.0]]), target)
    for k in ("mask", "dice", "iou"):
        assert out[k].item() == 0.0
    assert out["cls"].item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)
    # present object predicted absent: the sentinel counts as a confident miss at logit -32, finite
    present = torch.ones(1, 1, 4, 4)
    miss = mask_losses(logits, torch.tensor([[0.3]]), torch.tensor([[-2.0]]), present)
    clamped = mask_losses(torch.full((1, 1, 4, 4), -32.0), torch.tensor([[0.3]]), torch.tensor([[-2.0]]), present)
    assert torch.isfinite(miss["total"]).all()
    assert torch.allclose(miss["total"], clamped["total"])
    assert miss["cls"].item() == pytest.approx(math.log(1 + math.exp(2.0)), rel=1e-6)
