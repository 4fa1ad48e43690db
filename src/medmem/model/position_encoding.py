"""Position encodings: 2D sine (feature maps), random Fourier (prompts), 1D sine (time)."""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
from torch import nn


def sine_encoding_1d(pos: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Transformer sine encoding of positions `pos` (N,) → (N, dim): [sin(all freqs), cos(all freqs)]."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=pos.device)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / half)
    angles = pos.unsqueeze(-1) / freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class SinePositionEncoding2d(nn.Module):
    """DETR-style normalised sine encoding of a (H, W) grid → (B, num_feats, H, W).

    Channels: first half encodes y, second half x; within each, (sin, cos) pairs per frequency.
    Stateless apart from a small cache; no parameters.
    """

    def __init__(self, num_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        if num_feats % 2:
            raise ValueError("num_feats must be even")
        self.half = num_feats // 2
        self.temperature = temperature
        self._cache: Dict[Tuple[int, int, str], torch.Tensor] = {}

    def _axis(self, n: int, device: torch.device) -> torch.Tensor:
        eps = 1e-6
        p = torch.arange(1, n + 1, dtype=torch.float32, device=device)
        p = p / (p[-1] + eps) * (2 * math.pi)
        k = torch.arange(self.half, dtype=torch.float32, device=device)
        freq = self.temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / self.half)
        a = p[:, None] / freq  # (n, half)
        return torch.stack([a[:, 0::2].sin(), a[:, 1::2].cos()], dim=-1).flatten(1)  # (n, half)

    @torch.no_grad()
    def grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self._cache:
            ey = self._axis(h, device)[:, None, :].expand(h, w, self.half)
            ex = self._axis(w, device)[None, :, :].expand(h, w, self.half)
            self._cache[key] = torch.cat([ey, ex], dim=-1).permute(2, 0, 1).contiguous()
        return self._cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) → (B, num_feats, H, W) in x's dtype."""
        pe = self.grid(x.shape[-2], x.shape[-1], x.device)
        return pe.unsqueeze(0).expand(x.shape[0], -1, -1, -1).to(x.dtype)


class RandomFourierEncoding(nn.Module):
    """SAM's random spatial-frequency encoding of normalised (x, y) coordinates."""

    def __init__(self, num_feats: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, num_feats))

    def encode(self, coords01: torch.Tensor) -> torch.Tensor:
        """coords01 (..., 2) in [0, 1] → (..., 2 * num_feats)."""
        c = (2 * coords01 - 1) @ self.positional_encoding_gaussian_matrix
        c = 2 * math.pi * c
        return torch.cat([c.sin(), c.cos()], dim=-1)

    def grid(self, h: int, w: int) -> torch.Tensor:
        """Encoding of pixel centres of an (h, w) grid → (2 * num_feats, h, w)."""
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        xy = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self.encode(xy).permute(2, 0, 1)

    def encode_points(self, points: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
        """points (B, N, 2) in pixels (x, y) of an image of size image_hw → (B, N, 2 * num_feats)."""
        h, w = image_hw
        norm = points.float() / torch.tensor([w, h], dtype=torch.float32, device=points.device)
        return self.encode(norm)
