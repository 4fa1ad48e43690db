"""The one-box protocol: a box around the object on its largest slice, propagation both ways, metrics.

This is how README command 1 uses a model, and how medmem compares models: each result stands
beside the model-free baseline (`eval.baseline`, Otsu in the box, extruded) and beside "a box on
every slice" decoded without memory (for a LiteMedSAM-based model this equals LiteMedSAM itself).
Boxes are (x0, y0, x1, y1) inclusive pixel indices, as everywhere in medmem (`docs/io.md`);
the tight box of a mask is `medmem.data.prompt_sim.mask_to_box`.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Optional, Sequence

import numpy as np

from ..engine.image import ImagePredictor
from ..engine.volume import VolumeSession
from ..data.prompt_sim import mask_to_box
from .baseline import threshold_box_2d, threshold_box_3d
from .metrics import dice, nsd


def largest_slice(gt: np.ndarray) -> int:
    return int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))


def propagate_from_box(model, image: np.ndarray, slice_idx: int, box: Sequence[float], policy: str = "fifo",
                       intensity="auto", session_kwargs: Optional[dict] = None):
    """(S, H, W) bool from one box on one slice, propagated both ways; returns (mask, seconds, session)."""
    sess = VolumeSession(model, image, policy=policy, intensity=intensity, **(session_kwargs or {}))
    t0 = time.perf_counter()
    sess.add_prompt(slice_idx, 1, box=list(box))
    for _ in sess.propagate("both"):
        pass
    return sess.masks(1), time.perf_counter() - t0, sess


def box_every_slice(model, image: np.ndarray, gt: np.ndarray, intensity="auto") -> np.ndarray:
    """(S, H, W) bool: the ground-truth box on every slice where the object is, decoded without memory."""
    pred = np.zeros(gt.shape, bool)
    predictor = ImagePredictor(model, intensity=intensity)
    for z in np.flatnonzero(gt.reshape(gt.shape[0], -1).any(1)):
        predictor.set_image(image[z])
        m, _, _ = predictor.predict(box=mask_to_box(gt[z]), multimask_output=False)
        pred[z] = m[0]
    return pred


def evaluate_one_box(model, image: np.ndarray, gt: np.ndarray, spacing=None, *, slice_idx: Optional[int] = None,
                     box: Optional[Sequence[float]] = None, policy: str = "fifo", every_slice: bool = False,
                     intensity="auto") -> dict:
    """Dice (and NSD@2 mm with a spacing) of the model, the baseline and optionally a box on every slice."""
    s = largest_slice(gt) if slice_idx is None else int(slice_idx)
    box = list(mask_to_box(gt[s])) if box is None else list(box)
    pred, secs, _ = propagate_from_box(model, image, s, box, policy, intensity)
    base = threshold_box_3d(image if image.ndim == 3 else image[..., 0], s, box)
    out = dict(prompt_slice=s, box=box, seconds=round(secs, 2), dice=round(dice(pred, gt), 4),
               dice_prompt_slice=round(dice(pred[s], gt[s]), 4), baseline_dice=round(dice(base, gt), 4))
    if spacing is not None:
        out["nsd_2mm"] = round(nsd(pred, gt, spacing, 2.0), 4)
        out["baseline_nsd_2mm"] = round(nsd(base, gt, spacing, 2.0), 4)
    if every_slice:
        out["box_every_slice_dice"] = round(dice(box_every_slice(model, image, gt, intensity), gt), 4)
    return out


def evaluate_2d(model, image: np.ndarray, gt: np.ndarray, intensity="auto") -> dict:
    """Dice of the model and of the baseline from the ground truth's box on one 2D image."""
    box = list(mask_to_box(gt))
    predictor = ImagePredictor(model, intensity=intensity)
    predictor.set_image(image)
    m, _, _ = predictor.predict(box=box, multimask_output=False)
    gray = image if image.ndim == 2 else image.mean(-1)
    return dict(dice=round(dice(m[0], gt), 4), baseline_dice=round(dice(threshold_box_2d(gray, box), gt), 4))


def evaluate_manifest(model, manifest: str, max_per_task: int = 4, split: str = "test", tasks=None) -> dict:
    """Mean Dice per task over the ``split`` cases (up to ``max_per_task`` each, 0 = all) of ``tasks``, each
    beside the model-free baseline (Otsu in the same box, extruded in 3D: ``medmem.eval.baseline``)."""
    from ..data.synth import load_manifest

    per_task = defaultdict(list)
    per_task_base = defaultdict(list)
    predictor = ImagePredictor(model)
    counts = defaultdict(int)
    for case in load_manifest(manifest, split=split, task=list(tasks) if tasks else None):
        if max_per_task and counts[case.task] >= max_per_task:
            continue
        counts[case.task] += 1
        for lab in sorted(int(v) for v in np.unique(case.label) if v != 0):
            gt = case.label == lab
            gray = case.image if case.image.ndim == case.dims else case.image.mean(-1)
            if case.dims == 3:
                s = largest_slice(gt)
                pred, _, _ = propagate_from_box(model, case.image, s, mask_to_box(gt[s]))
                base = threshold_box_3d(gray, s, mask_to_box(gt[s]))
            else:
                predictor.set_image(case.image)
                m, _, _ = predictor.predict(box=mask_to_box(gt), multimask_output=False)
                pred = m[0]
                base = threshold_box_2d(gray, mask_to_box(gt))
            per_task[case.task].append(dice(pred, gt))
            per_task_base[case.task].append(dice(base, gt))
    rows = {t: dict(dice=round(float(np.mean(v)), 4), n=len(v),
                    baseline_dice=round(float(np.mean(per_task_base[t])), 4)) for t, v in sorted(per_task.items())}
    return {"tasks": rows, "mean_dice": round(float(np.mean([r["dice"] for r in rows.values()])), 4),
            "mean_baseline_dice": round(float(np.mean([r["baseline_dice"] for r in rows.values()])), 4)}
