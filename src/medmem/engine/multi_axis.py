"""Multi-orientation propagation (Medical SAM 2 paper): segment along 2 or 3 axes, both directions,
and fuse the per-voxel probabilities.

The user prompts one slice along one axis. That axis is propagated first; along every other axis
the slice where the first result is largest is prompted with that result's mask, and propagated
both ways. The fused probability is the mean (or the median) of the per-axis probabilities.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from ..model import SAM2Model
from .volume import VolumeSession


def _probabilities(session: VolumeSession, obj_id: int) -> np.ndarray:
    """(S, H, W) float32 probabilities in the session's slicing order."""
    out = np.zeros((session.num_slices, *session.slice_hw), np.float32)
    for s in range(session.num_slices):
        lg = session.logits(obj_id, s)
        if lg is not None:
            out[s] = torch.sigmoid(lg.float()).cpu().numpy()
    return out


def propagate_multi_axis(model: SAM2Model, volume: np.ndarray, slice_idx: int, *, axis: int = 0,
                         axes: Sequence[int] = (0, 1, 2), fuse: str = "mean", points=None, labels=None, box=None,
                         mask=None, **session_kwargs) -> Tuple[np.ndarray, Dict[int, np.ndarray]]:
    """Fused probability map (Z, Y, X) and the per-axis maps, for one object prompted on
    `slice_idx` along array axis `axis` of `volume` (Z, Y, X) or (Z, Y, X, 3)."""
    if fuse not in ("mean", "median"):
        raise ValueError("fuse must be 'mean' or 'median'")
    axes = list(dict.fromkeys([axis] + [a for a in axes if a != axis]))
    if len(axes) < 2 or any(a not in (0, 1, 2) for a in axes):
        raise ValueError("axes must name at least two of the array axes 0, 1, 2")
    arr = np.asarray(volume)
    per_axis: Dict[int, np.ndarray] = {}

    def moved(a):
        return np.moveaxis(arr, a, 0)

    first = VolumeSession(model, moved(axis), **session_kwargs)
    first.add_prompt(slice_idx, 1, points=points, labels=labels, box=box, mask=mask)
    for _ in first.propagate("both"):
        pass
    per_axis[axis] = np.moveaxis(_probabilities(first, 1), 0, axis)
    seed = per_axis[axis] > 0.5
    for a in axes[1:]:
        seed_a = np.moveaxis(seed, a, 0)
        areas = seed_a.reshape(seed_a.shape[0], -1).sum(1)
        if areas.max() == 0:  # nothing found along the first axis: nothing to seed the others with
            per_axis[a] = np.zeros(arr.shape[:3], np.float32)
            continue
        s = int(np.argmax(areas))
        sess = VolumeSession(model, moved(a), **session_kwargs)
        sess.add_prompt(s, 1, mask=seed_a[s])
        for _ in sess.propagate("both"):
            pass
        per_axis[a] = np.moveaxis(_probabilities(sess, 1), 0, a)
    stack = np.stack([per_axis[a] for a in axes])
    fused = stack.mean(0) if fuse == "mean" else np.median(stack, 0)
    return fused.astype(np.float32), per_axis
