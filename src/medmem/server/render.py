"""Slices and overlays rendered as PNG bytes for the viewer (the browser only draws them)."""
from __future__ import annotations

import io
from typing import Dict, Optional, Tuple

import numpy as np
from PIL import Image

from ..preprocess import WINDOW_PRESETS, get_window

DISPLAY_WINDOWS = ("auto", "soft_tissue", "lung", "bone", "brain", "liver", "mediastinum")


def auto_bounds(volume) -> Tuple[float, float]:
    """Display range of a volume: the 0.5 and 99.5 percentiles (of a subsample, for speed)."""
    arr = np.asarray(volume.array)
    flat = arr.reshape(-1) if arr.ndim == 3 else arr.reshape(-1, arr.shape[-1]).mean(axis=1)
    step = max(1, flat.size // 2_000_000)
    lo, hi = np.percentile(flat[::step].astype(np.float64), [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def window_bounds(window: str, auto: Tuple[float, float]) -> Tuple[float, float]:
    """(lo, hi) of a display window: "auto", a CT preset name, or "LO,HI"."""
    if window in ("", "auto"):
        return auto
    if window in WINDOW_PRESETS:
        width, level = get_window(window)
        return level - width / 2.0, level + width / 2.0
    try:
        lo, hi = (float(v) for v in window.split(","))
    except ValueError:
        raise ValueError(f"window must be auto, one of {', '.join(DISPLAY_WINDOWS[1:])}, or LO,HI; got {window!r}")
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ValueError(f"window LO,HI needs finite LO < HI, got {window!r}")
    return lo, hi


def slice_png(volume, axis: str, index: int, lo: float, hi: float) -> bytes:
    """One slice of `axis`, windowed to [lo, hi], as an 8-bit PNG (rows and columns as stored)."""
    view = volume.slices(axis)
    if not 0 <= index < view.num_slices:
        raise ValueError(f"slice {index} is outside the {axis} range 0..{view.num_slices - 1}")
    sl = np.asarray(view.array[index], dtype=np.float32)
    g = np.clip((sl - lo) / (hi - lo), 0.0, 1.0)
    img = (g * 255.0 + 0.5).astype(np.uint8)
    return _png(Image.fromarray(img, "RGB" if img.ndim == 3 else "L"))


def overlay_png(volume, labels: Optional[np.ndarray], axis: str, index: int, colors: Dict[int, str],
                alpha: int = 110) -> bytes:
    """RGBA PNG of the label map on one slice: filled at `alpha`, outlines opaque; transparent elsewhere."""
    view = volume.slices(axis)
    if not 0 <= index < view.num_slices:
        raise ValueError(f"slice {index} is outside the {axis} range 0..{view.num_slices - 1}")
    h, w = view.slice_shape
    rgba = np.zeros((h, w, 4), np.uint8)
    if labels is not None:
        lab = labels.transpose(view.perm[:3])[index]
        for oid, color in colors.items():
            m = lab == oid
            if not m.any():
                continue
            rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
            edge = m & ~_erode(m)
            rgba[m, :3] = rgb
            rgba[m, 3] = alpha
            rgba[edge, 3] = 255
    return _png(Image.fromarray(rgba, "RGBA"))


def _erode(m: np.ndarray) -> np.ndarray:
    p = np.pad(m, 1, constant_values=False)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
