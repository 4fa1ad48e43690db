"""SAMed-2 temporal adapter: mixes features of neighbouring slices/frames inside a Hiera block.

LayerNorm → Linear(dim → hidden) → Conv3d over (T, H, W) → GELU → Linear(hidden → dim), added
to the attention branch. Parameter names (`adapter.norm/linear_down/conv/linear_up`) follow the
released SAMed-2 checkpoints so that they load unchanged. The last projection is zero-initialised,
so a pre-trained SAM 2 is unchanged at step 0.

Consecutive groups of T batch items are one clip. Two modes:

- medmem (default): the items are neighbouring slices, and the engine encodes every slice in a
  clip **centred** on it (`centred_window`, `centred_clip`), so each slice sees its neighbours on
  both sides; the clip is padded in time by repeating its end slices (a single image is a static
  clip: T = 1 works and equals a clip of copies of it).
- SAMed-2 compatibility (``samed2_compat``, for released SAMed-2 weights): the block calls the
  adapter on window-partitioned tokens with the config's T, so the items are neighbouring
  *windows* of one image (and, in global-attention blocks, neighbouring images), with zero
  padding in time, as in the released code. An incomplete last group (a single image) is padded
  by repeating its last item, so no batch size crashes.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TemporalAdapterConfig


def centred_window(num_frames: int) -> int:
    """Odd clip length the engine uses around each slice for a clip length T: T if odd, else T + 1."""
    t = max(int(num_frames), 1)
    return t if t % 2 else t + 1


def centred_clip(i: int, n: int, window: int) -> List[int]:
    """Slice indices of the clip centred on slice i of n (ends repeated at the volume's edges)."""
    r = window // 2
    return [min(max(j, 0), n - 1) for j in range(i - r, i + r + 1)]


class TemporalAdapter(nn.Module):
    def __init__(self, dim: int, cfg: TemporalAdapterConfig) -> None:
        super().__init__()
        self.num_frames = cfg.num_frames
        self.replicate_time = not cfg.samed2_compat
        self.norm = nn.LayerNorm(dim)
        self.linear_down = nn.Linear(dim, cfg.hidden_dim)
        self.conv = nn.Conv3d(cfg.hidden_dim, cfg.hidden_dim, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.act = nn.GELU()
        self.linear_up = nn.Linear(cfg.hidden_dim, dim)
        nn.init.zeros_(self.linear_up.weight)
        nn.init.zeros_(self.linear_up.bias)

    def _conv(self, y: torch.Tensor) -> torch.Tensor:
        """(G, hid, T, H, W) → same shape; time padded by replication (medmem) or zeros (release)."""
        if not self.replicate_time:
            return self.conv(y)
        kt, kh, kw = self.conv.kernel_size
        pt = kt // 2
        if pt:
            y = torch.cat([y[:, :, :1].expand(-1, -1, pt, -1, -1), y, y[:, :, -1:].expand(-1, -1, pt, -1, -1)], dim=2)
        return F.conv3d(y, self.conv.weight, self.conv.bias, padding=(0, kh // 2, kw // 2))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x (B, H, W, C) with B = groups × T neighbouring items → residual update (B, H, W, C)."""
        b, h, w, _ = x.shape
        t = num_frames if num_frames > 0 else 1
        pad = (-b) % t
        if pad:  # an incomplete last group (e.g. one image, T = 2): repeat its last item
            x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)], dim=0)
        bp = b + pad
        y = self.linear_down(self.norm(x))  # (B, H, W, hid)
        y = y.reshape(bp // t, t, h, w, -1).permute(0, 4, 1, 2, 3)  # (G, hid, T, H, W)
        y = self._conv(y).permute(0, 2, 3, 4, 1).reshape(bp, h, w, -1)
        return self.linear_up(self.act(y))[:b]
