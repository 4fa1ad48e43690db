"""Clicks read through boxes, for decoders trained on boxes only (LiteMedSAM's; `SAM2Config.click_boxes`).

MedSAM and LiteMedSAM were trained with box prompts: given clicks their decoder returns an empty mask (clicks
alone) or ignores them (clicks with a box), and it never saw mask prompts. Here every prompt that holds clicks is
answered with a box chosen on the same image features: candidate boxes are decoded; among those whose mask
satisfies the most clicks (positive inside, negative outside) the one kept is, for a prompt with a prior box, the
one whose mask is closest to the prior's mask (a correction changes as little as it can; a cut that would keep
less than half of that mask is not made), and otherwise the one with the highest predicted IoU (the calibrated
head of `medmem_lite_ft_256`). The candidates:

- clicks alone, nothing known of the object: boxes around the positive clicks (sides 16-128 model pixels, square
  and 2:1 both ways, each grown to hold every positive click);
- clicks with a prior box (the prompt's own box, or, for a correction on a tracked slice, the box of the mask
  there): that box, grown to hold the positive clicks, and for each negative click inside it the box cut back on
  one of its four sides to leave out the part of the mask under the click (the run of mask pixels through the
  click along the row or column; the click itself where the mask misses it), every combination for up to 3
  negative clicks, so a correction moves the box as a user would redraw it.
Measured in docs/default_model.md ("Clicks").
"""
from __future__ import annotations

from itertools import product
from typing import Callable, List, Optional, Tuple

import torch

from .prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, NEGATIVE, POSITIVE

SIDES = (16, 24, 32, 48, 64, 96, 128)          # model pixels (the input is image_size², 256 for LiteMedSAM)
ASPECTS = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))  # (width, height) factors of a side
MARGIN = 4.0                                    # model pixels kept between a box side and a click
MAX_CUT_CLICKS = 3                              # negative clicks whose side cuts are combined (4 ** 3 boxes)
MIN_KEPT = 0.5                                  # a correction keeps at least this Dice with the mask it corrects

Decode = Callable[[int, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


def has_clicks(labels: torch.Tensor) -> torch.Tensor:
    """(B, P) point labels -> (B,) bool: the prompt holds a click (positive or negative)."""
    return ((labels == POSITIVE) | (labels == NEGATIVE)).any(1)


def split_prompt(coords: torch.Tensor, labels: torch.Tensor):
    """One prompt's (P, 2) coords / (P,) labels -> (its box (4,) or None, click coords (K, 2), click labels (K,))."""
    tl, br = labels == BOX_TOP_LEFT, labels == BOX_BOTTOM_RIGHT
    box = torch.cat([coords[tl][0], coords[br][0]]) if bool(tl.any()) and bool(br.any()) else None
    clicks = (labels == POSITIVE) | (labels == NEGATIVE)
    return box, coords[clicks], labels[clicks]


def mask_box(logits: torch.Tensor, size: int) -> Optional[torch.Tensor]:
    """Box (4,) in model pixels of a mask's positive logits (h, w) over the model input, or None if empty."""
    ys, xs = torch.nonzero(logits > 0, as_tuple=True)
    if ys.numel() == 0:
        return None
    h, w = logits.shape
    sx, sy = size / w, size / h
    return torch.stack([xs.min() * sx, ys.min() * sy, (xs.max() + 1) * sx - 1, (ys.max() + 1) * sy - 1]).float()


def candidate_boxes(coords: torch.Tensor, labels: torch.Tensor, size: int) -> torch.Tensor:
    """Candidate boxes (K, 4) [x0, y0, x1, y1] in model pixels for clicks (P, 2) / labels (P,) with no prior box:
    centred on the positive clicks' bounding box, each at least as large as that box plus MARGIN on every side,
    clipped to the input."""
    pos = coords[labels == POSITIVE]
    lo, hi = pos.min(0).values, pos.max(0).values
    centre, extent = (lo + hi) / 2, hi - lo + 2 * MARGIN
    out = []
    for side in SIDES:
        for fw, fh in ASPECTS:
            w, h = max(side * fw, float(extent[0])), max(side * fh, float(extent[1]))
            out.append([centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2])
    return torch.tensor(out, dtype=torch.float32, device=coords.device).clamp(0, size - 1)


def _run(line: torch.Tensor, i: int) -> Tuple[int, int]:
    """The run of True in a 1D bool tensor through index i (i, i when line[i] is False)."""
    if not bool(line[i]):
        return i, i
    lo, hi = i, i
    while lo > 0 and bool(line[lo - 1]):
        lo -= 1
    while hi < line.numel() - 1 and bool(line[hi + 1]):
        hi += 1
    return lo, hi


def adjusted_boxes(box: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor, size: int,
                   mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Candidate boxes (K, 4) from a prior box (4,): the box grown to hold every positive click, then, for each of
    the first MAX_CUT_CLICKS negative clicks inside it, one of its four sides cut back past the click, or, with the
    prior's mask (h, w logits over the model input), past the run of mask pixels through the click along its row
    (left/right cuts) or column (top/bottom cuts); all combinations. The grown box itself comes first. Clipped to
    the input."""
    b = box.float().clone()
    pos = coords[labels == POSITIVE]
    if pos.numel():
        b[:2] = torch.minimum(b[:2], pos.min(0).values - MARGIN)
        b[2:] = torch.maximum(b[2:], pos.max(0).values + MARGIN)
    out: List[torch.Tensor] = [b]
    negs = [c for c in coords[labels == NEGATIVE] if b[0] <= c[0] <= b[2] and b[1] <= c[1] <= b[3]][:MAX_CUT_CLICKS]
    spans = []  # per negative click: (x0, x1, y0, y1) in model pixels of what its cuts must leave out
    for x, y in negs:
        if mask is None:
            spans.append((float(x), float(x), float(y), float(y)))
            continue
        h, w = mask.shape
        i, j = min(int(y / size * h), h - 1), min(int(x / size * w), w - 1)
        (c0, c1), (r0, r1) = _run(mask[i] > 0, j), _run(mask[:, j] > 0, i)
        sx, sy = size / w, size / h
        spans.append((min(float(x), c0 * sx), max(float(x), (c1 + 1) * sx - 1),
                      min(float(y), r0 * sy), max(float(y), (r1 + 1) * sy - 1)))
    for cuts in (product(range(4), repeat=len(spans)) if spans else ()):
        c = b.clone()
        for side, (x0, x1, y0, y1) in zip(cuts, spans):
            if side == 0:
                c[0] = torch.maximum(c[0], torch.tensor(x1 + MARGIN))
            elif side == 1:
                c[2] = torch.minimum(c[2], torch.tensor(x0 - MARGIN))
            elif side == 2:
                c[1] = torch.maximum(c[1], torch.tensor(y1 + MARGIN))
            else:
                c[3] = torch.minimum(c[3], torch.tensor(y0 - MARGIN))
        if c[2] - c[0] >= 2 and c[3] - c[1] >= 2:  # a cut that leaves no box is not a candidate
            out.append(c)
    return torch.stack(out).clamp(0, size - 1)


def choose_box(masks: torch.Tensor, scores: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
               size: int, reference: Optional[torch.Tensor] = None) -> int:
    """Index of the candidate to keep: among those whose mask satisfies the most clicks (positive inside, negative
    outside), the one closest to `reference` (the prior's mask, (h, w) logits: a correction changes as little as
    it can; Dice), or candidate 0 (the prior box grown to the positive clicks) when that one would keep less than
    MIN_KEPT of the reference; without a reference, the highest predicted IoU. masks (K, h, w) logits over the
    model input, scores (K,), coords (P, 2) model pixels, labels (P,)."""
    k, h, w = masks.shape
    xy = (coords / size * torch.tensor([w, h], device=coords.device)).long()
    xy[:, 0].clamp_(0, w - 1)
    xy[:, 1].clamp_(0, h - 1)
    inside = masks[:, xy[:, 1], xy[:, 0]] > 0                       # (K, P): is each click inside each mask
    ok = torch.where((labels == POSITIVE)[None], inside, ~inside)   # (K, P): is each click satisfied
    n = ok.sum(1)
    if reference is not None and bool((reference > 0).any()):
        r, m = (reference > 0).flatten().float(), (masks > 0).flatten(1).float()
        s = 2 * (m @ r) / (m.sum(1) + r.sum()).clamp(min=1)
        s[n < n.max()] = -float("inf")
        best = int(torch.argmax(s))
        return best if float(s[best]) >= MIN_KEPT else 0  # a cut that loses most of the mask: the box stays
    s = scores.float().clone()
    s[n < n.max()] = -float("inf")
    return int(torch.argmax(s))


def boxes_for_clicks(decode: Decode, point_inputs: Optional[Tuple[torch.Tensor, torch.Tensor]], size: int,
                     prior: Optional[torch.Tensor] = None):
    """Replace each prompt of point_inputs (coords (B, P, 2), labels (B, P)) that holds clicks by its chosen box.

    decode(b, boxes (K, 4)) -> (mask logits (K, h, w) over the model input, predicted IoU (K,)) decodes candidate
    boxes on object b's features. prior: (B, 1, h, w) mask logits (a tracked slice's mask, for corrections), whose
    box is the prior of a click-only prompt; None or an empty mask: no prior. Prompts without clicks, and
    click-only prompts with only negative clicks and no prior, are returned as given."""
    if point_inputs is None:
        return None
    coords, labels = point_inputs
    todo = has_clicks(labels)
    if not bool(todo.any()):
        return point_inputs
    rows_c, rows_l = [], []
    for b in range(coords.shape[0]):
        box, c, lab = split_prompt(coords[b], labels[b])
        if box is None and prior is not None:
            box = mask_box(prior[min(b, prior.shape[0] - 1), 0], size)
        if not bool(todo[b]) or (box is None and not bool((lab == POSITIVE).any())):
            rows_c.append(coords[b])
            rows_l.append(labels[b])
            continue
        m = None
        if box is None:
            cands = candidate_boxes(c, lab, size)
        else:
            m = None if prior is None else prior[min(b, prior.shape[0] - 1), 0]
            if m is None or not bool((m > 0).any()):  # what the box alone gives: the mask to cut and to keep close to
                m = decode(b, box.view(1, 4))[0][0]
            cands = adjusted_boxes(box, c, lab, size, m)
        masks, scores = decode(b, cands)
        rows_c.append(cands[choose_box(masks, scores, c, lab, size, m)].view(2, 2))
        rows_l.append(torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=labels.dtype, device=labels.device))
    p = max(r.shape[0] for r in rows_c)  # pad rows to one length with not-a-point entries
    cs = torch.stack([torch.cat([r, r.new_zeros(p - r.shape[0], 2)]) for r in rows_c])
    ls = torch.stack([torch.cat([r, r.new_full((p - r.shape[0],), -1)]) for r in rows_l])
    return cs, ls
