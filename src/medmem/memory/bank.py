"""A fixed-capacity memory bank: entries, their retrieval keys, mask-memory keys and confidences.

Pure storage plus persistence; *which* entries enter and leave is decided by the policies
(`memory/policies.py`). Keys:

- retrieval key (`feature_key` of the memory-conditioned image features, (D,) with
  D = C·g², L2-normalised): compared with the current frame's raw features at retrieval;
- mask-memory key (`feature_key` of the entry's mask-memory features, (M·g²,)): what replacement
  and diversity are measured on (as the released MedSAM-2 / SAMed-2 code does on the full
  mask-memory features).

Keys are average-pooled to a g × g grid (``grid``, default 4; 0 = no pooling, the full map as the
released code uses). Why pooled: a full key is C·64·64 ≈ 1 M numbers per entry at 1024² (2.7 GB for
SAMed-2's 640 entries) while a global mean (g = 1) forgets *where* things are and lets one slice
retrieve slices across the body; a 4 × 4 grid keeps the coarse layout at 16·C numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

import torch
import torch.nn.functional as F

from ..config import SAM2Config
from .entry import FrameMemory

BANK_FORMAT = "medmem_bank_v2"


def feature_key(x: torch.Tensor, grid: int = 4) -> torch.Tensor:
    """Feature maps (B, C, h, w) → (B, C·g²) L2-normalised fp32 keys (average-pooled to g × g; g = 0: unpooled)."""
    x = x.float()
    if grid > 0 and tuple(x.shape[-2:]) != (grid, grid):
        x = F.adaptive_avg_pool2d(x, grid)
    return F.normalize(x.flatten(1), dim=-1)


def is_empty(entry: FrameMemory) -> bool:
    """True when an entry's predicted mask has no foreground pixel (or the object is absent)."""
    if entry.object_score_logits is not None and bool((entry.object_score_logits.float() <= 0).all()):
        return True
    pm = entry.pred_masks
    return pm is not None and pm.numel() > 0 and not bool((pm.float() > 0).any())


@dataclass
class MemoryBank:
    """Entries with a retrieval key (D,), a mask-memory key (D_m,) and a confidence each; capacity fixed."""

    capacity: int = 16
    grid: int = 4
    entries: List[FrameMemory] = field(default_factory=list)
    keys: List[torch.Tensor] = field(default_factory=list)
    mem_keys: List[torch.Tensor] = field(default_factory=list)
    conf: List[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("bank capacity must be positive")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def full(self) -> bool:
        return len(self.entries) >= self.capacity

    def mem_key(self, entry: FrameMemory) -> torch.Tensor:
        """(D_m,) key of an entry's mask-memory features."""
        return feature_key(entry.maskmem_features, self.grid)[0].cpu()

    def append(self, entry: FrameMemory, key: torch.Tensor, conf: float) -> None:
        self.entries.append(entry)
        self.keys.append(key.float().cpu().reshape(-1))
        self.mem_keys.append(self.mem_key(entry))
        self.conf.append(float(conf))

    def replace(self, j: int, entry: FrameMemory, key: torch.Tensor, conf: float) -> None:
        self.entries[j], self.keys[j] = entry, key.float().cpu().reshape(-1)
        self.mem_keys[j], self.conf[j] = self.mem_key(entry), float(conf)

    def drop(self, j: int) -> None:
        for lst in (self.entries, self.keys, self.mem_keys, self.conf):
            del lst[j]

    def key_matrix(self) -> torch.Tensor:
        """(N, D) retrieval keys."""
        return torch.stack(self.keys) if self.keys else torch.zeros(0, 0)

    def mem_key_matrix(self) -> torch.Tensor:
        """(N, D_m) mask-memory keys."""
        return torch.stack(self.mem_keys) if self.mem_keys else torch.zeros(0, 0)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Union[str, Path], cfg: SAM2Config, fingerprint: Optional[str] = None) -> Path:
        """Write the bank to a safetensors file (atomically) with the model config name, memory and key widths."""
        from safetensors.torch import save_file

        from ..atomic import atomic_path

        t = {}
        for i, (e, k) in enumerate(zip(self.entries, self.keys)):
            t[f"{i}.key"] = k.contiguous()
            t[f"{i}.maskmem_features"] = e.maskmem_features.float().cpu().contiguous()
            t[f"{i}.maskmem_pos"] = e.maskmem_pos.float().cpu().clone().contiguous()
            t[f"{i}.obj_ptr"] = e.obj_ptr.float().cpu().contiguous()
            t[f"{i}.object_score_logits"] = e.object_score_logits.float().cpu().contiguous()
            iou = e.iou if e.iou is not None else torch.ones(1, 1)
            t[f"{i}.iou"] = iou.float().cpu().contiguous()
        meta = {"format": BANK_FORMAT, "n": len(self.entries), "conf": self.conf, "capacity": self.capacity,
                "grid": self.grid, "config": cfg.name, "mem_dim": cfg.mem_dim, "hidden_dim": cfg.hidden_dim,
                "key_dim": int(self.keys[0].numel()) if self.keys else None, "fingerprint": fingerprint}
        with atomic_path(path) as tmp:
            save_file(t, str(tmp), metadata={"medmem_bank": json.dumps(meta)})
        return Path(path)

    @classmethod
    def load(cls, path: Union[str, Path], cfg: SAM2Config, fingerprint: Optional[str] = None,
             capacity: Optional[int] = None, grid: Optional[int] = None) -> "MemoryBank":
        """A bank saved by `save`, refused unless it was made by a model of the same config, memory width,
        key width (and weights fingerprint, where both sides have one)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("medmem_bank", "null") or "null")
            if not isinstance(meta, dict):
                raise ValueError(f"{path} is not a medmem memory bank")
            if meta.get("format") != BANK_FORMAT:
                raise ValueError(f"{path}: bank format {meta.get('format')!r} is not {BANK_FORMAT!r}; save it again")
            problems = []
            if meta["config"] != cfg.name:
                problems.append(f"config {meta['config']!r} != {cfg.name!r}")
            if meta["mem_dim"] != cfg.mem_dim or meta.get("hidden_dim") != cfg.hidden_dim:
                problems.append(f"memory/hidden width {meta['mem_dim']}/{meta.get('hidden_dim')} != "
                                f"{cfg.mem_dim}/{cfg.hidden_dim}")
            g = meta["grid"] if grid is None else grid
            if g != meta["grid"]:
                problems.append(f"key grid {meta['grid']} != {g}")
            if fingerprint and meta.get("fingerprint") and fingerprint != meta["fingerprint"]:
                problems.append("it was made with other weights (fingerprint differs)")
            if problems:
                raise ValueError(f"{path}: this bank was not made by this model: " + "; ".join(problems))
            bank = cls(capacity=max(capacity or meta["capacity"], 1), grid=g)
            for i in range(meta["n"]):
                e = FrameMemory(-1, f.get_tensor(f"{i}.maskmem_features"), f.get_tensor(f"{i}.maskmem_pos"),
                                f.get_tensor(f"{i}.obj_ptr"), torch.zeros(0),
                                f.get_tensor(f"{i}.object_score_logits"), f.get_tensor(f"{i}.iou"))
                k = f.get_tensor(f"{i}.key")
                if meta.get("key_dim") is not None and k.numel() != meta["key_dim"]:
                    raise ValueError(f"{path}: entry {i} has key width {k.numel()}, bank says {meta['key_dim']}")
                bank.append(e, k, float(meta["conf"][i]))
        while len(bank) > bank.capacity:  # loaded into a smaller bank: keep the most confident
            bank.drop(min(range(len(bank)), key=lambda j: bank.conf[j]))
        return bank


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the memory encoder's weights: tells banks of different weights apart."""
    import hashlib

    h = hashlib.sha1()
    for name, p in sorted(model.state_dict().items()):
        if name.startswith("memory_encoder."):
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
