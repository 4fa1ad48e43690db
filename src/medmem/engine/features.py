"""Image features of slices, encoded in batches and kept in a small bounded cache.

With a SAMed-2 temporal adapter (medmem mode) each slice is encoded in a clip centred on it
(`model.temporal_adapter.centred_clip`: the slice, its neighbours on both sides, the volume's end
slices repeated at the edges), so its features see both neighbours and do not depend on chunking or
request order; this costs `window` × the encoder work of a plain model. In SAMed-2 compatibility
mode the released grouping is kept (aligned groups of T slices). Everything goes through
`SAM2Model.encode_image`, so any encoder family works.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, List, Optional

import torch

from ..model import ImageFeatures, SAM2Model
from ..model.temporal_adapter import centred_clip, centred_window
from .autocast import autocast


def adapter_layout(model: SAM2Model) -> tuple:
    """(mode, clip length) of the model's temporal adapter: ("none", 1), ("centred", window) or ("pairs", T)."""
    ta = getattr(model.cfg, "temporal_adapter", None)
    if ta is None or not ta.blocks:
        return "none", 1
    if ta.samed2_compat:
        return "pairs", max(ta.num_frames, 1)
    return "centred", centred_window(ta.num_frames)


def encode_single(model: SAM2Model, images: torch.Tensor) -> ImageFeatures:
    """Features of independent 2D images (B, 3, S, S) (no neighbours): each one alone, as a static clip
    of itself with a centred adapter, or padded to a group by the adapter in compatibility mode."""
    mode, _ = adapter_layout(model)
    if mode == "none" or images.shape[0] == 1:
        return model.encode_image(images, num_frames=1)
    parts = [model.encode_image(images[i:i + 1], num_frames=1) for i in range(images.shape[0])]
    cat = lambda ts: torch.cat(ts, 0)  # noqa: E731
    return ImageFeatures(cat([p.vision_feats for p in parts]), cat([p.vision_pos for p in parts]),
                         [cat(list(x)) for x in zip(*[p.high_res for p in parts])],
                         [cat(list(x)) for x in zip(*[p.backbone_fpn for p in parts])])


class FeatureCache:
    """Encodes slices `chunk` at a time (in the direction of travel) and keeps at most `max_cached`."""

    def __init__(self, model: SAM2Model, frames, chunk: int = 8, max_cached: Optional[int] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        self.model, self.frames, self.dtype = model, frames, dtype
        self.mode, self.window = adapter_layout(model)
        self.group = self.window if self.mode == "pairs" else 1
        self.chunk = max(int(chunk), 1)
        self.chunk += (-self.chunk) % self.group
        self.max_cached = max(max_cached or 2 * self.chunk, self.chunk)
        self._cache: "OrderedDict[int, ImageFeatures]" = OrderedDict()
        self.encoded = 0  # slices whose features were computed so far (for tests / benchmarks)
        self.encoded_regions = 0  # regions of slices encoded on their own (region tracking, engine/region.py)

    def __len__(self) -> int:
        return len(self._cache)

    def _batch(self, idx: List[int]) -> tuple:
        """(frame indices to feed, num_frames, position of each wanted slice in the batch)."""
        n = len(self.frames)
        if self.mode == "centred":
            feed = [j for i in idx for j in centred_clip(i, n, self.window)]
            return feed, self.window, [k * self.window + self.window // 2 for k in range(len(idx))]
        if self.mode == "pairs":  # complete aligned groups; pad the tail group by repeating the last slice
            full = sorted({j for i in idx for j in range((i // self.group) * self.group,
                                                          (i // self.group + 1) * self.group)})
            return [min(j, n - 1) for j in full], self.group, [full.index(i) for i in idx]
        return list(idx), 1, list(range(len(idx)))

    def _encode(self, idx: Iterable[int]) -> None:
        idx = sorted(set(idx))
        if self.mode == "pairs":  # every slice of the touched groups is cached
            n = len(self.frames)
            idx = sorted({j for i in idx for j in range((i // self.group) * self.group,
                                                        (i // self.group + 1) * self.group) if j < n})
        feed, nf, pos = self._batch(idx)
        device = self.model.device
        with torch.inference_mode(), autocast(device, self.dtype):
            x = self.frames.get(feed).to(device)
            feats = self.model.encode_image(x, num_frames=nf)
        self.encoded += len(idx)
        for i, j in zip(idx, pos):
            one = feats.select(j)  # own copies: an evicted slice must not keep its whole batch alive
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
