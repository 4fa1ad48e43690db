"""A model-free baseline for box prompts: Otsu's threshold inside the box, extruded through the volume.

Every Dice medmem publishes stands beside this one (DEVELOPERS.md): a learned model that loses to a
threshold is not worth shipping. The rule:

1. inside the box on the prompted slice, Otsu's threshold splits the pixels into two classes;
   the object is the class that holds the box centre (the brighter class if the centre is on the edge);
2. on the prompted slice the object is the 8-connected component of that class under the box centre
   (the largest component in the box when the centre pixel is not in the class);
3. in 3D the same threshold and side are applied inside the same box on every slice and the
   26-connected component that contains step 2's pixels is kept.

Boxes are (x0, y0, x1, y1) inclusive pixel indices (the convention of `docs/io.md`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D sample (maximises the between-class variance); the midpoint for a constant."""
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    k = int(np.argmax(between[:-1]))
    return float(edges[k + 1])


def _box_slices(box: Sequence[float], hw) -> tuple:
    """Row and column slices of an inclusive pixel box [x0, y0, x1, y1] (docs/io.md), clipped to (H, W)."""
    x0, y0, x1, y1 = (int(round(c)) for c in box)
    h, w = hw
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(max(x1, x0), w - 1), min(max(y1, y0), h - 1)
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


def _seed_2d(image: np.ndarray, box: Sequence[float]):
    """Threshold, object side and the 2D object (H, W) bool on the prompted slice."""
    img = np.asarray(image, dtype=np.float64)
    ys, xs = _box_slices(box, img.shape)
    inside = img[ys, xs]
    t = otsu_threshold(inside)
    cy, cx = (ys.start + ys.stop - 1) // 2, (xs.start + xs.stop - 1) // 2
    bright = bool(img[cy, cx] > t) if img[cy, cx] != t else True
    cls = np.zeros(img.shape, bool)
    cls[ys, xs] = (inside > t) if bright else (inside <= t)
    lab, n = ndimage.label(cls, structure=np.ones((3, 3)))
    if n == 0:
        return t, bright, cls
    keep = lab[cy, cx]
    if keep == 0:
        keep = 1 + int(np.argmax(ndimage.sum(cls, lab, index=range(1, n + 1))))
    return t, bright, lab == keep


def threshold_box_2d(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Baseline mask (H, W) bool of one image from one box."""
    return _seed_2d(image, box)[2]


def threshold_box_3d(volume: np.ndarray, slice_idx: int, box: Sequence[float]) -> np.ndarray:
    """Baseline mask (S, H, W) bool: the box on slice `slice_idx` extruded through all slices."""
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"expected a volume (S, H, W), got shape {vol.shape}")
    t, bright, seed = _seed_2d(vol[slice_idx], box)
    ys, xs = _box_slices(box, vol.shape[1:])
    cls = np.zeros(vol.shape, bool)
    inside = vol[:, ys, xs]
    cls[:, ys, xs] = (inside > t) if bright else (inside <= t)
    lab, n = ndimage.label(cls, structure=np.ones((3, 3, 3)))
    if not seed.any():
        return np.zeros(vol.shape, bool)
    ids = np.unique(lab[slice_idx][seed])
    ids = ids[ids > 0]
    return np.isin(lab, ids)


__all__ = ["otsu_threshold", "threshold_box_2d", "threshold_box_3d"]
