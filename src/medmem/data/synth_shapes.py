"""Geometry primitives for the synthetic MedBank-mini generator.

Everything works on a `Grid`: normalised coordinates in [-1, 1] along each array axis,
optionally warped by a smooth random displacement (the "elastic" deformation that makes
3D objects change shape smoothly from slice to slice). Shapes are implicit functions
evaluated on the grid: ``f(grid) < 0`` inside, so nesting, holes (differences) and
touching neighbours (Voronoi split of overlapping blobs) are boolean algebra.
Axis order is the array order: 3D (z, y, x), 2D (y, x).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import numpy as np


@dataclass
class Grid:
    """Normalised coordinates, one array per axis (array order), each of the full shape."""

    coords: Tuple[np.ndarray, ...]
    shape: Tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)


def smooth_noise(shape: Tuple[int, ...], rng: np.random.Generator,
                 coarse: Union[int, Tuple[int, ...]] = 6) -> np.ndarray:
    """Smooth random field in about [-1, 1]: coarse Gaussian noise upsampled (cubic)."""
    if isinstance(coarse, int):
        coarse = tuple(min(coarse, s) if s > 1 else 1 for s in shape)
    field = rng.standard_normal(coarse).astype(np.float32)
    # separable smooth upsampling: each output sample is a Gaussian-weighted average of the
    # coarse samples (cheap matrix products instead of a full-volume spline zoom)
    for axis, (s, c) in enumerate(zip(shape, coarse)):
        field = np.moveaxis(np.tensordot(_upsample_matrix(s, c), field, axes=([1], [axis])), 0, axis)
    m = float(np.abs(field).max()) or 1.0
    return (field / m).astype(np.float32)


def _upsample_matrix(n_out: int, n_in: int) -> np.ndarray:
    if n_in == 1:
        return np.ones((n_out, 1), np.float32)
    t = np.linspace(0.0, n_in - 1.0, n_out)[:, None]
    w = np.exp(-((t - np.arange(n_in)[None, :]) ** 2) / (2 * 0.6 ** 2))
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def make_grid(shape: Tuple[int, ...], rng: Optional[np.random.Generator] = None, warp: float = 0.0,
              coarse: int = 5) -> Grid:
    """Grid over ``shape`` in [-1, 1]; ``warp`` > 0 adds a smooth displacement of up to
    ``warp`` (in normalised units) per axis, drawn from ``rng``."""
    axes = [np.linspace(-1.0, 1.0, s, dtype=np.float32) if s > 1 else np.zeros(1, np.float32) for s in shape]
    coords = list(np.meshgrid(*axes, indexing="ij"))
    if warp > 0:
        if rng is None:
            raise ValueError("warp needs an rng")
        for i in range(len(coords)):
            if shape[i] > 1:
                coords[i] = coords[i] + np.float32(warp) * smooth_noise(shape, rng, coarse)
    return Grid(tuple(coords), tuple(shape))


def _rot2(a: np.ndarray, b: np.ndarray, angle: float) -> Tuple[np.ndarray, np.ndarray]:
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return c * a - s * b, s * a + c * b


def ellipsoid(grid: Grid, center, radii, angle: float = 0.0) -> np.ndarray:
    """Signed-ish level function of an ellipse/ellipsoid (< 0 inside), in-plane rotation
    ``angle`` (radians) about the last two axes. ``center``/``radii`` in array order."""
    d = [(c - np.float32(c0)) / np.float32(r) for c, c0, r in zip(grid.coords, center, radii)]
    if angle:
        # rotate the in-plane (y, x) offsets before scaling by the radii
        raw = [c - np.float32(c0) for c, c0 in zip(grid.coords, center)]
        ry, rx = _rot2(raw[-2], raw[-1], angle)
        raw[-2], raw[-1] = ry, rx
        d = [r_ / np.float32(r) for r_, r in zip(raw, radii)]
    q = sum(x * x for x in d)
    return np.sqrt(q) - 1.0


def blob(grid: Grid, center, radii, rng: np.random.Generator, roughness: float = 0.15,
         angle: float = 0.0, coarse: int = 5) -> np.ndarray:
    """Boolean irregular blob: an ellipsoid whose boundary is perturbed by smooth noise."""
    f = ellipsoid(grid, center, radii, angle)
    if roughness > 0:
        f = f + np.float32(roughness) * smooth_noise(grid.shape, rng, coarse)
    return f < 0


def tube(grid: Grid, path_yx: np.ndarray, radius: Union[float, np.ndarray]) -> np.ndarray:
    """3D tube along axis 0: ``path_yx`` (D, 2) centre (y, x) per slice in normalised
    units, ``radius`` scalar or (D,) per slice. Returns boolean (D, H, W)."""
    if grid.ndim != 3:
        raise ValueError("tube needs a 3D grid")
    cy = path_yx[:, 0][:, None, None].astype(np.float32)
    cx = path_yx[:, 1][:, None, None].astype(np.float32)
    r = np.broadcast_to(np.asarray(radius, np.float32), (grid.shape[0],))[:, None, None]
    return (grid.coords[1] - cy) ** 2 + (grid.coords[2] - cx) ** 2 < r * r


def polyline_mask(shape: Tuple[int, int], points_rc: np.ndarray, width_px: Union[float, np.ndarray]) -> np.ndarray:
    """2D boolean mask of a thick polyline through ``points_rc`` (N, 2) in pixel (row, col);
    ``width_px`` is the half-width, scalar or per point (linearly interpolated)."""
    pts = np.asarray(points_rc, np.float64)
    widths = np.broadcast_to(np.asarray(width_px, np.float64), (len(pts),))
    samples, wsamp = [], []
    for i in range(len(pts) - 1):
        n = int(np.ceil(np.hypot(*(pts[i + 1] - pts[i])) * 2)) + 1
        t = np.linspace(0.0, 1.0, n)[:, None]
        samples.append(pts[i] + t * (pts[i + 1] - pts[i]))
        wsamp.append(widths[i] + t[:, 0] * (widths[i + 1] - widths[i]))
    if not samples:
        samples, wsamp = [pts], [widths]
    s = np.concatenate(samples)
    w = np.concatenate(wsamp)
    out = np.zeros(shape, bool)
    rr = np.arange(shape[0])[:, None]
    cc = np.arange(shape[1])[None, :]
    # rasterise discs along the line, restricted to small windows (cheap for thin lines)
    for (r0, c0), wi in zip(s[:: max(1, len(s) // 400)], w[:: max(1, len(s) // 400)]):
        ri = int(np.ceil(wi)) + 1
        r_lo, r_hi = max(0, int(r0) - ri), min(shape[0], int(r0) + ri + 2)
        c_lo, c_hi = max(0, int(c0) - ri), min(shape[1], int(c0) + ri + 2)
        if r_lo >= r_hi or c_lo >= c_hi:
            continue
        win = (rr[r_lo:r_hi] - r0) ** 2 + (cc[:, c_lo:c_hi] - c0) ** 2 <= wi * wi
        out[r_lo:r_hi, c_lo:c_hi] |= win
    return out


def split_touching(masks: List[np.ndarray], centers: List[Tuple[float, ...]], grid: Grid) -> List[np.ndarray]:
    """Make overlapping masks disjoint: each contested voxel goes to the nearest centre.

    Blobs that overlap end up sharing a boundary (touching neighbours)."""
    count = np.zeros(grid.shape, np.int16)
    for m in masks:
        count += m
    if count.max() <= 1:
        return masks
    contested = count > 1
    dists = []
    for c in centers:
        d = sum((g[contested] - np.float32(c0)) ** 2 for g, c0 in zip(grid.coords, c))
        dists.append(d)
    owner = np.argmin(np.stack(dists), axis=0)
    out = []
    for i, m in enumerate(masks):
        m = m.copy()
        sub = m[contested]
        m[contested] = sub & (owner == i)
        out.append(m)
    return out


def random_rotation_2d(rng: np.random.Generator, max_angle: float = np.pi) -> float:
    return float(rng.uniform(-max_angle, max_angle))
