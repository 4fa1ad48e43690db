"""SAMed-2 confidence-driven memory during training: a `ConfidencePolicy` bank shared by all samples.

For every frame of every sample, the top-k entries by ``max(cos(query, key), 0) + λ·confidence``
join that sample's memories (as order-free memories: t_pos 0, pointer distance 0). After each
step the memory-encoder outputs of the processed frames are offered to the bank, detached, with
confidence = predicted IoU × object presence; the policy admits those above its threshold and,
when full, replaces the most similar stored entry if the newcomer is more confident.
Keys are the pooled raw image embeddings (`medmem.memory.policies.pooled_key`).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from ..config import SAM2Config
from ..memory.entry import FrameMemory
from ..memory.policies import ConfidencePolicy, confidence_of, pooled_key
from ..model.sam2 import MaskMemory, ObjectPointer

Candidate = Tuple[FrameMemory, torch.Tensor]  # (entry for one object, key (C,) on CPU)


class TrainingBank:
    """Batched retrieval from and admission into a `ConfidencePolicy`."""

    def __init__(self, cfg: SAM2Config, capacity: int = 640, k: int = 4, threshold: float = 0.5,
                 conf_weight: float = 1.0) -> None:
        self.policy = ConfidencePolicy(cfg, capacity=capacity, k=k, threshold=threshold, conf_weight=conf_weight)
        self.frozen = False

    def __len__(self) -> int:
        return len(self.policy.bank.entries)

    def retrieve(self, vision_feats: torch.Tensor) -> Tuple[List[MaskMemory], List[ObjectPointer]]:
        """Top-k entries per sample for features (B, C, h, w) → k memories and pointers of batch B
        (the j-th memory stacks each sample's j-th entry)."""
        entries = self.policy.bank.entries
        if not entries:
            return [], []
        keys = pooled_key(vision_feats).detach().cpu()
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
                   obj_score: torch.Tensor, iou: torch.Tensor) -> List[Candidate]:
        """Detached per-object entries of one processed frame (batch B)."""
        keys = pooled_key(vision_feats).detach().cpu()
        out = []
        for b in range(mem_f.shape[0]):
            # clones: a view would keep the whole batch alive, and shared storage cannot be saved
            e = FrameMemory(-1, mem_f[b:b + 1].detach().clone(), mem_p[b:b + 1].detach().clone(),
                            obj_ptr[b:b + 1].detach().clone(), torch.zeros(0),
                            obj_score[b:b + 1].detach().float().clone(), iou[b:b + 1].detach().float().clone())
            out.append((e, keys[b]))
        return out

    def offer_all(self, cands: List[Candidate]) -> int:
        """Offer candidates in order; returns how many changed the bank."""
        if self.frozen:
            return 0
        return sum(bool(self.policy.offer(e, key, confidence_of(e))) for e, key in cands)

    # --- exact persistence (inside training checkpoints) ---------------------------------------
    def state_dict(self) -> Dict[str, object]:
        b = self.policy.bank
        return {
            "conf": list(b.conf),
            "keys": [k.clone() for k in b.keys],
            "entries": [{"f": e.maskmem_features.cpu(), "p": e.maskmem_pos.cpu(), "ptr": e.obj_ptr.cpu(),
                         "obj": e.object_score_logits.cpu(),
                         "iou": e.iou.cpu() if e.iou is not None else torch.ones(1, 1)} for e in b.entries],
        }

    def load_state_dict(self, state: Dict[str, object], device: Optional[torch.device] = None) -> None:
        bank = type(self.policy.bank)()
        for d, key, conf in zip(state["entries"], state["keys"], state["conf"]):  # type: ignore[arg-type]
            bank.entries.append(FrameMemory(-1, d["f"].to(device), d["p"].to(device), d["ptr"].to(device),
                                            torch.zeros(0), d["obj"], d["iou"]))
            bank.keys.append(key)
            bank.conf.append(float(conf))
        self.policy.bank = bank
