"""Memory encoder: fuses a predicted mask with the frame's features into a compact memory."""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn

from .common import DropPath, LayerNorm2d
from .position_encoding import SinePositionEncoding2d


class MaskDownSampler(nn.Module):
    """(B, 1, S, S) mask → (B, dim, S/16, S/16) with strided convs (3×3, stride 2) + LayerNorm + GELU."""

    def __init__(self, dim: int, kernel_size: int = 3, stride: int = 2, padding: int = 1, total_stride: int = 16) -> None:
        super().__init__()
        n = int(math.log2(total_stride) // math.log2(stride))
        self.encoder = nn.Sequential()
        cin = 1
        for _ in range(n):
            cout = cin * stride**2
            self.encoder.append(nn.Conv2d(cin, cout, kernel_size, stride, padding))
            self.encoder.append(LayerNorm2d(cout))
            self.encoder.append(nn.GELU())
            cin = cout
        self.encoder.append(nn.Conv2d(cin, dim, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depth-wise 7×7 conv, LayerNorm, pointwise MLP, layer scale."""

    def __init__(self, dim: int, kernel_size: int = 7, padding: int = 3, layer_scale_init: float = 1e-6,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init * torch.ones(dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class Fuser(nn.Module):
    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.proj = nn.Identity()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, fuser_layers: int = 2) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim, fuser_layers)
        self.position_encoding = SinePositionEncoding2d(out_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()

    def forward(self, pix_feat: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """pix_feat (B, C, h, w), mask (B, 1, 16h, 16w) already squashed → (features (B, M, h, w), pos (B, M, h, w))."""
        m = self.mask_downsampler(mask)
        x = self.pix_feat_proj(pix_feat.to(m.device)) + m
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x)
