"""Overlay mosaics: a grid of slices with the contours of each object, written as PNG."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..atomic import atomic_path

_COLORS = np.array([(255, 64, 64), (64, 200, 255), (255, 210, 0), (120, 255, 120), (255, 120, 255),
                    (255, 150, 60), (160, 120, 255), (0, 255, 200)], np.uint8)


def _gray(slice_: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x = slice_.astype(np.float32)
    if x.ndim == 3:
        x = x.mean(-1) if x.shape[-1] == 3 else x[..., 0]
    x = np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.repeat((x * 255).astype(np.uint8)[..., None], 3, -1)


def overlay_mosaic(slices: np.ndarray, labels: np.ndarray, max_tiles: int = 12,
                   indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """RGB mosaic (H', W', 3) uint8 of up to `max_tiles` slices with label contours.

    slices: (S, H, W) or (S, H, W, 3) image; labels: (S, H, W) ints (0 = background). By default the
    tiles are spread evenly over the slices where some object is present.
    """
    if slices.shape[:3] != labels.shape:
        raise ValueError(f"image {slices.shape[:3]} and labels {labels.shape} differ")
    if indices is None:
        present = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(1))
        pool = present if present.size else np.arange(labels.shape[0])
        k = min(max_tiles, pool.size)
        indices = pool[np.linspace(0, pool.size - 1, k).round().astype(int)] if k else []
    sample = slices[:: max(1, slices.shape[0] // 32)].astype(np.float32)
    lo, hi = np.percentile(sample, [1, 99]) if sample.size else (0.0, 1.0)
    tiles = []
    for s in indices:
        rgb = _gray(slices[s], float(lo), float(hi))
        for j, lab in enumerate(v for v in np.unique(labels[s]) if v != 0):
            m = labels[s] == lab
            edge = m & ~ndimage.binary_erosion(m)
            rgb[edge] = _COLORS[(int(lab) - 1) % len(_COLORS)]
        tiles.append(rgb)
    if not tiles:
        raise ValueError("nothing to draw")
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    h, w = tiles[0].shape[:2]
    out = np.zeros((rows * (h + 2), cols * (w + 2), 3), np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + 2): r * (h + 2) + h, c * (w + 2): c * (w + 2) + w] = t
    return out


def write_png_atomic(rgb: np.ndarray, path: os.PathLike) -> Path:
    """Write an RGB uint8 image as PNG via a temp file + rename."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return Path(path)


def write_json_atomic(obj, path: os.PathLike) -> Path:
    import json

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=float))
    return Path(path)
