"""Slices of a volume as model inputs, produced on demand in chunks (never the whole volume at once)."""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import torch

from ..preprocess import Intensity, ResizeMode, prepare_slices, volume_scaler


class FrameSource:
    """Maps slice indices to normalised model inputs (n, 3, S, S).

    The intensity mapping to [0, 1] is decided once for the whole stack (`volume_scaler`: a CT
    window, min-max or percentiles of the volume, /255 for 8-bit data), so every slice is scaled alike.
    """

    def __init__(self, stack: np.ndarray, size: int, intensity: Intensity = "auto", resize_mode: ResizeMode = "stretch",
                 device: Union[str, torch.device] = "cpu") -> None:
        arr = np.asarray(stack)
        if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3):
            raise ValueError(f"expected slices (S, H, W) or (S, H, W, 3), got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError("the volume is empty")
        self.stack, self.size, self.resize_mode, self.device = arr, size, resize_mode, torch.device(device)
        self.num_slices = int(arr.shape[0])
        self.slice_hw: Tuple[int, int] = (int(arr.shape[1]), int(arr.shape[2]))
        # statistics of the whole volume, the same rule as in training (also rejects NaN/inf voxels)
        self._scale = volume_scaler(arr, intensity)

    def __len__(self) -> int:
        return self.num_slices

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        """Model inputs (n, 3, S, S) for slice indices."""
        unit = self._scale(self.stack[np.asarray(indices)])
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
