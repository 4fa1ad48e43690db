"""Clicks read through boxes, for decoders trained on boxes only (LiteMedSAM's; `SAM2Config.click_boxes`).

MedSAM and LiteMedSAM were trained with box prompts: given clicks alone their decoder returns an empty mask.
Here a prompt of clicks without a box is answered by decoding a set of candidate boxes around the positive
clicks (sides 16-128 model pixels, square and 2:1 either way; each grown to hold every positive click) on the
same image features, and keeping the box whose mask holds every positive click and no negative one with the
highest predicted IoU (the calibrated head of `medmem_lite_ft_256`); when no candidate qualifies, the highest
predicted IoU of all. The chosen box replaces the clicks (the decoder never saw clicks). Measured in
docs/default_model.md ("Clicks").
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, NEGATIVE, POSITIVE

SIDES = (16, 24, 32, 48, 64, 96, 128)          # model pixels (the input is image_size², 256 for LiteMedSAM)
ASPECTS = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))  # (width, height) factors of a side


def needs_box(labels: torch.Tensor) -> torch.Tensor:
    """(B, P) point labels -> (B,) bool: a positive click and no box corner."""
    has_box = ((labels == BOX_TOP_LEFT) | (labels == BOX_BOTTOM_RIGHT)).any(1)
    return (labels == POSITIVE).any(1) & ~has_box


def candidate_boxes(coords: torch.Tensor, labels: torch.Tensor, size: int) -> torch.Tensor:
    """Candidate boxes (K, 4) [x0, y0, x1, y1] in model pixels for one prompt's clicks (P, 2) / labels (P,):
    centred on the positive clicks' bounding box, each at least as large as that box plus 4 px, clipped
    to the input."""
    pos = coords[labels == POSITIVE]
    lo, hi = pos.min(0).values, pos.max(0).values
    centre, extent = (lo + hi) / 2, hi - lo + 8.0
    out = []
    for side in SIDES:
        for fw, fh in ASPECTS:
            w, h = max(side * fw, float(extent[0])), max(side * fh, float(extent[1]))
            out.append([centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2])
    boxes = torch.tensor(out, dtype=torch.float32, device=coords.device)
    return boxes.clamp(0, size - 1)


def choose_box(masks: torch.Tensor, scores: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
               size: int) -> int:
    """Index of the candidate to keep. masks (K, h, w) logits over the model input, scores (K,) predicted IoU,
    coords (P, 2) model pixels, labels (P,)."""
    k, h, w = masks.shape
    xy = (coords / size * torch.tensor([w, h], device=coords.device)).long()
    xy[:, 0].clamp_(0, w - 1)
    xy[:, 1].clamp_(0, h - 1)
    at = masks[:, xy[:, 1], xy[:, 0]] > 0                       # (K, P): is each click inside each mask
    pos, neg = labels == POSITIVE, labels == NEGATIVE
    ok = at[:, pos].all(1) & ~(at[:, neg].any(1) if neg.any() else torch.zeros(k, dtype=torch.bool, device=at.device))
    s = scores.float().clone()
    if ok.any():
        s[~ok] = -float("inf")
    return int(torch.argmax(s))


def boxes_for_clicks(decode, point_inputs: Optional[Tuple[torch.Tensor, torch.Tensor]], size: int):
    """Replace each click-only prompt in point_inputs (coords (B, P, 2), labels (B, P)) by its chosen box.

    decode(b, boxes (K, 4)) -> (low-res mask logits (K, h, w), predicted IoU (K,)) decodes candidate boxes on
    object b's features. Prompts that hold a box, or no positive click, are returned as given."""
    if point_inputs is None:
        return None
    coords, labels = point_inputs
    todo = needs_box(labels)
    if not bool(todo.any()):
        return point_inputs
    rows_c, rows_l = [], []
    for b in range(coords.shape[0]):
        if not bool(todo[b]):
            rows_c.append(coords[b])
            rows_l.append(labels[b])
            continue
        valid = labels[b] >= 0
        c, lab = coords[b][valid], labels[b][valid]
        boxes = candidate_boxes(c, lab, size)
        masks, scores = decode(b, boxes)
        box = boxes[choose_box(masks, scores, c, lab, size)]
        rows_c.append(box.view(2, 2))
        rows_l.append(torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=labels.dtype, device=labels.device))
    p = max(r.shape[0] for r in rows_c)  # pad rows to one length with not-a-point entries
    cs = torch.stack([torch.cat([r, r.new_zeros(p - r.shape[0], 2)]) for r in rows_c])
    ls = torch.stack([torch.cat([r, r.new_full((p - r.shape[0],), -1)]) for r in rows_l])
    return cs, ls
