"""Simulated prompts from ground-truth masks (numpy/scipy only).

Conventions
-----------
- Masks are boolean-like arrays in array-axis order: 2D (H, W) = (row, column),
  3D (D, H, W) = (slice, row, column).
- Points are returned as (x, y) = (column, row) in 2D and (x, y, z) =
  (column, row, slice) in 3D, integer pixel indices (the pixel centre), as SAM 2's
  ``point_coords``.
- Boxes are ``(x_min, y_min, x_max, y_max)`` with *inclusive* pixel indices
  (the tight box of a mask has ``x_max = last foreground column``).
- Randomness only through an explicit ``numpy.random.Generator`` (or an int seed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Literal, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

@dataclass(frozen=True)
class Click:
    """A simulated click: ``point`` in (x, y[, z]) order, ``positive`` True for foreground."""

    point: Tuple[int, ...]
    positive: bool

    @property
    def label(self) -> int:
        """SAM point label: 1 positive, 0 negative."""
        return int(self.positive)


@dataclass(frozen=True)
class Box3D:
    """CVPR 2025 3D box: z-range of the object and the 2D box on its middle slice.

    Field names follow the challenge's ``boxes`` dict (inclusive indices).
    """

    z_min: int
    z_max: int
    z_mid: int
    z_mid_x_min: int
    z_mid_y_min: int
    z_mid_x_max: int
    z_mid_y_max: int

    def as_dict(self) -> Dict[str, int]:
        return {k: int(getattr(self, k)) for k in self.__dataclass_fields__}

    @property
    def box_2d(self) -> Tuple[int, int, int, int]:
        return (self.z_mid_x_min, self.z_mid_y_min, self.z_mid_x_max, self.z_mid_y_max)


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _binary(mask, name: str = "mask", ndim: Sequence[int] = (2,)) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim not in ndim:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name} must be numeric or boolean, got {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf")
        u = np.unique(arr)
        if not np.all(np.isin(u, (0, 1))):
            raise ValueError(f"{name} must be binary (0/1 or bool), found values {u[:6].tolist()}")
        arr = arr.astype(bool)
    return arr


# ----------------------------------------------------------------------------- boxes
def mask_to_box(mask) -> Tuple[int, int, int, int]:
    """Tight box ``(x_min, y_min, x_max, y_max)`` (inclusive) of a non-empty 2D mask."""
    m = _binary(mask)
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        raise ValueError("cannot make a box from an empty mask")
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def jitter_box(
    box: Sequence[int],
    image_hw: Sequence[int],
    max_shift: float = 0.1,
    rng=None,
) -> Tuple[int, int, int, int]:
    """Shift each side of an inclusive box independently by a random integer.

    Each x side moves by ``U{-m_x, …, m_x}`` with ``m_x = floor(max_shift * width)``
    (width = x_max - x_min + 1), each y side likewise with the height; the result is
    clipped to the image ``[0, W-1] x [0, H-1]`` and kept non-degenerate
    (x_min <= x_max, y_min <= y_max).
    """
    if not (0.0 <= max_shift) or not np.isfinite(max_shift):
        raise ValueError(f"max_shift must be a finite fraction >= 0, got {max_shift}")
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = int(image_hw[0]), int(image_hw[1])
    if not (0 <= x0 <= x1 < w and 0 <= y0 <= y1 < h):
        raise ValueError(f"box {tuple(box)} is not inside an image of (H, W) = {(h, w)}")
    g = _rng(rng)
    mx = int(np.floor(max_shift * (x1 - x0 + 1)))
    my = int(np.floor(max_shift * (y1 - y0 + 1)))
    dx = g.integers(-mx, mx + 1, size=2)
    dy = g.integers(-my, my + 1, size=2)
    nx0, nx1 = int(np.clip(x0 + dx[0], 0, w - 1)), int(np.clip(x1 + dx[1], 0, w - 1))
    ny0, ny1 = int(np.clip(y0 + dy[0], 0, h - 1)), int(np.clip(y1 + dy[1], 0, h - 1))
    if nx0 > nx1:
        nx0 = nx1 = (nx0 + nx1) // 2
    if ny0 > ny1:
        ny0 = ny1 = (ny0 + ny1) // 2
    return nx0, ny0, nx1, ny1


def simulate_box(mask, max_shift: float = 0.0, rng=None) -> Tuple[int, int, int, int]:
    """Box prompt for a 2D mask: the tight box, jittered by `jitter_box` if ``max_shift > 0``."""
    m = _binary(mask)
    box = mask_to_box(m)
    if max_shift > 0:
        box = jitter_box(box, m.shape, max_shift, rng)
    return box


# ----------------------------------------------------------------------------- clicks
def _inner_distance(region: np.ndarray, spacing=None) -> np.ndarray:
    """Distance of each region pixel to the nearest non-region pixel; the image border
    counts as outside (the region is zero-padded by one pixel). Computed on the region's
    bounding box only (pixels outside it are not in the region and get 0)."""
    out = np.zeros(region.shape, np.float64)
    box = ndimage.find_objects(region.astype(np.uint8))
    if not box or box[0] is None:
        return out
    crop = np.pad(region[box[0]], 1, mode="constant", constant_values=False)
    dist = ndimage.distance_transform_edt(crop, sampling=spacing)
    out[box[0]] = dist[tuple(slice(1, -1) for _ in range(region.ndim))]
    return out


def _to_xy(index: Sequence[int]) -> Tuple[int, ...]:
    return tuple(int(v) for v in reversed(tuple(index)))


def _pick_max(dist: np.ndarray, rng) -> Tuple[int, ...]:
    """Index of the maximum; ties broken by ``rng`` if given, else the first in C order."""
    if rng is None:
        return tuple(int(v) for v in np.unravel_index(int(np.argmax(dist)), dist.shape))
    best = np.argwhere(dist == dist.max())
    return tuple(int(v) for v in best[_rng(rng).integers(len(best))])


def interior_click(
    mask,
    mode: Literal["center", "random"] = "center",
    rng=None,
    spacing: Optional[Sequence[float]] = None,
) -> Click:
    """Positive click inside a 2D or 3D mask.

    ``center``: the pixel farthest from the mask boundary (Euclidean distance transform,
    image border counts as boundary, ``spacing`` in array-axis order for anisotropic
    data); ties go to the first pixel in C order, or are drawn with ``rng`` if given.
    ``random``: a uniformly drawn foreground pixel.
    """
    m = _binary(mask, ndim=(2, 3))
    if not m.any():
        raise ValueError("cannot click inside an empty mask")
    if mode == "center":
        idx = _pick_max(_inner_distance(m, spacing), rng)
    elif mode == "random":
        fg = np.argwhere(m)
        idx = tuple(fg[_rng(rng).integers(len(fg))])
    else:
        raise ValueError(f"mode must be 'center' or 'random', got {mode!r}")
    return Click(_to_xy(idx), True)


def corrective_click(
    pred,
    gt,
    regions: Literal["separate", "xor"] = "separate",
    rng=None,
    spacing: Optional[Sequence[float]] = None,
) -> Optional[Click]:
    """Click on the largest error region of ``pred`` against ``gt`` (2D or 3D), or None.

    ``separate``: connected components (full connectivity: 8 in 2D, 26 in 3D) of the
    false negatives (gt & ~pred) and of the false positives (pred & ~gt) are ranked
    together by size; the click is positive for a false-negative region, negative for a
    false-positive one. ``xor`` (the CVPR 2025 challenge rule): components of
    ``pred != gt``; the click's sign is the ground truth at the chosen point.
    The point is the one of the region farthest from the region's boundary (as
    `interior_click`). Size ties: the first component found (C order) wins.
    """
    p = _binary(pred, "pred", ndim=(2, 3))
    g = _binary(gt, "gt", ndim=(2, 3))
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
    structure = np.ones((3,) * p.ndim, dtype=bool)
    if regions == "separate":
        candidates = [(g & ~p, True), (p & ~g, False)]
    elif regions == "xor":
        candidates = [(p != g, None)]
    else:
        raise ValueError(f"regions must be 'separate' or 'xor', got {regions!r}")
    best_size, best_region, best_sign = 0, None, None
    for err, sign in candidates:
        if not err.any():
            continue
        lab, n = ndimage.label(err, structure=structure)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        sizes[0] = 0
        k = int(np.argmax(sizes))
        if sizes[k] > best_size:
            best_size, best_region, best_sign = int(sizes[k]), lab == k, sign
    if best_region is None:
        return None
    idx = _pick_max(_inner_distance(best_region, spacing), rng)
    positive = bool(g[idx]) if best_sign is None else best_sign
    return Click(_to_xy(idx), positive)


# ----------------------------------------------------------------------------- 3D box
def box_3d(mask3d) -> Box3D:
    """CVPR 2025 3D box of a (D, H, W) mask.

    ``z_min``/``z_max``: first/last slice containing the object; ``z_mid``: the median
    of the slices that contain it (``zs[len(zs) // 2]``, so it is never an empty slice
    even for objects that vanish and reappear); the 2D box is the tight inclusive box
    of the object on ``z_mid``.
    """
    m = _binary(mask3d, ndim=(3,))
    zs = np.flatnonzero(m.any(axis=(1, 2)))
    if zs.size == 0:
        raise ValueError("cannot make a 3D box from an empty mask")
    z_mid = int(zs[len(zs) // 2])
    x0, y0, x1, y1 = mask_to_box(m[z_mid])
    return Box3D(int(zs[0]), int(zs[-1]), z_mid, x0, y0, x1, y1)
