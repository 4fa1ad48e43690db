"""TinyViT image encoder of LiteMedSAM (256² input → 256 × 64 × 64 embedding).

LiteMedSAM's variant of TinyViT keeps the full input resolution in its first stage (1 × 1
patch embedding, no stride), so its stages run at 256², 128², 64² and 64²; a neck maps the last
stage to a 256-channel, 64 × 64 embedding as SAM's image encoders do. Module names follow
LiteMedSAM's checkpoint (`patch_embed`, `layers.{i}.blocks.{j}`, `neck`), so its weights load
strictly. Inference details chosen for speed, all exact in real arithmetic: convolution and
batch-norm are folded at run time in eval mode, window attention runs through
`scaled_dot_product_attention` with the relative-position bias as its additive mask, and the
first stage's inverted-residual blocks run in horizontal bands so that their 4×-expanded
activations stay in cache.
"""
from __future__ import annotations

import itertools
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TinyViTConfig
from .common import LayerNorm2d
from .position_encoding import SinePositionEncoding2d

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Conv2dBN(nn.Module):
    """Conv (no bias) + BatchNorm (keys `c`, `bn`); folded into one convolution in eval mode."""

    def __init__(self, cin: int, cout: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(cin, cout, ks, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def folded(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the single convolution equal to conv + BN (running statistics)."""
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return self.c.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale

    def forward(self, x: torch.Tensor, pad: int | None = None) -> torch.Tensor:
        if self.training:
            return self.bn(self.c(x))
        w, b = self.folded()
        c = self.c
        return F.conv2d(x, w.to(x.dtype), b.to(x.dtype), c.stride, c.padding if pad is None else pad, c.dilation,
                        c.groups)


class PatchEmbed(nn.Module):
    """(B, 3, S, S) → (B, C0, S, S) with two 1 × 1 conv-BN layers (LiteMedSAM keeps full resolution)."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(Conv2dBN(in_chans, dim // 2), nn.GELU(), Conv2dBN(dim // 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1 × 1 expand, 3 × 3 depth-wise, 1 × 1 project, residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = Conv2dBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)

    def forward_band(self, x: torch.Tensor, top: int, bottom: int) -> torch.Tensor:
        """Rows [top, bottom) of forward(x) (B, C, H, W), computed from those rows and one row each side."""
        h = x.shape[-2]
        lo, hi = max(top - 1, 0), min(bottom + 1, h)
        y = F.gelu(self.conv1(x[..., lo:hi, :]))
        # zero rows stand in for the image border, as the 3 × 3 convolution's own padding would
        y = F.pad(y, (0, 0, 1 if lo == top else 0, 1 if hi == bottom else 0))
        y = F.gelu(self.conv2(y, pad=(0, 1)))
        return F.gelu(self.conv3(y) + x[..., top:bottom, :])


class PatchMerging(nn.Module):
    """1 × 1 conv, depth-wise 3 × 3 (stride 2, or 1 when going to 320 channels as LiteMedSAM does), 1 × 1."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C', H', W')."""
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


def _offset_index(window: int) -> Tuple[int, torch.Tensor]:
    """Relative-offset table of a window: number of distinct |Δy|, |Δx| offsets and an (N, N) index into it,
    offsets numbered in order of first appearance over row-major point pairs (the checkpoint's order)."""
    pts = list(itertools.product(range(window), range(window)))
    seen: dict = {}
    idx = []
    for p in pts:
        for q in pts:
            off = (abs(p[0] - q[0]), abs(p[1] - q[1]))
            idx.append(seen.setdefault(off, len(seen)))
    return len(seen), torch.tensor(idx, dtype=torch.long).view(len(pts), len(pts))


class WindowAttention(nn.Module):
    """Multi-head attention inside a window with a learned bias per head and relative offset."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        n_off, idx = _offset_index(window)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, n_off))
        self.register_buffer("attention_bias_idxs", idx, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B', N, C) tokens of B' windows → (B', N, C)."""
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim).transpose(1, 2)
        q, k, v = qkv.split(self.key_dim, dim=-1)  # per head: [q | k | v], as the checkpoint is laid out
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(y.transpose(1, 2).reshape(b, n, -1))


class TinyViTBlock(nn.Module):
    """Window attention (zero-padded windows) + depth-wise 3 × 3 conv + MLP, each residual."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.local_conv = Conv2dBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) → (B, H, W, C)."""
        b, h, w, c = x.shape
        ws = self.window
        pb, pr = (-h) % ws, (-w) % ws
        y = F.pad(x, (0, 0, 0, pr, 0, pb)) if pb or pr else x
        nh, nw = (h + pb) // ws, (w + pr) // ws
        y = y.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        y = self.attn(y)
        y = y.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, h + pb, w + pr, c)[:, :h, :w]
        x = x + y
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks at full resolution, then patch merging."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, out_dim: int, stride: int, band_rows: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)
        self.band_rows = band_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C', H', W')."""
        for blk in self.blocks:
            rows = self.band_rows
            if self.training or rows <= 0 or rows >= x.shape[-2]:
                x = blk(x)
            else:
                h = x.shape[-2]
                x = torch.cat([blk.forward_band(x, t, min(t + rows, h)) for t in range(0, h, rows)], dim=-2)
        return self.downsample(x)


class AttentionStage(nn.Module):
    """Stages 1–3: TinyViT blocks at a fixed resolution, then (except the last) patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, local_conv_size: int,
                 out_dim: int | None, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TinyViTBlock(dim, num_heads, window, mlp_ratio, local_conv_size)
                                    for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C', H', W')."""
        x = x.permute(0, 2, 3, 1)
        for blk in self.blocks:
            x = blk(x)
        x = x.permute(0, 3, 1, 2)
        return self.downsample(x) if self.downsample is not None else x


class TinyViTEncoder(nn.Module):
    """images (B, 3, S, S), ImageNet-normalised as the engine prepares them → ([embedding (B, 256, S/4, S/4)], [pos])."""

    def __init__(self, cfg: TinyViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dims
        self.patch_embed = PatchEmbed(3, d[0])
        layers: List[nn.Module] = []
        res = cfg.resolutions
        for i in range(len(cfg.depths)):
            out = d[i + 1] if i + 1 < len(d) else None
            stride = 1 if out is None or i + 1 >= len(res) else res[i] // res[i + 1]
            if i == 0:
                layers.append(ConvStage(d[0], cfg.depths[0], cfg.mbconv_expand_ratio, d[1], stride, cfg.band_rows))
            else:
                layers.append(AttentionStage(d[i], cfg.depths[i], cfg.num_heads[i], cfg.window_sizes[i], cfg.mlp_ratio,
                                             cfg.local_conv_size, out, stride))
        self.layers = nn.ModuleList(layers)
        self.neck = nn.Sequential(
            nn.Conv2d(d[-1], cfg.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans),
        )
        self.position_encoding = SinePositionEncoding2d(cfg.out_chans)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw encoder: (B, 3, S, S) in the encoder's own input scale → (B, 256, S/4, S/4)."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)

    def forward(self, x: torch.Tensor, num_frames: int = 1) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        if self.cfg.input_unit_range:  # undo the engine's ImageNet normalisation: LiteMedSAM sees [0, 1]
            x = x * self.pixel_std.to(x.dtype) + self.pixel_mean.to(x.dtype)
        emb = self.embed(x)
        return [emb], [self.position_encoding(emb).to(emb.dtype)]
