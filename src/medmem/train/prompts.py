"""Prompt simulation for training, at model resolution.

Boxes and first clicks come from `medmem.data.prompt_sim`; corrective clicks are drawn on the
error region of the current prediction: uniformly over false negatives ∪ false positives
(``random``, as SAM 2 training), or at the centre of the largest error region (``center``,
`prompt_sim.corrective_click`, as interactive evaluation). A click's label is the ground truth at
the clicked pixel (1 = add, 0 = remove). Points are (x, y) pixel indices; labels follow SAM:
1 positive, 0 negative, 2/3 box corners.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data import prompt_sim

Points = Tuple[torch.Tensor, torch.Tensor]  # coords (B, P, 2) float, labels (B, P) int32


def box_points(mask: np.ndarray, jitter: float, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Box of a non-empty (H, W) mask as two corner points (2, 2) with labels [2, 3]."""
    x0, y0, x1, y1 = prompt_sim.simulate_box(mask, max_shift=jitter, rng=rng)
    return np.array([[x0, y0], [x1, y1]], dtype=np.float32), np.array([2, 3], dtype=np.int32)


def first_click(mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """One positive click uniformly inside a non-empty mask → (1, 2), [1]."""
    c = prompt_sim.interior_click(mask, mode="random", rng=rng)
    return np.array([c.point], dtype=np.float32), np.array([1], dtype=np.int32)


def corrective_point(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator, mode: str = "random",
                     prob_from_gt: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """One corrective click for a (H, W) prediction against the ground truth → (1, 2), [label].

    With probability ``prob_from_gt`` the prediction is ignored (the click is drawn as if nothing
    were predicted). Without any error, a random pixel labelled by the ground truth is returned.
    """
    pred, gt = pred.astype(bool), gt.astype(bool)
    if prob_from_gt > 0 and rng.random() < prob_from_gt:
        pred = np.zeros_like(pred)
    if mode == "center":
        c = prompt_sim.corrective_click(pred, gt, regions="separate")
        if c is not None:
            return np.array([c.point], dtype=np.float32), np.array([c.label], dtype=np.int32)
    elif mode != "random":
        raise ValueError(f"mode must be 'random' or 'center', got {mode!r}")
    err = np.flatnonzero(pred != gt)
    flat = int(err[rng.integers(err.size)]) if err.size else int(rng.integers(gt.size))
    y, x = divmod(flat, gt.shape[1])
    return np.array([[x, y]], dtype=np.float32), np.array([int(gt[y, x])], dtype=np.int32)


def stack_points(points: Sequence[Tuple[np.ndarray, np.ndarray]], device: torch.device) -> Points:
    """Per-sample (coords (P, 2), labels (P,)) with equal P → batched tensors."""
    coords = torch.from_numpy(np.stack([p[0] for p in points])).to(device)
    labels = torch.from_numpy(np.stack([p[1] for p in points])).to(device)
    return coords, labels


def concat_points(a: Optional[Points], b: Points) -> Points:
    if a is None:
        return b
    return torch.cat([a[0], b[0]], dim=1), torch.cat([a[1], b[1]], dim=1)


@dataclass
class PromptPlan:
    """What a clip group is prompted with.

    cond_frames: prompted frames (processing positions, first is 0); kind: "box", "click" or "mask";
    correct_frames: frames that receive ``iters`` corrective clicks (prompted ones first); tracked
    frames among them become prompted frames afterwards (SAM 2's ``add_all_frames_to_correct_as_cond``).
    """

    cond_frames: List[int]
    kind: str
    correct_frames: List[int]
    iters: int


def plan_prompts(gt: np.ndarray, rng: np.random.Generator, *, prob_box: float, prob_mask: float, max_cond_frames: int,
                 correction_iters: int, max_extra_correct_frames: int) -> PromptPlan:
    """Draw the prompts of a group from its ground truth gt (B, T, H, W) bool (frame 0 has every object).

    Extra prompted frames are drawn among frames where every sample's object is present.
    """
    t = gt.shape[1]
    kind = "mask" if (t > 1 and rng.random() < prob_mask) else ("box" if rng.random() < prob_box else "click")
    cond = [0]
    if t > 1 and max_cond_frames > 1:
        n_extra = int(rng.integers(0, max_cond_frames))  # 0 .. max-1 extra prompted frames
        ok = [i for i in range(1, t) if gt[:, i].reshape(gt.shape[0], -1).any(1).all()]
        if n_extra and ok:
            cond += sorted(int(i) for i in rng.choice(ok, size=min(n_extra, len(ok)), replace=False))
    correct: List[int] = []
    if kind != "mask" and correction_iters > 0:
        correct = list(cond)
        rest = [i for i in range(1, t) if i not in cond]
        n_extra = int(rng.integers(0, max_extra_correct_frames + 1)) if rest else 0
        if n_extra:
            correct += sorted(int(i) for i in rng.choice(rest, size=min(n_extra, len(rest)), replace=False))
    return PromptPlan(cond, kind, correct, correction_iters)


def initial_prompts(plan: PromptPlan, gt: np.ndarray, rng: np.random.Generator, jitter: float,
                    device: torch.device) -> Dict[int, Tuple[Optional[Points], Optional[torch.Tensor]]]:
    """Prompt of each prompted frame → (point_inputs, mask_inputs (B, 1, S, S) float)."""
    out: Dict[int, Tuple[Optional[Points], Optional[torch.Tensor]]] = {}
    for f in plan.cond_frames:
        if plan.kind == "mask":
            m = torch.from_numpy(gt[:, f]).to(device=device, dtype=torch.float32)[:, None]
            out[f] = (None, m)
        elif plan.kind == "box":
            out[f] = (stack_points([box_points(gt[b, f], jitter, rng) for b in range(gt.shape[0])], device), None)
        else:
            out[f] = (stack_points([first_click(gt[b, f], rng) for b in range(gt.shape[0])], device), None)
    return out
