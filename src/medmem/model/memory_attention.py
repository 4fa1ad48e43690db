"""Memory attention: current-frame tokens self-attend, then cross-attend to the memory bank (2D RoPE)."""
from __future__ import annotations

import weakref
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import RoPEAttention
from .rope import rotate_pairs


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

    def forward_cached(self, curr: torch.Tensor, curr_pos: torch.Tensor, keys: List[torch.Tensor],
                       values: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        """`forward` with each layer's memory keys ready (see `MemoryKVCache`): curr/curr_pos (B, HW, C),
        keys[l] (B, N_mem, C), values (B, N_mem, M) → (B, HW, C). Inference only (no dropout)."""
        if self.training:
            raise RuntimeError("the cached memory-attention path is for inference; use forward() to train")
        x = curr + 0.1 * curr_pos
        for layer, k in zip(self.layers, keys):
            y = layer.norm1(x)
            x = x + layer.self_attn(y, y, y, hw=hw)
            y = layer.norm2(x)
            x = x + cross_attention_fast(layer.cross_attn_image, y, k, values, hw)
            y = layer.norm3(x)
            x = x + layer.linear2(torch.relu(layer.linear1(y)))
        return self.norm(x)

    def memory_keys(self, tokens: torch.Tensor, hw: Optional[Tuple[int, int]]) -> List[torch.Tensor]:
        """Keys of memory tokens (B, N, M) (features + position encoding) per layer: k_proj, then RoPE on the
        `hw` grid (tiled when N covers several grids; None: pointer tokens, not rotated) → [(B, N, C)] per layer."""
        out = []
        for layer in self.layers:
            attn = layer.cross_attn_image
            k = attn.k_proj(tokens)
            if hw is not None:
                cos, sin = attn.rope.tables(hw[0], hw[1], k.device)
                r = k.shape[-2] // cos.shape[0]
                if r * cos.shape[0] != k.shape[-2]:
                    raise ValueError(f"RoPE: {k.shape[-2]} key tokens do not tile {cos.shape[0]} positions")
                if r > 1:
                    cos, sin = cos.repeat(r, 1), sin.repeat(r, 1)
                k = _merge_heads(rotate_pairs(attn._heads(k), cos, sin))
            out.append(k)
        return out

    def slot_keys(self, tpos: torch.Tensor, hw: Tuple[int, int]) -> List[torch.Tensor]:
        """What a temporal-slot encoding tpos (M,) adds to rotated keys, per layer: rope(W_k · tpos) → [(HW, C)]."""
        out = []
        for layer in self.layers:
            attn = layer.cross_attn_image
            k = F.linear(tpos, attn.k_proj.weight).expand(hw[0] * hw[1], -1)   # no bias: it is in the entry's keys
            cos, sin = attn.rope.tables(hw[0], hw[1], k.device)
            out.append(_merge_heads(rotate_pairs(attn._heads(k.unsqueeze(0)), cos, sin))[0])
        return out


# ---------------------------------------------------------------------------------------------------------------
# Fast path (inference). The plain path above projects and rotates every memory's keys again for every new
# frame. Here the keys of a memory entry, rope(k_proj(features + pos)), are computed once per layer and kept
# (`MemoryKVCache`); the temporal encoding of the entry's slot, which changes from frame to frame, enters as
# rope(W_k · tpos[t]), a per-slot table added at use (k_proj and the rotation are linear, so the sum is the
# same key to float rounding). Values are projected at use (a small GEMM: caching them would double the memory).
# ---------------------------------------------------------------------------------------------------------------


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def cross_attention_fast(attn: RoPEAttention, y: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                         hw: Tuple[int, int]) -> torch.Tensor:
    """Cross-attention to ready keys: y (B, HW, C) queries; keys (B, Nk, C) already projected (and rotated where
    RoPE applies); values (B, Nk, M) before v_proj → (B, HW, C). Equals `attn(y, k_in, values, ...)` (eval)."""
    q = attn._heads(attn.q_proj(y))
    cos, sin = attn.rope.tables(hw[0], hw[1], q.device)
    q = rotate_pairs(q, cos, sin)
    out = F.scaled_dot_product_attention(q, attn._heads(keys), attn._heads(attn.v_proj(values)))
    return attn.out_proj(_merge_heads(out))


class MemoryKVCache:
    """Keys of memory entries for the fast memory-attention path, computed once per entry and layer.

    Entries are identified by their tensors (features and position encoding objects, not values): a memory
    whose tensors are replaced is a new entry, and an entry is forgotten as soon as its features tensor is
    freed. Entries not used in the last `max_idle` calls are dropped as well (so the cache holds the working
    set: with SAM 2's FIFO memory, the prompted frames and the last frames). The whole cache is cleared when
    the weights it depends on change (in-place updates included). Memories must not be modified in place
    (the engine never does): tensors created under `torch.inference_mode` have no version counter to tell.
    One cache per tracked object (its entries), or shared: entries are independent.
    """

    def __init__(self, max_idle: int = 0) -> None:
        self.max_idle = max_idle
        self._entries: Dict[Tuple[int, int], dict] = {}
        self._slots: Dict[tuple, List[torch.Tensor]] = {}
        self._stamp: Optional[tuple] = None
        self._calls = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._slots.clear()

    @staticmethod
    def _version(t: torch.Tensor) -> int:
        try:
            return t._version
        except RuntimeError:  # inference tensor: no version counter
            return -1

    def check_weights(self, params: Sequence[torch.Tensor]) -> None:
        """Clear the cache if any of `params` was replaced or updated since the last call."""
        stamp = tuple((id(p), p.data_ptr(), self._version(p), p.dtype, p.device) for p in params)
        if stamp != self._stamp:
            self.clear()
            self._stamp = stamp

    def begin(self) -> None:
        """Start a call: entries idle for more than `max_idle` calls are dropped when it ends (`end`)."""
        self._calls += 1

    def end(self) -> None:
        for key in [k for k, e in self._entries.items() if self._calls - e["used"] > self.max_idle]:
            del self._entries[key]

    def entry_keys(self, features: torch.Tensor, pos: torch.Tensor, make) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """(keys per layer, value tokens) of the memory (features, pos); `make()` computes them on a miss."""
        key = (id(features), id(pos))
        e = self._entries.get(key)
        if (e is not None and e["features"]() is features and e["pos"]() is pos
                and e["versions"] == (self._version(features), self._version(pos))):
            self.hits += 1
        else:
            self.misses += 1
            keys, values = make()
            e = {"features": weakref.ref(features, lambda _r, k=key: self._entries.pop(k, None)),
                 "pos": weakref.ref(pos), "versions": (self._version(features), self._version(pos)),
                 "keys": keys, "values": values}
            self._entries[key] = e
        e["used"] = self._calls
        return e["keys"], e["values"]

    def slot_keys(self, slot: int, hw: Tuple[int, int], make) -> List[torch.Tensor]:
        """rope(W_k · tpos[slot]) per layer on an hw grid (cleared with the weights)."""
        key = (slot, tuple(hw))
        if key not in self._slots:
            self._slots[key] = make()
        return self._slots[key]
