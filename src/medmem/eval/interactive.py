"""Scores of the CVPR 2025 interactive 3D segmentation protocol.

Protocol: step 0 is the initial prediction from the 3D box (`medmem.data.prompt_sim.box_3d`),
steps 1..5 each add one corrective click on the largest error region
(`medmem.data.prompt_sim.corrective_click`, ``regions="xor"``). DSC and NSD are recorded
after every step.

AUC (the challenge's ``DSC_AUC`` / ``NSD_AUC``): the trapezoid rule with unit spacing over
the values of the **click steps only** (the box step is excluded because the box prompt
is optional in the challenge):

    AUC = Σ_{i=1}^{n-1} (v_i + v_{i+1}) / 2,   v_1..v_n = scores after clicks 1..n

so with 5 clicks the range is [0, 4] (not normalised). The driver that runs the protocol through
the engine (box, clicks, re-propagation, the official NSD = 0 when DSC ≤ 0.2 rule, time per class)
is `medmem.eval.protocol.run_case`. ``normalize=True`` divides by
n - 1 to give a mean-like score in [0, 1]; ``include_box=True`` integrates over all
n + 1 values instead (range [0, n]).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def interaction_auc(
    scores: Sequence[float],
    n_clicks: int | None = 5,
    include_box: bool = False,
    normalize: bool = False,
) -> float:
    """Area under a score-vs-interaction-step curve (trapezoid, unit step).

    ``scores``: one value per step, ``[box, click 1, ..., click n]`` (length n + 1) or
    only the click steps (length n). With ``n_clicks`` given, the **last** ``n_clicks``
    values are the click steps (the challenge's ``scores[-n_clicks:]``), and a sequence
    shorter than that raises ValueError; ``n_clicks=None`` takes all values as click steps.
    """
    v = np.asarray(list(scores), dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError("scores must be a non-empty 1D sequence")
    if not np.isfinite(v).all():
        raise ValueError("scores must be finite")
    if not include_box and n_clicks is not None:
        if n_clicks < 1 or v.size < n_clicks:
            raise ValueError(f"need at least n_clicks={n_clicks} scores, got {v.size}")
        v = v[-n_clicks:]
    if v.size == 1:
        return float(v[0]) if normalize else 0.0
    area = float(np.sum((v[1:] + v[:-1]) / 2.0))
    return area / (v.size - 1) if normalize else area


def final_score(scores: Sequence[float]) -> float:
    """The score after the last interaction step (the challenge's ``DSC_Final``)."""
    v = list(scores)
    if not v:
        raise ValueError("scores must be non-empty")
    return float(v[-1])
