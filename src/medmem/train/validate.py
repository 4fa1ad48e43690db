"""Validation during training: box-prompted segmentation of held-out cases, Dice and NSD against the
clean labels at source resolution.

2D cases: the tight box of each object. 3D cases (CVPR 2025 protocol): the box on the object's
middle slice and its z-range from the ground truth; propagation forward and backward from that
slice with SAM 2's FIFO memory (plus the frozen confidence bank when training with one).
This is a compact tracker for validation only; interactive evaluation lives in `medmem.eval`.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..preprocess import coords_to_model, to_source
from ..data.prompt_sim import box_3d, mask_to_box
from ..eval.metrics import binary_metrics
from ..memory.entry import FrameMemory
from ..memory.fifo import select_fifo
from ..model.sam2 import ImageFeatures, MaskMemory, ObjectPointer, SAM2Model
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


def _box_input(box, source_hw, size: int, device) -> tuple:
    c = coords_to_model(np.array(box, dtype=np.float64).reshape(2, 2), source_hw, size)
    return (torch.tensor(c, dtype=torch.float32, device=device)[None],
            torch.tensor([[2, 3]], dtype=torch.int32, device=device))


def _encode_range(model: SAM2Model, case: PreparedCase, z0: int, z1: int, device, chunk: int = 16) -> List[ImageFeatures]:
    """Features of slices z0..z1, encoded as the engine encodes them (temporal adapter windows included)."""
    from ..engine.features import FeatureCache
    from ..engine.frames import TensorFrameSource

    idx = list(range(z0, z1 + 1))
    cache = FeatureCache(model, TensorFrameSource(case.model_input(idx, device), case.source_hw), chunk=chunk,
                         max_cached=len(idx))
    return [cache.get(i) for i in range(len(idx))]


def _step(model: SAM2Model, f: ImageFeatures, bank: Optional[TrainingBank], is_cond: bool, mems, ptrs, tmax, points):
    if bank is not None:
        bm, bp = bank.retrieve(f.vision_feats)
        mems, ptrs = list(mems) + bm, list(ptrs) + bp
    return model.track_step(f, is_init_cond_frame=is_cond, memories=mems, obj_ptrs=ptrs, ptr_tpos_max=tmax,
                            point_inputs=points)


def predict_object(model: SAM2Model, case: PreparedCase, obj: int, bank: Optional[TrainingBank] = None) -> np.ndarray:
    """Binary prediction (N, H, W) at source size for object ``obj`` of a held-out case."""
    gt = case.eval_label == obj
    dev = model.device
    size = model.image_size
    if case.images.shape[-1] != size:
        raise ValueError(f"case {case.id} was prepared at {case.images.shape[-1]}², the model takes {size}²")
    pred = np.zeros(gt.shape, dtype=bool)
    if case.dims == 2 or gt.shape[0] == 1:
        z0 = z1 = zmid = 0
        box = mask_to_box(gt[0])
    else:
        b3 = box_3d(gt)
        z0, z1, zmid, box = b3.z_min, b3.z_max, b3.z_mid, b3.box_2d
    feats = _encode_range(model, case, z0, z1, dev)
    points = _box_input(box, case.source_hw, size, dev)
    out = _step(model, feats[zmid - z0], bank, True, [], [], 1, points)

    def keep(z: int, logits: torch.Tensor) -> None:
        pred[z] = (to_source(logits[0, 0], case.source_hw) > 0).cpu().numpy()

    keep(zmid, out.heads.high_res_masks)
    n = z1 - z0 + 1
    cond = {zmid - z0: FrameMemory(zmid - z0, out.maskmem_features, out.maskmem_pos, out.obj_ptr,
                                   out.heads.low_res_masks, out.heads.object_score_logits, is_cond=True)}
    for reverse in (False, True):
        non_cond: Dict[int, FrameMemory] = {}
        frames = range(zmid - z0 - 1, -1, -1) if reverse else range(zmid - z0 + 1, n)
        for i in frames:
            sel_m, sel_p, tmax = select_fifo(i, cond, non_cond, model.cfg, n, reverse=reverse, training=False)
            mems = [MaskMemory(e.maskmem_features, e.maskmem_pos, tp) for tp, e in sel_m]
            ptrs = [ObjectPointer(e.obj_ptr, td) for td, e in sel_p]
            o = _step(model, feats[i], bank, False, mems, ptrs, tmax, None)
            non_cond[i] = FrameMemory(i, o.maskmem_features, o.maskmem_pos, o.obj_ptr, o.heads.low_res_masks,
                                      o.heads.object_score_logits)
            keep(z0 + i, o.heads.high_res_masks)
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
    dev = model.device
    ctx = torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    per: Dict[str, Dict[str, list]] = defaultdict(lambda: {"dice": [], "nsd": []})
    try:
        with ctx:
            for c in sel:
                if c.eval_label is None:
                    raise ValueError(f"case {c.id} has no evaluation label")
                spacing = c.spacing[1:] if c.dims == 2 else c.spacing
                for obj in sorted(int(v) for v in np.unique(c.eval_label) if v != 0):
                    pred = predict_object(model, c, obj, bank)
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
