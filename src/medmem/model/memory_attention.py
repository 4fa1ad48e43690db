"""Memory attention: current-frame tokens self-attend, then cross-attend to the memory bank (2D RoPE)."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from .attention import RoPEAttention


class MemoryAttentionLayer(nn.Module):
    def __init__(self, d_model: int, mem_dim: int, num_heads: int, ffn_dim: int, dropout: float,
                 rope_theta: float) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, num_heads, dropout=dropout, rope_theta=rope_theta)
        self.cross_attn_image = RoPEAttention(d_model, num_heads, dropout=dropout, rope_theta=rope_theta,
                                              rope_k_repeat=True, kv_in_dim=mem_dim)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, num_k_exclude_rope: int,
                hw: Tuple[int, int]) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.dropout1(self.self_attn(y, y, y, hw=hw))
        y = self.norm2(x)
        x = x + self.dropout2(self.cross_attn_image(y, memory + memory_pos, memory,
                                                     num_k_exclude_rope=num_k_exclude_rope, hw=hw))
        y = self.norm3(x)
        return x + self.dropout3(self.linear2(self.dropout(torch.relu(self.linear1(y)))))


class MemoryAttention(nn.Module):
    def __init__(self, d_model: int, mem_dim: int, num_layers: int, num_heads: int, ffn_dim: int,
                 dropout: float = 0.1, rope_theta: float = 10000.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d_model, mem_dim, num_heads, ffn_dim, dropout, rope_theta) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, curr: torch.Tensor, curr_pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                num_obj_ptr_tokens: int = 0, hw: Tuple[int, int] | None = None) -> torch.Tensor:
        """curr/curr_pos (B, HW, C); memory/memory_pos (B, N_mem, M) with object-pointer tokens last → (B, HW, C)."""
        if hw is None:
            side = int(round(curr.shape[1] ** 0.5))
            hw = (side, side)
        x = curr + 0.1 * curr_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_obj_ptr_tokens, hw)
        return self.norm(x)
