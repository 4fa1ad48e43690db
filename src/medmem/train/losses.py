"""SAM 2 training losses: focal + dice on masks, L1 on the predicted IoU, BCE on the object score.

With several output masks (multimask), only the mask with the lowest ``w_mask·focal + w_dice·dice``
is supervised for focal and dice, as SAM 2 does; the IoU head is supervised on all masks
(``supervise_all_iou``) or on that best one. Mask, dice and IoU losses are zero for objects
absent from the target frame: there only the object-score loss applies.

All functions return per-object losses (B,) (or (B, M)); the caller sums over objects and
frames and divides by the number of objects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn.functional as F

#: logits at or below this are the model's "no object" sentinel (-1024); clamped in the loss
NO_OBJ_CLAMP = -32.0


@dataclass(frozen=True)
class LossWeights:
    mask: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    cls: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    supervise_all_iou: bool = True


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss (Lin et al.): BCE × (1 − p_t)^γ × α_t; α < 0 disables α weighting."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma if gamma != 0 else ce
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def focal_per_mask(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25,
                   gamma: float = 2.0) -> torch.Tensor:
    """logits (B, M, H, W), target (B, 1, H, W) in {0, 1} → mean focal loss per mask (B, M)."""
    return sigmoid_focal_loss(logits, target.expand_as(logits), alpha, gamma).flatten(2).mean(-1)


def dice_per_mask(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft dice loss 1 − (2·Σpt + 1) / (Σp + Σt + 1) per mask (B, M), p = sigmoid(logits)."""
    p = torch.sigmoid(logits).flatten(2)
    t = target.expand_as(logits).flatten(2)
    return 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)


def actual_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the binarised masks (logits > 0) with the target, per mask (B, M); 0/0 counts as 0/1 = 0."""
    pred = (logits > 0).flatten(2)
    t = (target > 0.5).expand_as(logits).flatten(2)
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return inter / union.clamp_min(1.0)


def mask_losses(multimasks: torch.Tensor, ious: torch.Tensor, object_score_logits: torch.Tensor,
                target: torch.Tensor, w: LossWeights = LossWeights()) -> Dict[str, torch.Tensor]:
    """Losses of one prediction step for B objects.

    multimasks (B, M, H, W) logits at the target's resolution; ious (B, M) predicted IoU;
    object_score_logits (B, 1); target (B, 1, H, W) in {0, 1}.
    Returns per-object tensors (B,): ``mask`` (focal), ``dice``, ``iou`` (L1), ``cls`` (BCE on
    the object score), ``total`` (weighted sum), and ``best`` (index of the supervised mask).
    """
    x = multimasks.float()
    x = torch.where(x <= NO_OBJ_CLAMP, x.detach().clamp_min(NO_OBJ_CLAMP), x)  # sentinel: no gradient anyway
    target = target.float()
    focal = focal_per_mask(x, target, w.focal_alpha, w.focal_gamma)  # (B, M)
    dice = dice_per_mask(x, target)
    iou_l1 = (ious.float() - actual_iou(x, target)).abs()
    if x.shape[1] > 1:
        best = torch.argmin(w.mask * focal + w.dice * dice, dim=-1)
    else:
        best = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    idx = torch.arange(x.shape[0], device=x.device)
    l_mask, l_dice = focal[idx, best], dice[idx, best]
    l_iou = iou_l1.mean(-1) if w.supervise_all_iou else iou_l1[idx, best]
    present = (target.flatten(1) > 0.5).any(-1).float()  # (B,)
    l_cls = F.binary_cross_entropy_with_logits(object_score_logits.float().reshape(-1), present, reduction="none")
    l_mask, l_dice, l_iou = l_mask * present, l_dice * present, l_iou * present
    total = w.mask * l_mask + w.dice * l_dice + w.iou * l_iou + w.cls * l_cls
    return {"mask": l_mask, "dice": l_dice, "iou": l_iou, "cls": l_cls, "total": total, "best": best}
