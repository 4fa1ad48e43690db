"""Image features of slices, encoded in batches and kept in a small bounded cache."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Optional

import torch

from ..model import ImageFeatures, SAM2Model
from .autocast import autocast


class FeatureCache:
    """Encodes slices `chunk` at a time (in the direction of travel) and keeps at most `max_cached`.

    With a temporal adapter of clip length T, slices are encoded in aligned groups of T
    neighbours so that a slice's features do not depend on the order of requests.
    """

    def __init__(self, model: SAM2Model, frames, chunk: int = 8, max_cached: Optional[int] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        self.model, self.frames, self.dtype = model, frames, dtype
        self.group = max(1, model.cfg.temporal_adapter.num_frames if model.cfg.temporal_adapter.blocks else 1)
        self.chunk = max(int(chunk), 1)
        self.chunk += (-self.chunk) % self.group
        self.max_cached = max(max_cached or 2 * self.chunk, self.chunk)
        self._cache: "OrderedDict[int, ImageFeatures]" = OrderedDict()
        self.encoded = 0  # slices encoded so far (for tests / benchmarks)

    def __len__(self) -> int:
        return len(self._cache)

    def _encode(self, idx: Iterable[int]) -> None:
        idx = sorted(set(idx))
        if self.group > 1:  # complete aligned groups; pad the tail group by repeating the last slice
            full = set()
            for i in idx:
                g0 = (i // self.group) * self.group
                full.update(range(g0, g0 + self.group))
            idx = sorted(full)
        n = len(self.frames)
        real = [min(i, n - 1) for i in idx]
        device = self.model.device
        with torch.inference_mode(), autocast(device, self.dtype):
            x = self.frames.get(real).to(device)
            feats = self.model.encode_image(x, num_frames=self.group)
        self.encoded += len(idx)
        for j, i in enumerate(idx):
            if i < n:  # own copies: an evicted slice must not keep its whole batch alive
                one = feats.select(j)
                self._cache[i] = ImageFeatures(one.vision_feats.clone(), one.vision_pos.clone(),
                                               [t.clone() for t in one.high_res], [])
                self._cache.move_to_end(i)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)

    def get(self, i: int, reverse: bool = False) -> ImageFeatures:
        """Features of slice i (B = 1); on a miss, encodes the next `chunk` slices in the direction of travel."""
        if i not in self._cache:
            n = len(self.frames)
            if reverse:
                todo = [j for j in range(i, max(i - self.chunk, -1), -1) if j not in self._cache]
            else:
                todo = [j for j in range(i, min(i + self.chunk, n)) if j not in self._cache]
            self._encode(todo)
        self._cache.move_to_end(i)
        return self._cache[i]

    def clear(self) -> None:
        self._cache.clear()
