"""Validation during training: box-prompted segmentation of held-out cases, Dice and NSD against the
clean labels at source resolution.

2D cases: the tight box of each object. 3D cases (CVPR 2025 protocol): the box on the object's
middle slice and its z-range from the ground truth; propagation forward and backward from that
slice over that z-range. Both run through the engine's tracker (`VolumeSession`), the code users run,
with SAM 2's FIFO memory, or, when training with a confidence bank, a frozen `ConfidencePolicy`
holding that bank (`TrainingBank.eval_policy`). Interactive evaluation lives in `medmem.eval`.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..data.prompt_sim import box_3d, mask_to_box
from ..engine.volume import VolumeSession
from ..eval.metrics import binary_metrics
from ..model.sam2 import SAM2Model
from .bank import TrainingBank
from .data import PreparedCase


def pick_cases(cases: Sequence[PreparedCase], max_cases: int = 0) -> List[PreparedCase]:
    """Up to ``max_cases`` cases (0 = all), taken round-robin over tasks so that every task counts."""
    if max_cases <= 0 or len(cases) <= max_cases:
        return list(cases)
    by_task: Dict[str, List[PreparedCase]] = defaultdict(list)
    for c in sorted(cases, key=lambda c: (c.task, c.id)):
        by_task[c.task].append(c)
    out: List[PreparedCase] = []
    i = 0
    while len(out) < max_cases:
        for t in sorted(by_task):
            if i < len(by_task[t]) and len(out) < max_cases:
                out.append(by_task[t][i])
        i += 1
    return out


def predict_object(model: SAM2Model, case: PreparedCase, obj: int, bank: Optional[TrainingBank] = None,
                   amp_dtype: Optional[torch.dtype] = None) -> np.ndarray:
    """Binary prediction (N, H, W) at source size for object ``obj`` of a held-out case: a `VolumeSession`
    over the object's z-range, box-prompted on its middle slice, propagated both ways.

    amp_dtype: autocast dtype (None: fp32)."""
    gt = case.eval_label == obj
    if case.images.shape[-1] != model.image_size:
        raise ValueError(f"case {case.id} was prepared at {case.images.shape[-1]}², the model takes "
                         f"{model.image_size}²")
    if case.dims == 2 or gt.shape[0] == 1:
        z0 = z1 = zmid = 0
        box = mask_to_box(gt[0])
    else:
        b3 = box_3d(gt)
        z0, z1, zmid, box = b3.z_min, b3.z_max, b3.z_mid, b3.box_2d
    use_bank = bank is not None and len(bank) > 0 and model.has_memory  # an empty bank selects as FIFO does
    sess = VolumeSession.from_model_inputs(model, case.model_input(list(range(z0, z1 + 1)), model.device),
                                           case.source_hw, policy=bank.eval_policy() if use_bank else "fifo",
                                           dtype=amp_dtype or torch.float32)
    sess.add_prompt(zmid - z0, 1, box=list(box))
    for _ in sess.propagate("both"):
        pass
    pred = np.zeros(gt.shape, dtype=bool)
    pred[z0:z1 + 1] = sess.masks(1)
    return pred


@torch.no_grad()
def evaluate(model: SAM2Model, cases: Sequence[PreparedCase], *, bank: Optional[TrainingBank] = None,
             max_cases: int = 0, tolerance_mm: float = 2.0, amp_dtype: Optional[torch.dtype] = None,
             tasks: Sequence[str] = ()) -> dict:
    """Dice and NSD@tolerance of every object of the held-out cases (optionally of ``tasks`` only).

    Returns ``{"dice", "nsd"}`` (macro means over tasks), ``"per_task"`` {task: {"dice", "nsd",
    "objects"}} and ``"objects"`` (count). The model is put back in its previous mode.
    """
    sel = pick_cases([c for c in cases if not tasks or c.task in tasks], max_cases)
    was_training = model.training
    model.eval()
    per: Dict[str, Dict[str, list]] = defaultdict(lambda: {"dice": [], "nsd": []})
    try:
        for c in sel:
            if c.eval_label is None:
                raise ValueError(f"case {c.id} has no evaluation label")
            spacing = c.spacing[1:] if c.dims == 2 else c.spacing
            for obj in sorted(int(v) for v in np.unique(c.eval_label) if v != 0):
                pred = predict_object(model, c, obj, bank, amp_dtype)
                gt = c.eval_label == obj
                if c.dims == 2:
                    pred, gt = pred[0], gt[0]
                r = binary_metrics(pred, gt, spacing, tolerance_mm, metrics=("dice", "nsd"))
                per[c.task]["dice"].append(r["dice"])
                per[c.task]["nsd"].append(r["nsd"])
    finally:
        model.train(was_training)
    per_task = {t: {"dice": float(np.mean(v["dice"])), "nsd": float(np.mean(v["nsd"])), "objects": len(v["dice"])}
                for t, v in sorted(per.items())}
    out = {"dice": float(np.mean([v["dice"] for v in per_task.values()])) if per_task else float("nan"),
           "nsd": float(np.mean([v["nsd"] for v in per_task.values()])) if per_task else float("nan"),
           "per_task": per_task, "objects": int(sum(v["objects"] for v in per_task.values()))}
    return out
