"""Memory policies: what a session keeps from processed frames and what each new frame attends to.

One small interface (`MemoryPolicy`), three policies chosen by name:

- ``fifo`` (SAM 2): prompted (conditioning) frames + the last ``num_maskmem - 1`` frames in the
  tracking direction + object pointers of recent frames. Reproduces the official video predictor.
- ``self_sorting`` (Medical SAM 2): a bank of capacity 16 kept confident *and* diverse, independent
  of temporal order. Retrieval **samples** k entries with probabilities softmax(cosine similarity
  to the current frame) from a seeded generator (deterministic for a seed; ``sample=False``: the k
  most similar). Update: ``rule="paper"`` (default) admits entries whose predicted IoU passes the
  threshold and, when over capacity, drops the entry with the smallest total dissimilarity;
  ``rule="released"`` is the released code's rule (bank fills freely; when full, i = the stored
  entry least similar to the new one, j = the entry most similar to i; replace j if
  sim(new, i) < sim(i, j) and IoU_new > IoU_j - 0.1). Similarities for updates are measured on
  mask-memory features, as in the released code.
- ``confidence`` (SAMed-2): one bank of capacity 640; retrieval = top-k by
  max(cosine(query, key), 0) + λ·IoU; update: admit while not full, else replace the stored
  entry whose mask-memory features are most similar if the newcomer's predicted IoU is higher.
  Attended with the recent frames ("recent slices + bank", as in training).

For both bank policies: empty predicted masks never enter; the prompted frames and the ``recent``
frames are budgeted separately from the bank's k slots; confidence is the predicted IoU of the kept
mask (× object presence with ``use_presence=True``); thresholds are relative to the best predicted
IoU of the object's prompted frames (``relative=True``), so they follow the model's own scale.
Retrieval keys are memory-conditioned features of stored frames against the raw features of the
current frame, pooled to a grid (`memory.bank.feature_key`).
"""
from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from typing import Dict, Iterable, List, Optional, Tuple, Union

import torch

from ..config import SAM2Config
from .bank import MemoryBank, feature_key, is_empty
from .entry import FrameMemory
from .fifo import select_fifo

Selection = Tuple[List[Tuple[int, FrameMemory]], List[Tuple[int, FrameMemory]], int]


def confidence_of(entry: FrameMemory, use_presence: bool = False) -> float:
    """Predicted IoU of an entry in [0, 1] (× object presence probability with use_presence)."""
    iou = float(entry.iou.float().mean()) if entry.iou is not None else 1.0
    c = max(0.0, min(1.0, iou))
    if use_presence:
        c *= float(torch.sigmoid(entry.object_score_logits.float()).mean())
    return c


class MemoryPolicy(ABC):
    """What to remember and what to attend to. Holds entries; never touches the model."""

    name = "base"

    def __init__(self, cfg: SAM2Config) -> None:
        self.cfg = cfg
        self.cond: Dict[int, FrameMemory] = {}
        self.last_retrieved = 0  # bank entries in the last selection

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

    @property
    def key_grid(self) -> int:
        return 0

    def num_entries(self) -> int:
        return len(self.cond)

    def stats(self) -> dict:
        """What the policy holds now (for reports)."""
        return {"policy": self.name, "prompted": len(self.cond), "entries": self.num_entries()}


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


class BankPolicy(MemoryPolicy):
    """Shared parts of the bank policies.

    Memories of a frame = the prompted frames + the ``recent`` previous frames in the tracking
    direction (SAM 2's rule, `select_fifo`) + k entries retrieved from the bank (order-free: t_pos 0,
    pointer distance 0, as SAMed-2's training does). The bank may be shared (pass ``bank``).
    """

    def __init__(self, cfg: SAM2Config, capacity: int, k: int, recent: int, key_grid: int = 4,
                 threshold: float = 0.0, relative: bool = True, use_presence: bool = False,
                 bank: Optional[MemoryBank] = None, frozen: bool = False) -> None:
        super().__init__(cfg)
        if capacity < 1 or k < 1:
            raise ValueError("capacity and k must be positive")
        if not 0 <= recent <= cfg.num_maskmem - 1:
            raise ValueError(f"recent must be in 0..{cfg.num_maskmem - 1}")
        self.k, self.recent, self.threshold, self.relative = k, recent, threshold, relative
        self.use_presence, self.frozen = use_presence, frozen
        self.bank = bank if bank is not None else MemoryBank(capacity, key_grid)
        self.window = FifoPolicy(cfg)       # prompted + recent frames
        self.cond = self.window.cond        # one dict: prompted frames
        self.counts = {"offered": 0, "admitted": 0, "replaced": 0, "rejected_empty": 0, "rejected_confidence": 0,
                       "rejected_rule": 0}

    @property
    def needs_key(self) -> bool:
        return True

    @property
    def key_grid(self) -> int:
        return self.bank.grid

    @property
    def capacity(self) -> int:
        return self.bank.capacity

    def add_conditioning(self, entry: FrameMemory) -> None:
        self.window.add_conditioning(entry)

    def remove_conditioning(self, frame_idx: int) -> None:
        self.window.remove_conditioning(frame_idx)

    def start_pass(self, reverse: bool, start: Optional[int] = None) -> None:
        self.window.start_pass(reverse, start)

    # ------------------------------------------------------------------ admission
    def confidence(self, entry: FrameMemory) -> float:
        return confidence_of(entry, self.use_presence)

    def effective_threshold(self) -> float:
        """The admission threshold on the model's own scale: × the best IoU of the prompted frames."""
        if self.relative and self.cond:
            return self.threshold * max(self.confidence(e) for e in self.cond.values())
        return self.threshold

    def add(self, entry: FrameMemory, key: Optional[torch.Tensor] = None) -> None:
        if self.recent > 0:
            self.window.add(entry)
        if key is None:
            raise ValueError(f"{self.name} needs the frame's key")
        if not self.frozen:
            self.offer(entry, key.float().cpu().reshape(-1), self.confidence(entry))

    def offer(self, entry: FrameMemory, key: torch.Tensor, conf: float) -> bool:
        """Offer an entry to the bank; True if the bank changed."""
        self.counts["offered"] += 1
        if is_empty(entry):
            self.counts["rejected_empty"] += 1
            return False
        if conf < self.effective_threshold():
            self.counts["rejected_confidence"] += 1
            return False
        if not self.bank.full:
            self.bank.append(entry, key, conf)
            self.counts["admitted"] += 1
            return True
        changed = self._admit_full(entry, key, conf)
        self.counts["replaced" if changed else "rejected_rule"] += 1
        return changed

    @abstractmethod
    def _admit_full(self, entry: FrameMemory, key: torch.Tensor, conf: float) -> bool:
        """The policy's rule when the bank is full."""

    # ------------------------------------------------------------------ retrieval
    def retrieve(self, query_key: Optional[torch.Tensor], generator: Optional[torch.Generator] = None,
                 eligible: Optional[List[int]] = None) -> List[int]:
        """Indices of the bank entries to attend to: at most k of `eligible` (default: all)."""
        idx = list(range(len(self.bank))) if eligible is None else list(eligible)
        if not idx:
            return []
        k = min(self.k, len(idx))
        q = None if query_key is None else query_key.float().cpu().reshape(-1)
        return [idx[i] for i in self._rank(torch.tensor(idx), q, k, generator)]

    @abstractmethod
    def _rank(self, idx: torch.Tensor, query: Optional[torch.Tensor], k: int,
              generator: Optional[torch.Generator]) -> List[int]:
        """k positions into `idx` (bank indices) chosen for `query`."""

    def select(self, frame_idx, num_frames, reverse=False, query_key=None) -> Selection:
        mems, ptrs, tmax = select_fifo(frame_idx, self.cond, self.window.non_cond, self.cfg, num_frames, reverse)
        n = self.cfg.num_maskmem
        mems = [(tp, e) for tp, e in mems if tp == 0 or tp >= n - self.recent]
        if self.recent < n - 1:
            ptrs = [(td, e) for td, e in ptrs if e.is_cond or abs(td) <= self.recent]
        return self._with_bank(mems, ptrs, query_key) + (tmax,)

    def select_unordered(self, query_key: Optional[torch.Tensor],
                         generator: Optional[torch.Generator] = None) -> Selection:
        """For an unordered set: every prompted frame (memory and pointer) + the bank's k entries."""
        mems = [(0, e) for _, e in sorted(self.cond.items())]
        ptrs = [(0, e) for _, e in sorted(self.cond.items())]
        return self._with_bank(mems, ptrs, query_key, generator) + (1,)

    def _with_bank(self, mems, ptrs, query_key, generator=None):
        """Add k bank entries not already attended to (the bank keeps its k slots)."""
        seen = {id(e) for _, e in mems}
        eligible = [i for i, e in enumerate(self.bank.entries) if id(e) not in seen]
        chosen = self.retrieve(query_key, generator, eligible)
        for i in chosen:
            e = self.bank.entries[i]
            mems.append((0, e))
            ptrs.append((0, e))
        self.last_retrieved = len(chosen)
        return mems, ptrs

    def num_entries(self) -> int:
        return self.window.num_entries() + len(self.bank)

    def stats(self) -> dict:
        return {"policy": self.name, "prompted": len(self.cond), "bank_entries": len(self.bank),
                "capacity": self.bank.capacity, "k": self.k, "recent": self.recent,
                "threshold": round(self.effective_threshold(), 4), **self.counts}


class SelfSortingPolicy(BankPolicy):
    """Medical SAM 2's self-sorting memory bank (paper rule by default, released rule as an option)."""

    name = "self_sorting"

    def __init__(self, cfg: SAM2Config, capacity: int = 16, k: int = 4, iou_threshold: float = 0.5,
                 rule: str = "paper", recent: int = 1, seed: int = 0, sample: bool = True, temperature: float = 1.0,
                 key_grid: int = 4, relative: bool = True, use_presence: bool = False,
                 bank: Optional[MemoryBank] = None, frozen: bool = False) -> None:
        super().__init__(cfg, capacity, k, recent, key_grid, iou_threshold, relative, use_presence, bank, frozen)
        if rule not in ("paper", "released"):
            raise ValueError("rule must be 'paper' or 'released'")
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.rule, self.sample, self.seed, self.temperature = rule, sample, seed, temperature
        self.generator = torch.Generator().manual_seed(seed)

    def effective_threshold(self) -> float:
        # the released rule has no admission threshold (its IoU test is in the replacement)
        return 0.0 if self.rule == "released" else super().effective_threshold()

    def _admit_full(self, entry, key, conf) -> bool:
        b = self.bank
        if self.rule == "paper":  # add, then drop the entry with the smallest total dissimilarity
            b.append(entry, key, conf)
            mk = b.mem_key_matrix()
            total_dissim = (1 - mk @ mk.T).sum(dim=1)
            drop = int(torch.argmin(total_dissim))
            b.drop(drop)
            return drop != len(b)  # dropping the newcomer itself leaves the bank unchanged
        mk = b.mem_key_matrix()
        new = b.mem_key(entry)
        sim_new = mk @ new
        i = int(torch.argmin(sim_new))            # stored entry least similar to the new one
        sim_i = mk @ mk[i]
        sim_i[i] = -math.inf
        j = int(torch.argmax(sim_i))              # the entry most similar to i
        if float(sim_new[i]) < float(sim_i[j]) and conf > b.conf[j] - 0.1:
            b.replace(j, entry, key, conf)
            return True
        return False

    def _rank(self, idx, query, k, generator) -> List[int]:
        if query is None:  # no query: the most recently stored
            return list(range(len(idx)))[-k:]
        sim = self.bank.key_matrix()[idx] @ query
        if not self.sample:
            return torch.topk(sim, k).indices.tolist()
        probs = torch.softmax(sim / self.temperature, dim=0)
        return torch.multinomial(probs, k, replacement=False, generator=generator or self.generator).tolist()


class ConfidencePolicy(BankPolicy):
    """SAMed-2's confidence-driven memory: global bank, top-k retrieval by similarity + confidence."""

    name = "confidence"

    def __init__(self, cfg: SAM2Config, capacity: int = 640, k: int = 4, threshold: float = 0.0,
                 conf_weight: float = 1.0, recent: Optional[int] = None, key_grid: int = 4, relative: bool = True,
                 use_presence: bool = False, bank: Optional[MemoryBank] = None, frozen: bool = False) -> None:
        recent = cfg.num_maskmem - 1 if recent is None else recent
        super().__init__(cfg, capacity, k, recent, key_grid, threshold, relative, use_presence, bank, frozen)
        self.conf_weight = conf_weight

    def _admit_full(self, entry, key, conf) -> bool:
        b = self.bank
        j = int(torch.argmax(b.mem_key_matrix() @ b.mem_key(entry)))  # most similar stored mask memory
        if conf > b.conf[j]:
            b.replace(j, entry, key, conf)
            return True
        return False

    def scores(self, query_key: torch.Tensor) -> torch.Tensor:
        """(N,) retrieval scores: max(cos(query, key), 0) + λ·confidence."""
        km = self.bank.key_matrix()
        sim = (km @ query_key.float().cpu().reshape(-1)).clamp_min(0)
        return sim + self.conf_weight * torch.tensor(self.bank.conf)

    def _rank(self, idx, query, k, generator) -> List[int]:
        if query is None:  # no query: the most confident
            return torch.topk(torch.tensor(self.bank.conf)[idx], k).indices.tolist()
        return torch.topk(self.scores(query)[idx], k).indices.tolist()

    # --- persistence -------------------------------------------------------------------------
    def save(self, path, fingerprint: Optional[str] = None):
        """Write the bank to disk (config name, memory and key widths stored)."""
        return self.bank.save(path, self.cfg, fingerprint)

    def load(self, path, fingerprint: Optional[str] = None) -> None:
        """Replace the bank by a saved one; refused if another model made it."""
        self.bank = MemoryBank.load(path, self.cfg, fingerprint, capacity=self.bank.capacity, grid=self.bank.grid)


POLICIES = {"fifo": FifoPolicy, "self_sorting": SelfSortingPolicy, "confidence": ConfidencePolicy}


def make_policy(name: Union[str, MemoryPolicy], cfg: SAM2Config, **kwargs) -> MemoryPolicy:
    """A policy by name (`fifo`, `self_sorting`, `confidence`) with its keyword options."""
    if isinstance(name, MemoryPolicy):
        return name
    if name not in POLICIES:
        raise ValueError(f"unknown memory policy {name!r}; choose from {', '.join(POLICIES)}")
    allowed = policy_option_names(name)
    unknown = sorted(set(kwargs) - set(allowed) - {"bank"})
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for policy {name!r}; "
                         f"options: {', '.join(allowed) or 'none'}")
    return POLICIES[name](cfg, **kwargs)


def policy_option_names(name: str) -> List[str]:
    """Keyword options of a policy (what `--policy-opt` accepts)."""
    sig = inspect.signature(POLICIES[name].__init__)
    return [p for p in sig.parameters if p not in ("self", "cfg", "bank")]


def _convert(value: str, default) -> object:
    v = value.strip()
    if isinstance(default, bool):
        if v.lower() in ("1", "true", "yes", "on"):
            return True
        if v.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {value!r}")
    if isinstance(default, int):
        return int(v)
    if isinstance(default, float):
        return float(v)
    if isinstance(default, str):
        return v
    if default is None or default is inspect.Parameter.empty:  # e.g. recent=None: a number if it looks like one
        for conv in (int, float):
            try:
                return conv(v)
            except ValueError:
                pass
    return v


#: options a session (not the policy) takes for bank policies, with their types' defaults
SESSION_BANK_OPTIONS = {"bank": "", "share_bank": False, "save_bank": ""}


def parse_policy_options(items: Iterable[str], policy: str) -> Dict[str, object]:
    """``["k=8", "rule=released"]`` → ``{"k": 8, "rule": "released"}``, typed by the policy's defaults
    (for `VolumeSession(..., policy_options=...)` and ``medmem segment --policy-opt KEY=VALUE``).
    Bank policies also take the session options ``bank=FILE``, ``share_bank=true``, ``save_bank=FILE``.

    Raises ValueError naming the policy's options for an unknown key or a malformed item."""
    if policy not in POLICIES:
        raise ValueError(f"unknown memory policy {policy!r}; choose from {', '.join(POLICIES)}")
    sig = inspect.signature(POLICIES[policy].__init__)
    defaults = {k: v.default for k, v in sig.parameters.items()}
    allowed = policy_option_names(policy)
    if issubclass(POLICIES[policy], BankPolicy):
        allowed += list(SESSION_BANK_OPTIONS)
        defaults.update(SESSION_BANK_OPTIONS)
    out: Dict[str, object] = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"policy option {it!r} must be KEY=VALUE")
        k, v = (s.strip() for s in it.split("=", 1))
        if k not in allowed:
            raise ValueError(f"unknown option {k!r} for policy {policy!r}; options: {', '.join(allowed) or 'none'}")
        try:
            out[k] = _convert(v, defaults[k])
        except ValueError as e:
            raise ValueError(f"policy option {k}: {e}") from None
    return out
