"""Validation of per-slice prompts and their conversion to model inputs (shared by the sessions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..preprocess import ResizeMode, coords_to_model
from ..io.prompts import check_box, check_mask, check_points


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
    """Validate a prompt for a slice of shape (H, W) with the one validator (`medmem.io.prompts`:
    inclusive pixel boxes clipped to the slice, points on the image); clear `ValueError`s."""
    p = SlicePrompt()
    if points is not None or labels is not None:
        p.points, p.labels = check_points(points, labels, slice_hw)
    if box is not None:
        p.box = check_box(box, slice_hw)
    if mask is not None:
        if p.points is not None or p.box is not None:
            raise ValueError("give a mask prompt alone (not with points or a box)")
        p.mask = check_mask(mask, slice_hw)
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


def keep_within_slices(arr: np.ndarray, lo: int, hi: int, axis: int = 0, label: Optional[int] = None) -> np.ndarray:
    """`arr` with everything outside slices lo..hi (inclusive) along `axis` cleared, in place and returned.

    The rule of a 3D box prompt (z-range + box): its object lies within the box's slice range.
    With `label`, only voxels equal to it are cleared (a label map with other objects); else all (a
    probability map of one object)."""
    outside = np.ones(arr.shape[axis], bool)
    outside[max(int(lo), 0): int(hi) + 1] = False
    index = (slice(None),) * axis + (outside,)
    if label is None:
        arr[index] = 0
    else:
        part = arr[index]
        part[part == label] = 0
        arr[index] = part
    return arr
