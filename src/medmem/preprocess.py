"""Intensity presets and conversion of slices to the SAM 2 model input.

Three steps, each usable alone:

1. **Scale to [0, 1]** (`to_unit_range`): CT windows (`apply_window`, presets in
   `WINDOW_PRESETS`, (width, level) in HU), percentile normalisation for MR and
   other modalities (`percentile_normalize`), or the automatic rule for 8-bit images.
2. **Resize to the model size S** (`resize_to_model`): by default exactly as the
   SAM 2 image predictor (`SAM2Transforms`: torchvision ``Resize((S, S))`` on a float
   tensor = bilinear, ``align_corners=False``, antialias on); optionally keeping the
   aspect ratio (longest side to S, zero padding at the bottom/right, as SAM 1), or
   PIL bicubic on 8-bit data as the SAM 2 video loader and MedSAM2's scripts do.
3. **ImageNet normalisation** with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).

`prepare_slice` / `prepare_slices` chain the three; `to_source` maps model-resolution
masks or logits back to the source grid (unpad, then bilinear upsampling, as SAM 2's
``postprocess_masks``), `coords_to_model` / `coords_to_source` map (x, y) points.

Shapes: a slice is (H, W) grayscale or (H, W, 3) RGB; a stack is (N, H, W) or
(N, H, W, 3). Outputs are float32 torch tensors (3, S, S) / (N, 3, S, S).
"""
from __future__ import annotations

from typing import Callable, Dict, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

#: CT window presets, name -> (width, level) in Hounsfield units.
WINDOW_PRESETS: Dict[str, Tuple[float, float]] = {
    "soft_tissue": (400.0, 40.0),
    "abdomen": (400.0, 40.0),  # alias of soft_tissue
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
    "brain": (80.0, 40.0),
    "liver": (150.0, 30.0),
    "mediastinum": (350.0, 50.0),
}

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

ArrayLike = Union[np.ndarray, torch.Tensor]
Intensity = Union[str, tuple, Callable[[np.ndarray], np.ndarray], None]
ResizeMode = Literal["stretch", "pad"]


# ----------------------------------------------------------------------------- checks
def _as_numpy(image: ArrayLike) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"image must be a numeric array, got dtype {arr.dtype}")
    return arr


def _check_finite(arr: np.ndarray, what: str = "image") -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or inf values")


# ----------------------------------------------------------------------------- windows
def get_window(window: Union[str, Sequence[float]]) -> Tuple[float, float]:
    """Resolve a preset name or a (width, level) pair to (width, level) in HU."""
    if isinstance(window, str):
        key = window.lower().replace("-", "_").replace(" ", "_")
        if key not in WINDOW_PRESETS:
            raise ValueError(f"unknown CT window {window!r}; presets: {sorted(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[key]
    vals = tuple(float(v) for v in window)
    if len(vals) != 2:
        raise ValueError(f"a custom window is (width, level), got {window!r}")
    width, level = vals
    if not (np.isfinite(width) and np.isfinite(level)) or width <= 0:
        raise ValueError(f"window width must be finite and > 0, got width={width}, level={level}")
    return width, level


def apply_window(image: ArrayLike, window: Union[str, Sequence[float]] = "soft_tissue") -> np.ndarray:
    """CT windowing to [0, 1]: ``clip((x - (level - width/2)) / width, 0, 1)``.

    Any shape; returns float32 of the same shape.
    """
    arr = _as_numpy(image)
    _check_finite(arr)
    width, level = get_window(window)
    lo = level - width / 2.0
    return rescale(arr, lo, lo + width)


def rescale(image: ArrayLike, lo: float, hi: float) -> np.ndarray:
    """Linear map of [lo, hi] to [0, 1], clipped; float32. ``hi == lo`` gives zeros."""
    arr = _as_numpy(image).astype(np.float32, copy=False)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"bounds must be finite, got ({lo}, {hi})")
    if hi <= lo:
        return np.zeros(arr.shape, np.float32)
    out = (arr - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- percentiles
def percentile_bounds(
    image: ArrayLike,
    lower: float = 0.5,
    upper: float = 99.5,
    region: Union[Literal["foreground", "all"], np.ndarray] = "all",
) -> Tuple[float, float]:
    """Intensity percentiles (lower, upper) in %, over the whole image or a region.

    ``region="foreground"`` uses the non-zero voxels (as nnU-Net does for MR); if there
    are none it falls back to the whole image. A boolean array of the image's shape
    selects the region explicitly. Grayscale only (RGB channels share one pair).
    """
    arr = _as_numpy(image)
    _check_finite(arr)
    if not (0.0 <= lower < upper <= 100.0):
        raise ValueError(f"need 0 <= lower < upper <= 100, got {lower}, {upper}")
    if isinstance(region, str):
        if region == "all":
            values = arr.ravel()
        elif region == "foreground":
            sel = arr != 0
            values = arr[sel] if sel.any() else arr.ravel()
        else:
            raise ValueError(f"region must be 'all', 'foreground' or a mask, got {region!r}")
    else:
        sel = np.asarray(region, dtype=bool)
        if sel.shape != arr.shape:
            raise ValueError(f"region mask shape {sel.shape} != image shape {arr.shape}")
        values = arr[sel] if sel.any() else arr.ravel()
    if values.size == 0:
        raise ValueError("empty image")
    lo, hi = np.percentile(values.astype(np.float64), [lower, upper])
    return float(lo), float(hi)


def percentile_normalize(
    image: ArrayLike,
    lower: float = 0.5,
    upper: float = 99.5,
    region: Union[Literal["foreground", "all"], np.ndarray] = "all",
) -> np.ndarray:
    """Map the [lower, upper] percentiles of the image (or region) to [0, 1], clipped."""
    lo, hi = percentile_bounds(image, lower, upper, region)
    return rescale(image, lo, hi)


# ----------------------------------------------------------------------------- [0, 1]
def to_unit_range(image: ArrayLike, intensity: Intensity = "auto") -> np.ndarray:
    """Scale an image of any dtype to float32 in [0, 1].

    ``intensity``:
      - ``"auto"``: bool -> {0, 1}; uint8 -> /255; float already within [0, 1] -> as is;
        anything else -> min-max over the given array (a constant image gives zeros).
      - a CT preset name (``"soft_tissue"``, ``"lung"``, ...) or ``(width, level)``: CT window.
      - ``"percentile"`` (0.5-99.5 % over all voxels), ``"percentile_fg"`` (over non-zero voxels).
      - ``"minmax"``; ``"none"``/``None``: no change (must already be in [0, 1]).
      - a callable ``f(array) -> array`` in [0, 1].
    """
    arr = _as_numpy(image)
    _check_finite(arr)
    if callable(intensity):
        out = np.asarray(intensity(arr), dtype=np.float32)
        _check_finite(out, "intensity function output")
        return out
    if intensity is None or intensity == "none":
        out = arr.astype(np.float32)
        if out.size and (out.min() < 0 or out.max() > 1):
            raise ValueError("intensity='none' needs values in [0, 1]; choose a window or 'percentile'")
        return out
    if isinstance(intensity, (tuple, list)):
        return apply_window(arr, intensity)
    if not isinstance(intensity, str):
        raise ValueError(f"unsupported intensity spec {intensity!r}")
    if intensity == "auto":
        if arr.dtype == bool:
            return arr.astype(np.float32)
        if arr.dtype == np.uint8:
            return arr.astype(np.float32) / np.float32(255.0)
        if arr.size and np.issubdtype(arr.dtype, np.floating) and arr.min() >= 0 and arr.max() <= 1:
            return arr.astype(np.float32)
        intensity = "minmax"
    if intensity == "minmax":
        if arr.size == 0:
            return arr.astype(np.float32)
        return rescale(arr, float(arr.min()), float(arr.max()))
    if intensity == "percentile":
        return percentile_normalize(arr, region="all")
    if intensity in ("percentile_fg", "percentile_foreground"):
        return percentile_normalize(arr, region="foreground")
    return apply_window(arr, intensity)


# ----------------------------------------------------------------------------- resizing
def content_hw(source_hw: Sequence[int], size: int, mode: ResizeMode = "stretch") -> Tuple[int, int]:
    """Height and width that the image content occupies in the (size, size) model input.

    ``stretch``: (size, size). ``pad``: longest side to ``size``, the other
    ``int(side * size / max(h, w) + 0.5)`` (SAM 1's ResizeLongestSide rule).
    """
    h, w = int(source_hw[0]), int(source_hw[1])
    if h <= 0 or w <= 0 or size <= 0:
        raise ValueError(f"sizes must be positive, got source {source_hw}, size {size}")
    if mode == "stretch":
        return size, size
    if mode == "pad":
        scale = size / max(h, w)
        return max(1, min(size, int(h * scale + 0.5))), max(1, min(size, int(w * scale + 0.5)))
    raise ValueError(f"mode must be 'stretch' or 'pad', got {mode!r}")


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    """(N, H, W) or (N, H, W, 3) float -> (N, 3, H, W) torch float32."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if t.ndim == 3:
        return t[:, None].expand(-1, 3, -1, -1)
    return t.permute(0, 3, 1, 2)


def resize_to_model(
    x: torch.Tensor,
    size: int,
    mode: ResizeMode = "stretch",
    resample: Literal["bilinear", "pil_bicubic"] = "bilinear",
) -> torch.Tensor:
    """Resize (N, C, H, W) float images in [0, 1] to (N, C, size, size).

    ``resample="bilinear"`` is ``F.interpolate(mode="bilinear", align_corners=False,
    antialias=True)``, which is what torchvision's tensor ``Resize`` does (SAM 2 image
    predictor). ``"pil_bicubic"`` quantises to uint8 (truncation, as
    ``arr.astype(np.uint8)``) and uses PIL's bicubic resize, like the SAM 2 video frame
    loader and MedSAM2's scripts; the result is again in [0, 1] (multiples of 1/255).
    In ``pad`` mode the content is resized to `content_hw` and the rest is zero.
    """
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    ch, cw = content_hw((h, w), size, mode)
    if resample == "bilinear":
        if (ch, cw) == (h, w):
            out = x.float().clone()
        else:
            out = F.interpolate(x.float(), size=(ch, cw), mode="bilinear", align_corners=False, antialias=True)
    elif resample == "pil_bicubic":
        out = _pil_bicubic(x, (ch, cw))
    else:
        raise ValueError(f"resample must be 'bilinear' or 'pil_bicubic', got {resample!r}")
    if (ch, cw) != (size, size):
        out = F.pad(out, (0, size - cw, 0, size - ch), value=0.0)
    return out


def _pil_bicubic(x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    from PIL import Image

    arr = (x.detach().cpu().float().numpy() * 255.0).astype(np.uint8)  # truncation, like MedSAM2
    out = np.empty(arr.shape[:2] + hw, np.float32)
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            img = Image.fromarray(arr[i, c]).resize((hw[1], hw[0]), Image.BICUBIC)
            out[i, c] = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(out / np.float32(255.0)).to(x.device)


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """(…, 3, H, W) in [0, 1] -> (x - mean) / std with ImageNet statistics."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


def _split_stack(stack: ArrayLike, batched: bool) -> np.ndarray:
    arr = _as_numpy(stack)
    if not batched:
        arr = arr[None]
    ok = arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] == 3)
    if not ok:
        want = "(N, H, W) or (N, H, W, 3)" if batched else "(H, W) or (H, W, 3)"
        got = arr.shape if batched else arr.shape[1:]
        raise ValueError(f"expected {want}, got shape {tuple(got)}")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"empty image of shape {arr.shape[1:3]}")
    return arr


def volume_scaler(volume: ArrayLike, intensity: Intensity = "auto") -> Callable[[np.ndarray], np.ndarray]:
    """Freeze the [0, 1] scaling of a whole stack/volume into a function for its chunks.

    Data-dependent rules (``"auto"`` min-max fallback, ``"minmax"``, ``"percentile"``,
    ``"percentile_fg"``) take their statistics from ``volume`` once, so slices encoded in
    chunks are scaled identically; windows and callables are applied as they are.
    """
    arr = _as_numpy(volume)
    _check_finite(arr)
    mode = intensity
    if mode == "auto":
        is_unit = arr.size and np.issubdtype(arr.dtype, np.floating) and arr.min() >= 0 and arr.max() <= 1
        if arr.dtype in (np.uint8, bool) or is_unit:
            return lambda a: to_unit_range(a, "auto")
        mode = "minmax"
    if isinstance(mode, str) and mode in ("minmax", "percentile", "percentile_fg", "percentile_foreground"):
        if arr.size == 0:
            raise ValueError("empty image")
        if mode == "minmax":
            lo, hi = float(arr.min()), float(arr.max())
        else:
            lo, hi = percentile_bounds(arr, region="all" if mode == "percentile" else "foreground")
        return lambda a: rescale(a, lo, hi)
    if not callable(mode):
        to_unit_range(np.zeros(1, np.float32), mode)  # validate the spec early
    return lambda a: to_unit_range(a, mode)


def prepare_slices(
    stack: ArrayLike,
    size: int = 1024,
    *,
    intensity: Intensity = "auto",
    mode: ResizeMode = "stretch",
    resample: Literal["bilinear", "pil_bicubic"] = "bilinear",
    pad_value: float = 0.0,
    chunk: int = 16,
    device: Union[torch.device, str, None] = None,
) -> torch.Tensor:
    """Many slices (N, H, W) or (N, H, W, 3) -> model input (N, 3, size, size) float32.

    The intensity scaling is computed once over the whole stack (`volume_scaler`, so
    percentile and min-max normalisation are consistent across the slices of a volume);
    scaling and resizing run in chunks of ``chunk`` slices. To encode a long volume
    chunk by chunk without holding the whole output, call it on slices of the stack with
    ``intensity=volume_scaler(volume, spec)``. ``pad_value`` fills the padding in ``pad``
    mode, in normalised units (0 = the ImageNet mean colour, as SAM 1).
    """
    arr = _split_stack(stack, batched=True)
    scaler = volume_scaler(arr, intensity)
    return _unit_to_model(arr, scaler, size, mode, resample, pad_value, chunk, device)


def prepare_slice(
    image: ArrayLike,
    size: int = 1024,
    *,
    intensity: Intensity = "auto",
    mode: ResizeMode = "stretch",
    resample: Literal["bilinear", "pil_bicubic"] = "bilinear",
    pad_value: float = 0.0,
    device: Union[torch.device, str, None] = None,
) -> torch.Tensor:
    """One slice (H, W) or (H, W, 3), any dtype -> model input (3, size, size) float32.

    Default: ``to_unit_range(intensity="auto")``, bilinear resize of the whole image to
    size x size (aspect not kept), ImageNet normalisation - SAM 2's image predictor.
    """
    arr = _split_stack(image, batched=False)
    return _unit_to_model(arr, lambda a: to_unit_range(a, intensity), size, mode, resample, pad_value, 1, device)[0]


def _unit_to_model(arr, scaler, size, mode, resample, pad_value, chunk, device) -> torch.Tensor:
    if int(size) <= 0:
        raise ValueError(f"size must be positive, got {size}")
    n = arr.shape[0]
    h, w = arr.shape[1:3]
    ch, cw = content_hw((h, w), size, mode)
    out = torch.empty((n, 3, size, size), dtype=torch.float32, device=device)
    step = max(1, int(chunk))
    for s in range(0, n, step):
        unit = np.asarray(scaler(arr[s : s + step]), dtype=np.float32)
        if unit.shape != arr[s : s + step].shape:
            raise ValueError("intensity function must keep the array shape")
        _check_finite(unit, "intensity function output")
        if unit.size and (unit.min() < 0 or unit.max() > 1):
            raise ValueError("intensity scaling must give values in [0, 1]")
        x = _to_nchw(unit).to(device)
        y = imagenet_normalize(resize_to_model(x, size, mode, resample))
        if mode == "pad" and (ch, cw) != (size, size):
            y[..., ch:, :] = pad_value
            y[..., :, cw:] = pad_value
        out[s : s + step] = y
    return out


# ----------------------------------------------------------------------------- inverse
def to_source(
    logits: torch.Tensor,
    source_hw: Sequence[int],
    mode: ResizeMode = "stretch",
    size: Optional[int] = None,
) -> torch.Tensor:
    """Map masks/logits (…, L, L) at model resolution back to the source grid (…, H, W).

    ``stretch``: one bilinear (align_corners=False) upsampling to (H, W), as SAM 2's
    ``postprocess_masks`` (works for the 256² low-res logits as well as for S²).
    ``pad``: the logits cover the padded (size, size) input (``size`` defaults to L);
    they are brought to (size, size) if L != size, cropped to `content_hw`, then
    upsampled to (H, W). Threshold the result (> 0 for logits) to get a mask.
    Returns float32 with the same leading dimensions.
    """
    if not isinstance(logits, torch.Tensor):
        logits = torch.as_tensor(np.asarray(logits))
    if logits.ndim < 2 or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"expected (…, L, L) square logits, got shape {tuple(logits.shape)}")
    lead = logits.shape[:-2]
    x = logits.reshape(-1, 1, *logits.shape[-2:]).float()
    h, w = int(source_hw[0]), int(source_hw[1])
    if mode == "pad":
        s = int(size) if size is not None else int(x.shape[-1])
        if x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        ch, cw = content_hw((h, w), s, "pad")
        x = x[..., :ch, :cw]
    elif mode != "stretch":
        raise ValueError(f"mode must be 'stretch' or 'pad', got {mode!r}")
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.reshape(*lead, h, w)


def _scale_xy(source_hw: Sequence[int], size: int, mode: ResizeMode) -> Tuple[float, float]:
    h, w = int(source_hw[0]), int(source_hw[1])
    ch, cw = content_hw((h, w), size, mode)
    return cw / w, ch / h


def coords_to_model(coords: ArrayLike, source_hw: Sequence[int], size: int, mode: ResizeMode = "stretch") -> np.ndarray:
    """Points (…, 2) as (x, y) in source pixels -> model-input pixels (SAM 2 convention:
    x * S / W, y * S / H for ``stretch``; boxes are two points). float64."""
    c = np.asarray(coords, dtype=np.float64)
    if c.shape[-1] != 2:
        raise ValueError(f"coords must end with (x, y), got shape {c.shape}")
    sx, sy = _scale_xy(source_hw, size, mode)
    return c * np.array([sx, sy])


def coords_to_source(coords: ArrayLike, source_hw: Sequence[int], size: int, mode: ResizeMode = "stretch") -> np.ndarray:
    """Inverse of `coords_to_model`."""
    c = np.asarray(coords, dtype=np.float64)
    if c.shape[-1] != 2:
        raise ValueError(f"coords must end with (x, y), got shape {c.shape}")
    sx, sy = _scale_xy(source_hw, size, mode)
    return c / np.array([sx, sy])
