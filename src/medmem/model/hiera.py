"""Hiera image-encoder trunk and FPN neck (the SAM 2 image encoder).

Tokens are kept as (B, H, W, C). Stage shifts pool the queries by `q_stride`; most blocks attend
inside windows, a few attend globally. Module names mirror the official state-dict keys
(`image_encoder.trunk.*`, `image_encoder.neck.*`).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HieraConfig, TemporalAdapterConfig
from .common import MLP, DropPath
from .position_encoding import SinePositionEncoding2d
from .temporal_adapter import TemporalAdapter


def window_partition(x: torch.Tensor, ws: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """(B, H, W, C) → (B * nWin, ws, ws, C), zero-padding H, W up to multiples of ws."""
    b, h, w, c = x.shape
    ph, pw = (-h) % ws, (-w) % ws
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def window_unpartition(win: torch.Tensor, ws: int, padded_hw: Tuple[int, int], hw: Tuple[int, int]) -> torch.Tensor:
    """Inverse of `window_partition`, cropping the padding: → (B, H, W, C)."""
    hp, wp = padded_hw
    b = win.shape[0] // ((hp // ws) * (wp // ws))
    x = win.reshape(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, : hw[0], : hw[1]]


def _pool(x: torch.Tensor, pool: Optional[nn.Module]) -> torch.Tensor:
    """Max-pool a (B, H, W, C) tensor spatially."""
    if pool is None:
        return x
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) → (B, H', W', C_out), H' = H / q_stride when pooling."""
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv.unbind(2)
        if self.q_pool is not None:
            q = _pool(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 q_stride: Optional[Tuple[int, int]] = None, window_size: int = 0,
                 adapter: Optional[TemporalAdapter] = None, adapter_on_windows: bool = False) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.window_size = window_size
        self.q_stride = q_stride
        self.pool = nn.MaxPool2d(q_stride, q_stride, ceil_mode=False) if q_stride else None
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, self.pool)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)
        if adapter is not None:
            self.adapter = adapter
        self.adapter_on_windows = bool(adapter_on_windows)

    def forward(self, x: torch.Tensor, num_frames: int = 1) -> torch.Tensor:
        """x (B, H, W, C); `num_frames` consecutive batch items are neighbouring slices (adapter only)."""
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = _pool(self.proj(x), self.pool)
        h, w = x.shape[1:3]
        ws = self.window_size
        if ws > 0:
            x, pad_hw = window_partition(x, ws)
        x = self.attn(x)
        adapter = getattr(self, "adapter", None)
        if adapter is not None and self.adapter_on_windows:  # SAMed-2 release: groups neighbouring windows
            x = x + adapter(x, adapter.num_frames)
        if self.q_stride:
            ws = self.window_size // self.q_stride[0]
            h, w = shortcut.shape[1:3]
            pad_hw = (h + (-h) % ws, w + (-w) % ws)
        if self.window_size > 0:
            x = window_unpartition(x, ws, pad_hw, (h, w))
        if adapter is not None and not self.adapter_on_windows:  # medmem: groups neighbouring slices
            x = x + adapter(x, num_frames)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """Hierarchical ViT trunk → one (B, C_i, H_i, W_i) map per stage, highest resolution first."""

    def __init__(self, cfg: HieraConfig, adapter_cfg: Optional[TemporalAdapterConfig] = None) -> None:
        super().__init__()
        stages = cfg.stages
        depth = sum(stages)
        self.stage_ends = [sum(stages[:i]) - 1 for i in range(1, len(stages) + 1)]
        q_pool_blocks = [e + 1 for e in self.stage_ends[:-1]][: cfg.q_pool]
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, cfg.embed_dim, cfg.window_spec[0], cfg.window_spec[0]))
        dpr = [cfg.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        adapter_blocks = set(adapter_cfg.blocks) if adapter_cfg is not None else set()
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 1
        self.blocks = nn.ModuleList()
        for i in range(depth):
            dim_out = dim
            ws = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage - 1]
            if i - 1 in self.stage_ends:
                dim_out = int(dim * cfg.dim_mul)
                heads = int(heads * cfg.head_mul)
                stage += 1
            adapter = TemporalAdapter(dim_out, adapter_cfg) if i in adapter_blocks else None
            self.blocks.append(MultiScaleBlock(dim, dim_out, heads, cfg.mlp_ratio, dpr[i],
                                               cfg.q_stride if i in q_pool_blocks else None, ws, adapter,
                                               adapter_on_windows=adapter_cfg is not None and adapter_cfg.samed2_compat))
            dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]

    def _pos_embed(self, hw: Tuple[int, int]) -> torch.Tensor:
        pe = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        win = self.pos_embed_window
        pe = pe + win.tile([1, 1, hw[0] // win.shape[-2], hw[1] // win.shape[-1]])
        return pe.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor, num_frames: int = 1) -> List[torch.Tensor]:
        """x (B, 3, S, S) → [(B, C_i, S/4/2^i, S/4/2^i) for each stage i]."""
        x = self.patch_embed(x)
        x = x + self._pos_embed(x.shape[1:3])
        outs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, num_frames)
            if i in self.stage_ends:
                outs.append(x.permute(0, 3, 1, 2))
        return outs


class FpnNeck(nn.Module):
    """1×1 lateral convs to d_model, top-down fusion on selected levels, sine position encodings."""

    def __init__(self, d_model: int, backbone_channel_list: List[int], top_down_levels: Tuple[int, ...],
                 interp_mode: str = "nearest") -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for dim in backbone_channel_list:
            seq = nn.Sequential()
            seq.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(seq)
        self.top_down_levels = set(top_down_levels)
        self.interp_mode = interp_mode
        self.position_encoding = SinePositionEncoding2d(d_model)

    def forward(self, xs: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        n = len(self.convs) - 1
        feats: List[torch.Tensor] = [None] * (n + 1)  # type: ignore[list-item]
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                up = F.interpolate(prev.float(), scale_factor=2.0, mode=self.interp_mode,
                                   align_corners=None if self.interp_mode == "nearest" else False)
                prev = lateral + up
            else:
                prev = lateral
            feats[i] = prev
        pos = [self.position_encoding(f) for f in feats]
        return feats, pos


class ImageEncoder(nn.Module):
    """Trunk + neck; drops the `scalp` lowest-resolution levels. Returns 3 levels (strides 4, 8, 16)."""

    def __init__(self, cfg: HieraConfig, adapter_cfg: Optional[TemporalAdapterConfig] = None) -> None:
        super().__init__()
        self.trunk = Hiera(cfg, adapter_cfg)
        self.neck = FpnNeck(cfg.d_model, self.trunk.channel_list, cfg.fpn_top_down_levels, cfg.fpn_interp_mode)
        self.scalp = cfg.scalp

    def forward(self, x: torch.Tensor, num_frames: int = 1) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        feats, pos = self.neck(self.trunk(x, num_frames))
        if self.scalp > 0:
            feats, pos = feats[: -self.scalp], pos[: -self.scalp]
        return feats, pos
