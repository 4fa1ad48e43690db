"""Slices of a volume as model inputs, produced on demand in chunks (never the whole volume at once)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..data.intensity import Intensity, ResizeMode, WINDOW_PRESETS, prepare_slices, rescale


class FrameSource:
    """Maps slice indices to normalised model inputs (n, 3, S, S).

    The intensity mapping to [0, 1] is decided once for the whole stack (a CT window, percentiles
    over a strided sample of the volume, /255 for 8-bit data), so every slice is scaled alike.
    """

    def __init__(self, stack: np.ndarray, size: int, intensity: Intensity = "auto", resize_mode: ResizeMode = "stretch",
                 device: Union[str, torch.device] = "cpu") -> None:
        arr = np.asarray(stack)
        if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3):
            raise ValueError(f"expected slices (S, H, W) or (S, H, W, 3), got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError("the volume is empty")
        if np.issubdtype(arr.dtype, np.floating):
            sample = arr[:: max(1, arr.shape[0] // 64)]
            if not np.all(np.isfinite(sample)) or not np.all(np.isfinite(arr)):
                raise ValueError("the volume contains NaN or inf voxels")
        self.stack, self.size, self.resize_mode, self.device = arr, size, resize_mode, torch.device(device)
        self.num_slices = int(arr.shape[0])
        self.slice_hw: Tuple[int, int] = (int(arr.shape[1]), int(arr.shape[2]))
        self._range = self._intensity_range(arr, intensity)
        self._intensity = intensity

    @staticmethod
    def _intensity_range(arr: np.ndarray, intensity: Intensity) -> Optional[Tuple[float, float]]:
        if callable(intensity) or intensity in (None, "none"):
            return None
        if isinstance(intensity, (tuple, list)) or (isinstance(intensity, str) and intensity in WINDOW_PRESETS):
            w, l = WINDOW_PRESETS[intensity] if isinstance(intensity, str) else intensity
            return (l - w / 2.0, l + w / 2.0)
        if arr.dtype == np.uint8 and intensity == "auto":
            return (0.0, 255.0)
        if arr.dtype == bool:
            return (0.0, 1.0)
        sample = arr[:: max(1, arr.shape[0] // 64)].astype(np.float32)
        if intensity in ("percentile", "auto") and not (intensity == "auto" and sample.min() >= 0 and sample.max() <= 1):
            if intensity == "auto":
                lo, hi = float(sample.min()), float(sample.max())
            else:
                lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
            return (lo, hi if hi > lo else lo + 1.0)
        if intensity == "percentile_fg":
            fg = sample[sample != 0]
            lo, hi = (float(v) for v in np.percentile(fg if fg.size else sample, [0.5, 99.5]))
            return (lo, hi if hi > lo else lo + 1.0)
        if intensity == "minmax":
            lo, hi = float(sample.min()), float(sample.max())
            return (lo, hi if hi > lo else lo + 1.0)
        return (0.0, 1.0)

    def __len__(self) -> int:
        return self.num_slices

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        """Model inputs (n, 3, S, S) for slice indices."""
        chunk = self.stack[np.asarray(indices)]
        if self._range is None:
            return prepare_slices(chunk, self.size, intensity=self._intensity, mode=self.resize_mode, device=self.device)
        unit = rescale(chunk, *self._range)
        return prepare_slices(unit, self.size, intensity="none", mode=self.resize_mode, device=self.device)


class TensorFrameSource:
    """Already normalised model inputs (N, 3, S, S) — for callers with their own preprocessing."""

    def __init__(self, images: torch.Tensor, slice_hw: Tuple[int, int]) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
            raise ValueError(f"expected (N, 3, S, S) model inputs, got {tuple(images.shape)}")
        self.images, self.slice_hw = images, (int(slice_hw[0]), int(slice_hw[1]))
        self.num_slices, self.size, self.resize_mode = int(images.shape[0]), int(images.shape[-1]), "stretch"

    def __len__(self) -> int:
        return self.num_slices

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        return self.images[list(indices)].float()
