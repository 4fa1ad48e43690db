"""Validation of per-slice prompts and their conversion to model inputs (shared by the sessions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..preprocess import ResizeMode, coords_to_model


@dataclass
class SlicePrompt:
    """Prompts of one object on one slice, in source pixels (x = column, y = row)."""

    points: Optional[np.ndarray] = None   # (P, 2)
    labels: Optional[np.ndarray] = None   # (P,) 1 foreground / 0 background
    box: Optional[np.ndarray] = None      # (4,) x0, y0, x1, y1
    mask: Optional[np.ndarray] = None     # (H, W) bool

    def merged_with(self, old: "SlicePrompt") -> "SlicePrompt":
        """These points added to an earlier prompt's box and points."""
        if old is None or old.mask is not None or self.points is None:
            return self
        box = old.box if self.box is None else self.box
        if old.points is None:
            return SlicePrompt(self.points, self.labels, box)
        return SlicePrompt(np.concatenate([old.points, self.points]), np.concatenate([old.labels, self.labels]), box)


def check_prompt(slice_hw: Tuple[int, int], points=None, labels=None, box=None, mask=None) -> SlicePrompt:
    """Validate a prompt for a slice of shape (H, W); clear `ValueError`s for anything wrong."""
    h, w = slice_hw
    p = SlicePrompt()
    if (points is None) != (labels is None):
        raise ValueError("points and labels must be given together")
    if points is not None:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) if np.size(points) else np.zeros((0, 2))
        lab = np.asarray(labels).reshape(-1)
        if len(pts) == 0:
            raise ValueError("points is empty")
        if len(pts) != len(lab):
            raise ValueError(f"{len(pts)} points but {len(lab)} labels")
        if not np.all(np.isfinite(pts)):
            raise ValueError("points contain NaN or inf")
        if not np.isin(lab, (0, 1)).all():
            raise ValueError("labels must be 1 (foreground) or 0 (background)")
        bad = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
        if bad.any():
            raise ValueError(f"point(s) outside the {w}×{h} slice: {pts[bad].tolist()[:3]}")
        p.points, p.labels = pts, lab.astype(np.int32)
    if box is not None:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
        if b.shape != (4,) or not np.all(np.isfinite(b)):
            raise ValueError(f"box must be 4 finite numbers [x0, y0, x1, y1], got {box!r}")
        if b[2] < b[0] or b[3] < b[1]:
            raise ValueError(f"box must have x1 >= x0 and y1 >= y0, got {b.tolist()}")
        if b[2] < 0 or b[0] > w or b[3] < 0 or b[1] > h:
            raise ValueError(f"box {b.tolist()} is wholly outside the {w}×{h} slice")
        p.box = np.clip(b, 0, [w, h, w, h])
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (h, w):
            raise ValueError(f"mask must have the slice shape {(h, w)}, got {m.shape}")
        if p.points is not None or p.box is not None:
            raise ValueError("give a mask prompt alone (not with points or a box)")
        if not m.any():
            raise ValueError("mask prompt is empty (no foreground pixel)")
        p.mask = m.astype(bool)
    if p.points is None and p.box is None and p.mask is None:
        raise ValueError("empty prompt: give points+labels, a box or a mask")
    return p


def prompt_to_inputs(p: SlicePrompt, slice_hw: Tuple[int, int], size: int, mode: ResizeMode,
                     device: torch.device):
    """→ (point_inputs or None, mask_inputs (1, 1, S, S) or None) at model resolution."""
    if p.mask is not None:
        t = torch.as_tensor(p.mask, dtype=torch.float32, device=device)[None, None]
        if tuple(t.shape[-2:]) != (size, size):
            t = (F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
                 >= 0.5).float()
        return None, t
    coords, labs = [], []
    if p.box is not None:
        coords.append(p.box.reshape(2, 2))
        labs.append(np.array([2, 3], np.int32))
    if p.points is not None:
        coords.append(p.points)
        labs.append(p.labels)
    c = coords_to_model(np.concatenate(coords), slice_hw, size, mode)
    return (torch.as_tensor(c, dtype=torch.float32, device=device)[None],
            torch.as_tensor(np.concatenate(labs), dtype=torch.int32, device=device)[None]), None
