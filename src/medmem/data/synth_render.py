"""Modality "styles" of MedBank-mini: turn tissue maps into realistic-looking images.

Each ``*_finish`` function takes a float image of tissue values (painted by a task with
`paint`) and adds what is typical of the modality: partial-volume blur, texture, noise,
bias fields, speckle, illumination. Output dtypes: CT int16 (HU), MRI int16 (arbitrary
units), everything 2D uint8 (grayscale (H, W) or RGB (H, W, 3)).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .synth_shapes import smooth_noise


def paint(shape: Sequence[int], background: float, layers: List[Tuple[np.ndarray, float, float]],
          rng: np.random.Generator) -> np.ndarray:
    """Grayscale tissue map: background, then each (mask, value, texture amplitude) in order
    (later layers on top). Texture is a smooth random field scaled by the amplitude."""
    img = np.full(tuple(shape), background, np.float32)
    for mask, value, tex in layers:
        if not mask.any():
            continue
        v = np.float32(value)
        if tex:
            field = smooth_noise(tuple(shape), rng, coarse=12)
            img[mask] = v + np.float32(tex) * field[mask]
        else:
            img[mask] = v
    return img


def paint_rgb(shape_hw: Sequence[int], background: Sequence[float],
              layers: List[Tuple[np.ndarray, Sequence[float], float]], rng: np.random.Generator) -> np.ndarray:
    """RGB tissue map (H, W, 3) in [0, 255] floats; layers are (mask, rgb, texture amplitude)."""
    h, w = int(shape_hw[0]), int(shape_hw[1])
    img = np.empty((h, w, 3), np.float32)
    img[:] = np.asarray(background, np.float32)
    base_tex = smooth_noise((h, w), rng, coarse=16)
    img += 10.0 * base_tex[..., None]
    for mask, rgb, tex in layers:
        if not mask.any():
            continue
        col = np.asarray(rgb, np.float32)
        field = smooth_noise((h, w), rng, coarse=14) if tex else None
        for c in range(3):
            ch = img[..., c]
            ch[mask] = col[c] + (np.float32(tex) * field[mask] if tex else 0.0)
    return img


def ct_finish(hu: np.ndarray, rng: np.random.Generator, noise_hu: float = 12.0) -> np.ndarray:
    """CT: in-plane partial-volume blur, fine texture and Gaussian noise; int16 HU in [-1024, 3071]."""
    sig = (0.4, 0.7, 0.7) if hu.ndim == 3 else 0.7
    img = ndimage.gaussian_filter(hu, sigma=sig)
    img += np.float32(noise_hu) * rng.standard_normal(hu.shape).astype(np.float32)
    return np.clip(np.rint(img), -1024, 3071).astype(np.int16)


def mri_finish(img: np.ndarray, rng: np.random.Generator, noise: float = 18.0, bias: float = 0.25) -> np.ndarray:
    """MRI: blur, smooth multiplicative bias field, Rician noise; int16 >= 0."""
    sig = (0.4, 0.8, 0.8) if img.ndim == 3 else 0.8
    x = ndimage.gaussian_filter(img, sigma=sig)
    x *= 1.0 + np.float32(bias) * smooth_noise(img.shape, rng, coarse=3)
    n1 = np.float32(noise) * rng.standard_normal(img.shape).astype(np.float32)
    n2 = np.float32(noise) * rng.standard_normal(img.shape).astype(np.float32)
    x = np.sqrt((x + n1) ** 2 + n2 ** 2)
    return np.clip(np.rint(x), 0, 32767).astype(np.int16)


def xray_finish(att: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """X-ray: attenuation map -> blurred, gamma-compressed, noisy uint8 (bright = dense)."""
    x = ndimage.gaussian_filter(att, 1.2)
    x = (x - x.min()) / max(float(np.ptp(x)), 1e-6)
    x = x ** 0.8
    x = x * 235.0 + 10.0 + 5.0 * rng.standard_normal(att.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def fan_mask(shape_hw: Sequence[int], half_angle: float = 0.75, r0: float = 0.08, r1: float = 1.05) -> np.ndarray:
    """Ultrasound sector: apex at the top centre, radius in units of the image height."""
    h, w = int(shape_hw[0]), int(shape_hw[1])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy = yy / h + 0.02
    dx = (xx - (w - 1) / 2.0) / h
    r = np.hypot(dx, dy)
    ang = np.arctan2(dx, dy)
    return (np.abs(ang) < half_angle) & (r > r0) & (r < r1)


def us_finish(echo: np.ndarray, rng: np.random.Generator, sector: Optional[np.ndarray] = None) -> np.ndarray:
    """Ultrasound (2D (H, W) or a (T, H, W) cine): multiplicative Rayleigh speckle with a
    short correlation length, depth attenuation, log compression; uint8, 0 outside the sector."""
    shape = echo.shape
    hw = shape[-2:]
    speckle = rng.rayleigh(1.0, size=shape).astype(np.float32)
    sig = (0, 0.8, 0.6) if echo.ndim == 3 else (0.8, 0.6)
    speckle = ndimage.gaussian_filter(speckle, sigma=sig)
    depth = np.linspace(1.0, 0.55, hw[0], dtype=np.float32)[:, None]
    x = np.maximum(echo, 0.02) * speckle * depth
    x = np.log1p(12.0 * x) / np.log1p(12.0 * 2.5)
    x = np.clip(x * 255.0, 0, 255)
    if sector is not None:
        x = x * sector
    return np.rint(x).astype(np.uint8)


def rgb_finish(img: np.ndarray, rng: np.random.Generator, vignette: float = 0.35, highlights: int = 0,
               noise: float = 4.0, blur: float = 0.8) -> np.ndarray:
    """Camera-like RGB: blur, radial vignetting, optional specular highlights, noise; uint8."""
    h, w = img.shape[:2]
    x = ndimage.gaussian_filter(img, sigma=(blur, blur, 0))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    x *= (1.0 - np.float32(vignette) * np.clip(r, 0, 1.4) ** 2)[..., None]
    for _ in range(highlights):
        cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
        rad = rng.uniform(0.8, 2.5) * h / 128
        spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rad * rad))
        x += (255.0 * spot)[..., None]
    x += np.float32(noise) * rng.standard_normal(x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def fluorescence_finish(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fluorescence microscopy: optical blur, Poisson shot noise, dark background; uint8."""
    x = ndimage.gaussian_filter(signal, 1.0)
    x = rng.poisson(np.clip(x, 0, None) * 60.0).astype(np.float32) / 60.0
    x += 0.03 * rng.standard_normal(signal.shape).astype(np.float32)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def disk_mask(shape_hw: Sequence[int], radius_frac: float = 0.48) -> np.ndarray:
    """Centred disk (fundus field of view, dermoscopy lens)."""
    h, w = int(shape_hw[0]), int(shape_hw[1])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) < radius_frac * min(h, w)
