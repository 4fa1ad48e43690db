"""SAMed-2 confidence-driven memory during training: a `ConfidencePolicy` bank shared by all samples.

For every frame of every sample, the top-k entries by ``max(cos(query, key), 0) + λ·IoU`` join that
sample's memories (order-free: t_pos 0, pointer distance 0). After each step the memory-encoder
outputs of the processed frames are offered to the bank, detached, with confidence = predicted IoU;
empty predictions never enter; when full, a newcomer replaces the stored entry with the most similar
mask-memory features if it is more confident.

Keys (`memory.bank.feature_key`, pooled to a g × g grid): stored entries are keyed by the frame's
memory-conditioned features (pass ``key_feats``), the query is the current frame's raw features,
as in the released code. Under DDP every rank keeps a bank; `gather` merges them (every rank's
entries offered under the same rule, in rank order) so that what is saved is all ranks' bank.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..config import SAM2Config
from ..memory.bank import MemoryBank, feature_key
from ..memory.entry import FrameMemory
from ..memory.policies import ConfidencePolicy, confidence_of
from ..model.sam2 import MaskMemory, ObjectPointer

Candidate = Tuple[FrameMemory, torch.Tensor]  # (entry for one object, key (D,) on CPU)

_PRESENT = torch.ones(1, 1, 1, 1)   # stand-ins for the predicted mask: only "empty or not" is kept
_EMPTY = -torch.ones(1, 1, 1, 1)


class TrainingBank:
    """Batched retrieval from and admission into a `ConfidencePolicy`."""

    def __init__(self, cfg: SAM2Config, capacity: int = 640, k: int = 4, threshold: float = 0.0,
                 conf_weight: float = 1.0, key_grid: int = 4) -> None:
        self.cfg = cfg
        self.policy = ConfidencePolicy(cfg, capacity=capacity, k=k, threshold=threshold, conf_weight=conf_weight,
                                       relative=False, key_grid=key_grid)
        self.frozen = False

    def __len__(self) -> int:
        return len(self.policy.bank)

    @property
    def grid(self) -> int:
        return self.policy.bank.grid

    def eval_policy(self) -> ConfidencePolicy:
        """A frozen `ConfidencePolicy` over this bank (same k, weights and keys), for a `VolumeSession`:
        each frame attends to SAM 2's FIFO memories plus the k entries this bank's `retrieve` picks."""
        p = self.policy
        return ConfidencePolicy(self.cfg, capacity=p.bank.capacity, k=p.k, threshold=p.threshold,
                                conf_weight=p.conf_weight, relative=False, key_grid=self.grid, bank=p.bank, frozen=True)

    def retrieve(self, vision_feats: torch.Tensor) -> Tuple[List[MaskMemory], List[ObjectPointer]]:
        """Top-k entries per sample for features (B, C, h, w) → k memories and pointers of batch B
        (the j-th memory stacks each sample's j-th entry)."""
        entries = self.policy.bank.entries
        if not entries:
            return [], []
        keys = feature_key(vision_feats.detach(), self.grid).cpu()
        k = min(self.policy.k, len(entries))
        chosen = [torch.topk(self.policy.scores(q), k).indices.tolist() for q in keys]
        device = vision_feats.device
        mems, ptrs = [], []
        for j in range(k):
            es = [entries[c[j]] for c in chosen]
            f = torch.cat([e.maskmem_features for e in es]).to(device)
            p = torch.cat([e.maskmem_pos for e in es]).to(device)
            mems.append(MaskMemory(f, p, 0))
            ptrs.append(ObjectPointer(torch.cat([e.obj_ptr for e in es]).to(device), 0))
        return mems, ptrs

    @staticmethod
    def candidates(vision_feats: torch.Tensor, mem_f: torch.Tensor, mem_p: torch.Tensor, obj_ptr: torch.Tensor,
                   obj_score: torch.Tensor, iou: torch.Tensor, *, key_feats: Optional[torch.Tensor] = None,
                   masks: Optional[torch.Tensor] = None, grid: int = 4) -> List[Candidate]:
        """Detached per-object entries of one processed frame (batch B). key_feats: the memory-conditioned
        features (B, C, h, w) to key them by (default: vision_feats); masks: predicted logits (B, 1, h', w')
        to tell empty predictions (default: the object score alone)."""
        keys = feature_key((key_feats if key_feats is not None else vision_feats).detach(), grid).cpu()
        out = []
        for b in range(mem_f.shape[0]):
            present = bool(obj_score[b].detach().float().max() > 0)
            if masks is not None:
                present = present and bool((masks[b].detach() > 0).any())
            # clones: a view would keep the whole batch alive, and shared storage cannot be saved
            e = FrameMemory(-1, mem_f[b:b + 1].detach().clone(), mem_p[b:b + 1].detach().clone(),
                            obj_ptr[b:b + 1].detach().clone(), (_PRESENT if present else _EMPTY).clone(),
                            obj_score[b:b + 1].detach().float().clone(), iou[b:b + 1].detach().float().clone())
            out.append((e, keys[b]))
        return out

    def offer_all(self, cands: List[Candidate]) -> int:
        """Offer candidates in order; returns how many changed the bank."""
        if self.frozen:
            return 0
        return sum(bool(self.policy.offer(e, key, confidence_of(e))) for e, key in cands)

    # --- DDP -------------------------------------------------------------------------------------
    def gather(self, info) -> None:
        """Merge every rank's bank into one (collective: call on all ranks); every rank ends with it."""
        if not getattr(info, "enabled", False):
            return
        import torch.distributed as dist

        states: List[Optional[dict]] = [None] * info.world
        dist.all_gather_object(states, self.state_dict())
        merged = ConfidencePolicy(self.cfg, capacity=self.policy.bank.capacity, k=self.policy.k,
                                  threshold=self.policy.threshold, conf_weight=self.policy.conf_weight,
                                  relative=False, key_grid=self.grid)
        for st in states:
            for e, key, conf in _entries(st):
                merged.offer(e, key, conf)
        self.policy.bank = merged.bank

    def save(self, path, info=None, fingerprint: Optional[str] = None) -> Optional[Path]:
        """Gather the ranks' banks (collective under DDP), then rank 0 writes the file; returns its path there."""
        if info is not None:
            self.gather(info)
            if not info.is_main:
                return None
        return self.policy.save(path, fingerprint)

    # --- exact persistence (inside training checkpoints) ---------------------------------------
    def state_dict(self) -> Dict[str, object]:
        b = self.policy.bank
        return {
            "conf": list(b.conf),
            "keys": [k.clone() for k in b.keys],
            "grid": b.grid,
            "entries": [{"f": e.maskmem_features.cpu(), "p": e.maskmem_pos.cpu(), "ptr": e.obj_ptr.cpu(),
                         "obj": e.object_score_logits.cpu(), "mask": e.pred_masks.cpu(),
                         "iou": e.iou.cpu() if e.iou is not None else torch.ones(1, 1)} for e in b.entries],
        }

    def load_state_dict(self, state: Dict[str, object], device: Optional[torch.device] = None) -> None:
        grid = int(state.get("grid", self.grid))  # type: ignore[arg-type]
        bank = MemoryBank(self.policy.bank.capacity, grid)
        for e, key, conf in _entries(state, device):
            bank.append(e, key, conf)
        self.policy.bank = bank


def _entries(state: Dict[str, object], device: Optional[torch.device] = None):
    """(entry, key, confidence) triples of a `TrainingBank.state_dict`."""
    for d, key, conf in zip(state["entries"], state["keys"], state["conf"]):  # type: ignore[arg-type]
        e = FrameMemory(-1, d["f"].to(device), d["p"].to(device), d["ptr"].to(device), d.get("mask", _PRESENT),
                        d["obj"], d["iou"])
        yield e, key, float(conf)
