"""SAMed-2 temporal adapter: mixes features of neighbouring slices/frames inside a Hiera block.

LayerNorm → Linear(dim → hidden) → Conv3d over (T, H, W) → GELU → Linear(hidden → dim), added
to the attention branch. Parameter names (`adapter.norm/linear_down/conv/linear_up`) follow the
released SAMed-2 checkpoints so that they load unchanged. The last projection is zero-initialised, so a pre-trained SAM 2 is
unchanged at step 0. Consecutive groups of T batch items are treated as T neighbouring slices.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import TemporalAdapterConfig


class TemporalAdapter(nn.Module):
    def __init__(self, dim: int, cfg: TemporalAdapterConfig) -> None:
        super().__init__()
        self.num_frames = cfg.num_frames
        self.norm = nn.LayerNorm(dim)
        self.linear_down = nn.Linear(dim, cfg.hidden_dim)
        self.conv = nn.Conv3d(cfg.hidden_dim, cfg.hidden_dim, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.act = nn.GELU()
        self.linear_up = nn.Linear(cfg.hidden_dim, dim)
        nn.init.zeros_(self.linear_up.weight)
        nn.init.zeros_(self.linear_up.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x (B, H, W, C) with B = groups × T neighbouring items → residual update (B, H, W, C).

        In medmem mode the items are slices (the block calls this on whole feature maps);
        in SAMed-2 compatibility mode the block calls it on window-partitioned tokens, so the
        items are neighbouring windows, as in the released code. With T == 1 the 3D
        convolution sees a one-slice clip.
        """
        b, h, w, _ = x.shape
        t = num_frames if num_frames > 0 else 1
        if b % t:
            raise ValueError(f"temporal adapter: batch {b} is not a multiple of the clip length {t}")
        y = self.linear_down(self.norm(x))  # (B, H, W, hid)
        y = y.reshape(b // t, t, h, w, -1).permute(0, 4, 1, 2, 3)  # (G, hid, T, H, W)
        y = self.conv(y).permute(0, 2, 3, 4, 1).reshape(b, h, w, -1)
        return self.linear_up(self.act(y))
