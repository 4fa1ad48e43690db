"""Memory policies: what a session keeps from processed frames and what each new frame attends to.

One small interface (`MemoryPolicy`), three policies chosen by name:

- ``fifo`` (SAM 2): prompted (conditioning) frames + the last ``num_maskmem - 1`` frames in the
  tracking direction + object pointers of recent frames. Reproduces the official video predictor.
- ``self_sorting`` (Medical SAM 2): a fixed-capacity bank kept confident *and* diverse,
  independent of temporal order. Default: the paper's rule (admit entries whose predicted IoU is
  above a threshold; when full keep the K entries with the largest total dissimilarity; sample
  the entries to attend to with probabilities from normalised similarity to the current frame).
  ``rule="released"``: the released code's rule (replace the entry j most similar to the
  new entry's least-similar partner i, if the new entry adds diversity and IoU_new > IoU_j - 0.1).
- ``confidence`` (SAMed-2): one global bank of capacity N; retrieval = top-k by
  max(cosine(query, key), 0) + λ·confidence; update: a new entry replaces the most similar stored
  entry only if its confidence is higher (fixed capacity); entries below a confidence threshold
  are not admitted. A bank can be saved to disk and loaded.

Keys are the globally pooled image embeddings of the frames, (C,), L2-normalised.
Prompted frames are always attended to, whatever the policy.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ..config import SAM2Config
from .entry import FrameMemory
from .fifo import select_fifo

Selection = Tuple[List[Tuple[int, FrameMemory]], List[Tuple[int, FrameMemory]], int]


def pooled_key(vision_feats: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) image embedding → (B, C) L2-normalised retrieval key (fp32)."""
    return F.normalize(vision_feats.float().mean(dim=(-2, -1)), dim=-1)


def confidence_of(entry: FrameMemory) -> float:
    """Predicted IoU × object presence probability of an entry (a scalar in [0, 1])."""
    iou = float(entry.iou.float().mean()) if entry.iou is not None else 1.0
    pres = float(torch.sigmoid(entry.object_score_logits.float()).mean())
    return max(0.0, min(1.0, iou)) * pres


class MemoryPolicy(ABC):
    """What to remember and what to attend to. Holds entries; never touches the model."""

    name = "base"

    def __init__(self, cfg: SAM2Config) -> None:
        self.cfg = cfg
        self.cond: Dict[int, FrameMemory] = {}

    def add_conditioning(self, entry: FrameMemory) -> None:
        """A prompted frame: always attended to."""
        entry.is_cond = True
        self.cond[entry.frame_idx] = entry

    def remove_conditioning(self, frame_idx: int) -> None:
        self.cond.pop(frame_idx, None)

    @abstractmethod
    def add(self, entry: FrameMemory, key: Optional[torch.Tensor] = None) -> None:
        """Offer the memory of a tracked (non-prompted) frame; the policy decides whether to keep it."""

    @abstractmethod
    def select(self, frame_idx: int, num_frames: int, reverse: bool = False,
               query_key: Optional[torch.Tensor] = None) -> Selection:
        """Memories for a frame → (mask memories as (t_pos, entry), pointers as (t_diff, entry), ptr_tpos_max)."""

    def start_pass(self, reverse: bool, start: Optional[int] = None) -> None:
        """Called when a propagation pass starts (in one direction, at slice `start`)."""

    @property
    def needs_key(self) -> bool:
        return False

    def num_entries(self) -> int:
        return len(self.cond)


class FifoPolicy(MemoryPolicy):
    """SAM 2: conditioning frames + last frames; bounded (only the window is kept)."""

    name = "fifo"

    def __init__(self, cfg: SAM2Config, keep_all: bool = False) -> None:
        super().__init__(cfg)
        self.non_cond: Dict[int, FrameMemory] = {}
        self.keep_all = keep_all
        self._reverse = False

    def add_conditioning(self, entry: FrameMemory) -> None:
        super().add_conditioning(entry)
        self.non_cond.pop(entry.frame_idx, None)  # a corrected slice is remembered once, as conditioning

    def start_pass(self, reverse: bool, start: Optional[int] = None) -> None:
        self._reverse = reverse
        if not self.keep_all:  # keep what the first slices of this pass can select (as SAM 2 would)
            reach = self._reach()
            for t in [t for t in self.non_cond if start is None or abs(t - start) > reach]:
                del self.non_cond[t]

    def _reach(self) -> int:
        return max(self.cfg.num_maskmem * max(self.cfg.memory_temporal_stride_for_eval, 1),
                   self.cfg.max_obj_ptrs_in_encoder) + 1

    def add(self, entry: FrameMemory, key: Optional[torch.Tensor] = None) -> None:
        self.non_cond[entry.frame_idx] = entry
        if not self.keep_all:
            self._prune(entry.frame_idx)

    def _prune(self, current: int) -> None:
        """Drop memories that no later frame of this pass can select (bounded memory)."""
        reach = self._reach()
        sign = -1 if self._reverse else 1
        for t in [t for t in self.non_cond if sign * (current - t) > reach]:
            del self.non_cond[t]

    def select(self, frame_idx, num_frames, reverse=False, query_key=None) -> Selection:
        return select_fifo(frame_idx, self.cond, self.non_cond, self.cfg, num_frames, reverse)

    def num_entries(self) -> int:
        return len(self.cond) + len(self.non_cond)


@dataclass
class _Bank:
    entries: List[FrameMemory] = field(default_factory=list)
    keys: List[torch.Tensor] = field(default_factory=list)  # each (C,)
    conf: List[float] = field(default_factory=list)

    def key_matrix(self) -> torch.Tensor:
        return torch.stack(self.keys) if self.keys else torch.zeros(0, 0)


class _BankPolicy(MemoryPolicy):
    """Shared parts of the bank policies: the last frame is always attended to (local continuity,
    switchable), bank entries are attended as order-free memories (t_pos 0, pointer distance 0)."""

    def __init__(self, cfg: SAM2Config, capacity: int, k: int, use_last: bool = True) -> None:
        super().__init__(cfg)
        if capacity < 1 or k < 1:
            raise ValueError("capacity and k must be positive")
        self.capacity, self.k, self.use_last = capacity, k, use_last
        self.bank = _Bank()
        self.last: Optional[FrameMemory] = None

    @property
    def needs_key(self) -> bool:
        return True

    def start_pass(self, reverse: bool, start: Optional[int] = None) -> None:
        self.last = None

    def _retrieve(self, query_key: Optional[torch.Tensor]) -> List[int]:
        raise NotImplementedError

    def select(self, frame_idx, num_frames, reverse=False, query_key=None) -> Selection:
        mems: List[Tuple[int, FrameMemory]] = [(0, e) for e in self.cond.values()]
        ptrs: List[Tuple[int, FrameMemory]] = []
        sign = -1 if reverse else 1
        for t, e in self.cond.items():
            if t <= frame_idx if not reverse else t >= frame_idx:
                ptrs.append(((frame_idx - t) * sign if self.cfg.use_signed_tpos_enc_to_obj_ptrs
                             else abs(frame_idx - t), e))
        chosen = self._retrieve(query_key) if self.bank.entries else []
        seen = {id(e) for _, e in mems}
        for i in chosen:
            e = self.bank.entries[i]
            if id(e) not in seen:
                mems.append((0, e))
                ptrs.append((0, e))
                seen.add(id(e))
        if self.use_last and self.last is not None and id(self.last) not in seen:
            mems.append((self.cfg.num_maskmem - 1, self.last))  # t_pos of "one frame back"
            ptrs.append((1, self.last))
        max_ptrs = min(num_frames, self.cfg.max_obj_ptrs_in_encoder)
        return mems[: max(self.cfg.num_maskmem, len(self.cond))], ptrs[:max_ptrs], max(max_ptrs - 1, 1)

    def num_entries(self) -> int:
        return len(self.cond) + len(self.bank.entries) + (self.last is not None)


class SelfSortingPolicy(_BankPolicy):
    """Medical SAM 2's self-sorting memory bank (paper rule by default, released rule as an option)."""

    name = "self_sorting"

    def __init__(self, cfg: SAM2Config, capacity: int = 16, k: int = 4, iou_threshold: float = 0.8,
                 rule: str = "paper", use_last: bool = True, seed: int = 0, sample: bool = False) -> None:
        super().__init__(cfg, capacity, k, use_last)
        if rule not in ("paper", "released"):
            raise ValueError("rule must be 'paper' or 'released'")
        self.iou_threshold, self.rule, self.sample = iou_threshold, rule, sample
        self.gen = torch.Generator().manual_seed(seed)

    def add(self, entry: FrameMemory, key: Optional[torch.Tensor] = None) -> None:
        self.last = entry
        if key is None:
            raise ValueError("self_sorting needs the frame's key")
        conf = confidence_of(entry)
        b = self.bank
        if self.rule == "paper":
            if conf < self.iou_threshold:
                return
            b.entries.append(entry), b.keys.append(key.float().cpu()), b.conf.append(conf)
            if len(b.entries) > self.capacity:  # keep the K most mutually dissimilar entries
                km = b.key_matrix()
                sim = km @ km.T
                total_dissim = (1 - sim).sum(dim=1)
                drop = int(torch.argmin(total_dissim))
                for lst in (b.entries, b.keys, b.conf):
                    del lst[drop]
            return
        # released rule
        if len(b.entries) < self.capacity:
            b.entries.append(entry), b.keys.append(key.float().cpu()), b.conf.append(conf)
            return
        km = b.key_matrix()
        new = key.float().cpu()
        sim_new = km @ new
        i = int(torch.argmin(sim_new))            # stored entry least similar to the new one
        sim_i = km @ km[i]
        sim_i[i] = -math.inf
        j = int(torch.argmax(sim_i))              # entry most similar to i
        if float(sim_new[i]) < float(sim_i[j]) and conf > b.conf[j] - 0.1:
            b.entries[j], b.keys[j], b.conf[j] = entry, new, conf

    def _retrieve(self, query_key):
        km = self.bank.key_matrix()
        n = km.shape[0]
        k = min(self.k, n)
        if query_key is None:
            return list(range(n))[-k:]
        sim = km @ query_key.float().cpu().reshape(-1)
        if not self.sample:  # deterministic: the k most similar
            return torch.topk(sim, k).indices.tolist()
        probs = torch.softmax(sim, dim=0)
        return torch.multinomial(probs, k, replacement=False, generator=self.gen).tolist()


class ConfidencePolicy(_BankPolicy):
    """SAMed-2's confidence-driven memory: global bank, top-k retrieval by similarity + confidence."""

    name = "confidence"

    def __init__(self, cfg: SAM2Config, capacity: int = 640, k: int = 4, threshold: float = 0.5,
                 conf_weight: float = 1.0, use_last: bool = True, frozen: bool = False) -> None:
        super().__init__(cfg, capacity, k, use_last)
        self.threshold, self.conf_weight, self.frozen = threshold, conf_weight, frozen

    def add(self, entry: FrameMemory, key: Optional[torch.Tensor] = None) -> None:
        self.last = entry
        if self.frozen:
            return
        if key is None:
            raise ValueError("confidence memory needs the frame's key")
        self.offer(entry, key.float().cpu().reshape(-1), confidence_of(entry))

    def offer(self, entry: FrameMemory, key: torch.Tensor, conf: float) -> bool:
        """Admit an entry under the confidence rule; True if the bank changed."""
        b = self.bank
        if conf < self.threshold:
            return False
        if len(b.entries) < self.capacity:
            b.entries.append(entry), b.keys.append(key), b.conf.append(conf)
            return True
        j = int(torch.argmax(b.key_matrix() @ key))  # most similar stored entry
        if conf > b.conf[j]:
            b.entries[j], b.keys[j], b.conf[j] = entry, key, conf
            return True
        return False

    def scores(self, query_key: torch.Tensor) -> torch.Tensor:
        km = self.bank.key_matrix()
        sim = (km @ query_key.float().cpu().reshape(-1)).clamp_min(0)
        return sim + self.conf_weight * torch.tensor(self.bank.conf)

    def _retrieve(self, query_key):
        n = len(self.bank.entries)
        k = min(self.k, n)
        if query_key is None:
            return torch.topk(torch.tensor(self.bank.conf), k).indices.tolist()
        return torch.topk(self.scores(query_key), k).indices.tolist()

    # --- persistence -------------------------------------------------------------------------
    def save(self, path: Union[str, Path]) -> Path:
        """Write the bank (entries, keys, confidences) to a safetensors file, atomically."""
        import json

        from safetensors.torch import save_file

        from ..atomic import atomic_path

        t: Dict[str, torch.Tensor] = {}
        for i, (e, key) in enumerate(zip(self.bank.entries, self.bank.keys)):
            t[f"{i}.key"] = key.contiguous()
            t[f"{i}.maskmem_features"] = e.maskmem_features.float().cpu().contiguous()
            t[f"{i}.maskmem_pos"] = e.maskmem_pos.float().cpu().clone()
            t[f"{i}.obj_ptr"] = e.obj_ptr.float().cpu().contiguous()
            t[f"{i}.object_score_logits"] = e.object_score_logits.float().cpu().contiguous()
        meta = {"medmem_bank": json.dumps({"n": len(self.bank.entries), "conf": self.bank.conf,
                                           "config": self.cfg.name, "mem_dim": self.cfg.mem_dim})}
        with atomic_path(path) as tmp:
            save_file(t, str(tmp), metadata=meta)
        return Path(path)

    def load(self, path: Union[str, Path]) -> None:
        """Replace the bank by one saved with `save` (checked against this model's memory width)."""
        import json

        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("medmem_bank", "null") or "null")
            if meta is None:
                raise ValueError(f"{path} is not a medmem memory bank")
            if meta["mem_dim"] != self.cfg.mem_dim:
                raise ValueError(f"bank has memory width {meta['mem_dim']}, model {self.cfg.mem_dim}")
            bank = _Bank()
            for i in range(meta["n"]):
                e = FrameMemory(-1, f.get_tensor(f"{i}.maskmem_features"), f.get_tensor(f"{i}.maskmem_pos"),
                                f.get_tensor(f"{i}.obj_ptr"), torch.zeros(0),
                                f.get_tensor(f"{i}.object_score_logits"))
                bank.entries.append(e)
                bank.keys.append(f.get_tensor(f"{i}.key"))
                bank.conf.append(float(meta["conf"][i]))
        self.bank = bank


POLICIES = {"fifo": FifoPolicy, "self_sorting": SelfSortingPolicy, "confidence": ConfidencePolicy}


def make_policy(name: Union[str, MemoryPolicy], cfg: SAM2Config, **kwargs) -> MemoryPolicy:
    """A policy by name (`fifo`, `self_sorting`, `confidence`) with its keyword options."""
    if isinstance(name, MemoryPolicy):
        return name
    if name not in POLICIES:
        raise ValueError(f"unknown memory policy {name!r}; choose from {', '.join(POLICIES)}")
    return POLICIES[name](cfg, **kwargs)
