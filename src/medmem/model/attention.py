"""Multi-head attention with optional down-projection and 2D RoPE (SDPA kernels)."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .rope import AxialRoPE


class Attention(nn.Module):
    """Attention whose internal width is embedding_dim / downsample_rate; keys q/k/v/out_proj."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1, dropout: float = 0.0,
                 kv_in_dim: Optional[int] = None) -> None:
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide the internal dimension")
        kv_in_dim = kv_in_dim or embedding_dim
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k/v (B, Nk, Ckv) → (B, Nq, C)."""
        return self._attend(self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v)))


class RoPEAttention(Attention):
    """Attention with 2D axial RoPE on queries and keys (memory attention)."""

    def __init__(self, *args, rope_theta: float = 10000.0, rope_k_repeat: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rope = AxialRoPE(self.internal_dim // self.num_heads, rope_theta)
        self.rope_k_repeat = rope_k_repeat

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0,
                hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """q (B, H*W, C) for a square (or `hw`) grid; the last `num_k_exclude_rope` keys are not rotated."""
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        if hw is None:
            side = int(round(math.sqrt(q.shape[-2])))
            hw = (side, side)
        q, k = self.rope.apply(q, k, hw, num_k_exclude_rope, self.rope_k_repeat)
        return self._attend(q, k, v)
