"""Multi-orientation propagation (Medical SAM 2 paper): 3 axes × 2 directions, fused per voxel.

The prompt is a 3D box: its extent along the three array axes (a CVPR 2025 box: z-range + the box
on its middle slice). Each run is seeded **from that box**, never from another run's output: along
axis a, the box's middle slice along a is prompted with the box's projection on it, and one session
propagates from there in one direction (forward: towards higher indices, backward: lower). Each voxel
is covered by one direction per axis (the prompted slice by both); the fused probability is the
mean (or median) of the runs that cover it.

Spacing-aware: with ``spacing`` given, every view is resampled to square pixels and fed to the
model with its physical aspect kept (``resize_mode="pad"``, longest side to the model size), so a
coronal view of a 5 mm-slice CT is not squashed; probabilities are resampled back to the voxel grid.

Axes are named ("axial", "coronal", "sagittal"); for a `medmem.io.Volume` the names are resolved
from its direction matrix, for a bare (Z, Y, X) array axial = Z, coronal = Y, sagittal = X.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..model import SAM2Model
from .prompts import keep_within_slices
from .volume import VolumeSession

AXES = ("axial", "coronal", "sagittal")
DIRECTIONS = ("forward", "backward")
Ranges = Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]


@dataclass
class MultiAxisResult:
    """fused (Z, Y, X) probabilities; runs {(axis, direction): (Z, Y, X) probabilities, NaN where not covered}."""

    fused: np.ndarray
    runs: Dict[Tuple[str, str], np.ndarray] = field(default_factory=dict)
    prompts: Dict[Tuple[str, str], dict] = field(default_factory=dict)

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        return self.fused > threshold


def box3d_ranges(z_range: Sequence[int], box: Sequence[float], axis_index: int = 0) -> Tuple[Ranges, int]:
    """A 3D box given along array axis `axis_index` (slices z_range, (x0, y0, x1, y1) in the view's
    columns / rows) → (inclusive index ranges along array axes (0, 1, 2), the box's slice axis)."""
    rest = [i for i in (0, 1, 2) if i != axis_index]
    r: List[Tuple[int, int]] = [(0, 0)] * 3
    r[axis_index] = (int(min(z_range)), int(max(z_range)))
    r[rest[0]] = (int(round(box[1])), int(round(box[3])))
    r[rest[1]] = (int(round(box[0])), int(round(box[2])))
    return (r[0], r[1], r[2]), axis_index


def _array_axis(volume, name) -> int:
    if isinstance(name, (int, np.integer)):
        raise ValueError("name the axes (axial, coronal, sagittal), not array indices")
    if name not in AXES:
        raise ValueError(f"unknown axis {name!r}; choose from {', '.join(AXES)}")
    if hasattr(volume, "slices") and hasattr(volume, "array"):
        from ..io.geometry import array_axis_for

        return array_axis_for(name, volume.direction)
    return AXES.index(name)


def _square_pixels(view: np.ndarray, pix: Tuple[float, float], cap: int) -> Tuple[np.ndarray, Tuple[float, float]]:
    """Resample (S, H, W[, 3]) slices to square pixels of the finer spacing (longest side at most `cap`)."""
    s, h, w = view.shape[:3]
    ph, pw = h * pix[0], w * pix[1]
    p = max(min(pix), max(ph, pw) / max(cap, h, w))
    nh, nw = max(int(round(ph / p)), 1), max(int(round(pw / p)), 1)
    if (nh, nw) == (h, w):
        return view, (1.0, 1.0)
    t = torch.from_numpy(np.ascontiguousarray(view, dtype=np.float32))
    t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t[:, None]
    t = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False)
    t = t.permute(0, 2, 3, 1) if view.ndim == 4 else t[:, 0]
    return t.numpy(), (nh / h, nw / w)


def propagate_multi_axis(model: SAM2Model, volume, ranges: Ranges, *, mid: Optional[Sequence[int]] = None,
                         axes: Sequence[str] = AXES, directions: Sequence[str] = DIRECTIONS,
                         spacing: Optional[Sequence[float]] = None, fuse: str = "mean", policy: str = "fifo",
                         policy_options: Optional[dict] = None, **session_kwargs) -> MultiAxisResult:
    """Segment one object in `volume` (a `medmem.io.Volume` or a (Z, Y, X[, 3]) array) from its 3D box.

    ranges: inclusive index ranges of the box along array axes (0, 1, 2) (see `box3d_ranges`);
    mid: the slice to prompt along each array axis (default: the middle of the range; for a CVPR box
    pass its z_mid); spacing: mm along array axes (default: the Volume's, else none = not spacing-aware).
    """
    if fuse not in ("mean", "median"):
        raise ValueError("fuse must be 'mean' or 'median'")
    if not axes or any(d not in DIRECTIONS for d in directions) or not directions:
        raise ValueError(f"directions must be among {DIRECTIONS}")
    is_vol = hasattr(volume, "slices") and hasattr(volume, "array")
    arr = np.asarray(volume.array if is_vol else volume)
    if arr.ndim not in (3, 4):
        raise ValueError(f"expected a (Z, Y, X) volume, got shape {arr.shape}")
    if spacing is None and is_vol:
        spacing = tuple(volume.spacing_zyx)
    for a, (lo, hi) in enumerate(ranges):
        if not 0 <= lo <= hi < arr.shape[a]:
            raise ValueError(f"box range {lo}..{hi} along array axis {a} is outside 0..{arr.shape[a] - 1}")
    mids = [int(m) for m in mid] if mid is not None else [(lo + hi) // 2 for lo, hi in ranges]
    shape = arr.shape[:3]
    result = MultiAxisResult(np.zeros(shape, np.float32))
    for name in dict.fromkeys(axes):
        a = _array_axis(volume, name)
        rest = [i for i in (0, 1, 2) if i != a]
        view = arr.transpose((a, *rest) + tuple(range(3, arr.ndim)))  # other axes in stored order
        kw = dict(session_kwargs)
        scale = (1.0, 1.0)
        if spacing is not None:
            view, scale = _square_pixels(view, (float(spacing[rest[0]]), float(spacing[rest[1]])), model.image_size)
            kw.setdefault("resize_mode", "pad")
        (r0, r1), (c0, c1) = ranges[rest[0]], ranges[rest[1]]
        box = [c0 * scale[1], r0 * scale[0], (c1 + 1) * scale[1] - 1, (r1 + 1) * scale[0] - 1]
        s = mids[a]
        for d in directions:
            sess = VolumeSession(model, view, policy, policy_options=dict(policy_options or {}), **kw)
            sess.add_prompt(s, 1, box=box)
            covered = [t for t, _ in sess.propagate(d)]
            full = np.full((view.shape[0], shape[rest[0]], shape[rest[1]]), np.nan, np.float32)
            full[covered] = _view_probabilities(sess, covered, (shape[rest[0]], shape[rest[1]]))
            result.runs[(name, d)] = full.transpose(np.argsort((a, *rest)))
            result.prompts[(name, d)] = {"array_axis": a, "slice": s, "box": [round(v, 2) for v in box],
                                         "slices": len(covered)}
    stack = np.stack(list(result.runs.values()))
    with np.errstate(invalid="ignore"), _quiet():
        fused = np.nanmean(stack, 0) if fuse == "mean" else np.nanmedian(stack, 0)
    result.fused = np.nan_to_num(fused, nan=0.0).astype(np.float32)
    return result


class _quiet:
    """Silence numpy's all-NaN-slice warnings (voxels no run covered are 0)."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def _view_probabilities(sess: VolumeSession, slices: Sequence[int], hw: Tuple[int, int]) -> np.ndarray:
    """(len(slices), H, W) probabilities of object 1 on `slices`, resampled to the voxel grid's (H, W)."""
    out = []
    for s in slices:
        lg = sess.logits(1, s).float()
        if tuple(lg.shape) != tuple(hw):
            lg = F.interpolate(lg[None, None], size=hw, mode="bilinear", align_corners=False)[0, 0]
        out.append(torch.sigmoid(lg).cpu().numpy())
    return np.stack(out).astype(np.float32)


def segment_multi_axis(model: SAM2Model, volume, objects: Sequence, *, axes: Sequence[str] = AXES,
                       fuse: str = "mean", policy: str = "fifo", policy_options: Optional[dict] = None,
                       **session_kwargs) -> "Segmentation":
    """Segment `objects` (`medmem.io.ObjectPrompts`, each with one 3D box, `Box3DPrompt`) along several
    axes → a `Segmentation` (labels (Z, Y, X) uint16 in the volume's array order, sliced = labels along
    array axis 0); overlaps go to the more probable object."""
    import time

    from ..io.prompts import Box3DPrompt
    from .pipeline import Segmentation, object_volumes

    t0 = time.perf_counter()

    arr = np.asarray(volume.array if hasattr(volume, "array") else volume)
    best = np.zeros(arr.shape[:3], np.float32)
    labels = np.zeros(arr.shape[:3], np.uint16)
    report = {"model": model.cfg.name, "axes": list(axes), "fuse": fuse, "policy": policy, "objects": []}
    for o in objects:
        boxes = [p for p in o.prompts if isinstance(p, Box3DPrompt)]
        if len(boxes) != 1:
            raise ValueError(f"object {o.id}: multi-orientation needs exactly one 3D box (z-range + box), "
                             f"got {len(o.prompts)} prompt(s)")
        b = boxes[0]
        a = _array_axis(volume, o.axis) if isinstance(o.axis, str) else int(o.axis)
        ranges, _ = box3d_ranges(b.z_range, b.box, a)
        mid = [(lo + hi) // 2 for lo, hi in ranges]
        mid[a] = int(b.slice)
        res = propagate_multi_axis(model, volume, ranges, mid=mid, axes=axes, fuse=fuse, policy=policy,
                                   policy_options=policy_options, **session_kwargs)
        lo, hi = ranges[a]  # as in segment_volume: the object lies within its 3D box's slice range
        res.fused = keep_within_slices(res.fused.copy(), lo, hi, axis=a)
        win = (res.fused > 0.5) & (res.fused > best)
        labels[win] = int(o.id)
        best = np.maximum(best, res.fused)
        report["objects"].append({"id": int(o.id), "name": getattr(o, "name", None),
                                  "runs": {f"{k[0]}:{k[1]}": v for k, v in res.prompts.items()}})
    sizes = object_volumes(labels, getattr(volume, "spacing", (1.0, 1.0, 1.0)), [o.id for o in objects])
    for row in report["objects"]:  # sizes after all objects are placed (a later object may take voxels)
        row.update(sizes[row["id"]])
    report["num_slices"] = int(arr.shape[0])
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return Segmentation(labels, labels, arr, report, None)
