"""2D axial rotary position embedding with real-valued sin/cos (no complex tensors: exports to ONNX)."""
from __future__ import annotations

from typing import Dict, Tuple

import torch


def axial_rope_angles(head_dim: int, h: int, w: int, theta: float = 10000.0,
                      device: torch.device | None = None) -> torch.Tensor:
    """Rotation angles (h*w, head_dim/2) for tokens in row-major order.

    The first head_dim/4 pairs rotate with the column index x, the next head_dim/4 with the row y.
    """
    n = head_dim // 4
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 4, device=device)[:n].float() / head_dim))
    t = torch.arange(h * w, dtype=torch.float32, device=device)
    tx = t % w
    ty = torch.div(t, w, rounding_mode="floor")
    return torch.cat([torch.outer(tx, inv), torch.outer(ty, inv)], dim=-1)


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs (x0, x1) of x (..., N, D) by angles with cos/sin (N, D/2)."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = xf[..., 0], xf[..., 1]
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)
    return out.type_as(x)


class AxialRoPE:
    """Caches cos/sin tables per (h, w, device). Not an nn.Module: holds no state-dict entries."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        self.head_dim = head_dim
        self.theta = theta
        self._cache: Dict[Tuple[int, int, str], Tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, h: int, w: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        key = (h, w, str(device))
        if key not in self._cache:
            ang = axial_rope_angles(self.head_dim, h, w, self.theta, device)
            self._cache[key] = (ang.cos(), ang.sin())
        return self._cache[key]

    def apply(self, q: torch.Tensor, k: torch.Tensor, hw: Tuple[int, int], num_k_exclude: int = 0,
              repeat_k: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """Rotate q (B, heads, Nq, D) and the first Nk - num_k_exclude tokens of k.

        With `repeat_k`, k holds several frames' worth of tokens and the tables are tiled.
        """
        cos, sin = self.tables(hw[0], hw[1], q.device)
        q = rotate_pairs(q, cos, sin)
        nk = k.shape[-2] - num_k_exclude
        if nk == 0:
            return q, k
        if nk != cos.shape[0]:
            if not repeat_k or nk % cos.shape[0]:
                raise ValueError(f"RoPE: {nk} key tokens do not tile {cos.shape[0]} positions")
            r = nk // cos.shape[0]
            cos, sin = cos.repeat(r, 1), sin.repeat(r, 1)
        k_rot = rotate_pairs(k[..., :nk, :], cos, sin)
        if num_k_exclude:
            k_rot = torch.cat([k_rot, k[..., nk:, :]], dim=-2)
        return q, k_rot
