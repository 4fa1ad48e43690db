"""Where a mask may lie: inside the prompt box, and near the previous slice's mask (model pixels).

A box prompt says where the object is. SAM 2 does not enforce it, and a model that has learned large
structures (the bundled `medmem_small_256`) answers a small box in a large image with a mask that leaks
far outside it. Models whose config sets `mask_window` > 0 keep their masks inside a window:

- on a slice or image prompted with a box: the box, grown by `mask_window` of its side on each side;
- on a propagated slice: the box of the previous slice's mask, grown the same way (objects move and grow
  little from one slice to the next; this also stops a leak from spreading through the volume).

Logits outside the window are set to `NO_OBJ_SCORE` before the mask is stored in memory. Official SAM 2
configs have `mask_window` = 0 (nothing changes: their outputs equal the official predictor's).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..model import NO_OBJ_SCORE

MIN_GROW_PX = 2.0  # model pixels: a window never hugs a tiny mask closer than this


def grow_box(box: Sequence[float], margin: float, size: int) -> list:
    """[x0, y0, x1, y1] (model pixels, inclusive) grown by `margin` of its side on each side, within the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    gx, gy = max(MIN_GROW_PX, margin * (x1 - x0 + 1)), max(MIN_GROW_PX, margin * (y1 - y0 + 1))
    hi = float(size - 1)
    return [max(x0 - gx, 0.0), max(y0 - gy, 0.0), min(x1 + gx, hi), min(y1 + gy, hi)]


def mask_box(logits: torch.Tensor, size: int) -> Optional[list]:
    """Box [x0, y0, x1, y1] in model pixels (image side `size`) of a mask's logits (…, h, w) > 0; None if empty."""
    ys, xs = torch.nonzero(logits.reshape(logits.shape[-2:]) > 0, as_tuple=True)
    if ys.numel() == 0:
        return None
    scale = size / logits.shape[-1]
    return [float(xs.min()) * scale, float(ys.min()) * scale, float(xs.max() + 1) * scale - 1,
            float(ys.max() + 1) * scale - 1]


def clip_to_window(logits: torch.Tensor, window: Sequence[float], size: int) -> torch.Tensor:
    """Logits (…, h, w) of an image of side `size` with every pixel whose centre lies outside `window`
    ([x0, y0, x1, y1], model pixels, inclusive) set to NO_OBJ_SCORE."""
    h, w = logits.shape[-2:]
    sy, sx = size / h, size / w
    cx = (torch.arange(w, device=logits.device, dtype=torch.float32) + 0.5) * sx - 0.5
    cy = (torch.arange(h, device=logits.device, dtype=torch.float32) + 0.5) * sy - 0.5
    x0, y0, x1, y1 = window
    inside = ((cy >= y0 - 0.5 * sy) & (cy <= y1 + 0.5 * sy))[:, None] & ((cx >= x0 - 0.5 * sx) & (cx <= x1 + 0.5 * sx))[None]
    return torch.where(inside, logits, torch.as_tensor(NO_OBJ_SCORE, dtype=logits.dtype, device=logits.device))


def prompt_windows(point_inputs, margin: float, size: int) -> Optional[list]:
    """Per prompt row, the window of its box (corner labels 2 and 3) grown by `margin`; None when the
    prompts have no box or windows are off (`margin` <= 0). point_inputs: ((B, N, 2) model pixels, (B, N))."""
    if margin <= 0 or point_inputs is None:
        return None
    coords, labels = point_inputs
    out = []
    for c, lab in zip(coords, labels):
        tl, br = c[lab == 2], c[lab == 3]
        if len(tl) == 0 or len(br) == 0:
            return None
        out.append(grow_box([float(tl[0, 0]), float(tl[0, 1]), float(br[0, 0]), float(br[0, 1])], margin, size))
    return out


def clip_heads(heads, window: Sequence[float], size: int) -> None:
    """Clip a `HeadsOutput` (batch 1) to a window, in place: the chosen mask and the multimask candidates."""
    for name in ("low_res_masks", "high_res_masks", "low_res_multimasks", "high_res_multimasks"):
        setattr(heads, name, clip_to_window(getattr(heads, name), window, size))
