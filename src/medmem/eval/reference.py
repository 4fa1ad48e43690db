"""Score a label map against a reference mask on the same grid (what `medmem segment --reference` reports)."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .metrics import binary_metrics, volume_spacing


def score_against_reference(labels: np.ndarray, vol, ref, object_ids: Iterable[int]) -> dict:
    """Dice / IoU / NSD@2mm / HD95 / ASSD of each object of ``labels`` (the volume's array order) against
    ``ref`` (a Volume of the same grid). A reference holding the object's id is compared label-wise;
    a binary reference (only 0/1) is the target of every object."""
    if ref.array.shape[:labels.ndim] != labels.shape:
        raise ValueError(f"reference grid {ref.array.shape} does not match the image grid {labels.shape}")
    if not np.allclose(ref.spacing, vol.spacing, rtol=1e-3):
        raise ValueError(f"reference spacing {tuple(ref.spacing)} differs from the image's {tuple(vol.spacing)}")
    r = np.asarray(ref.array)
    binary = set(np.unique(r).tolist()) <= {0, 1}
    sp = volume_spacing(vol)
    spacing = sp if len(sp) == labels.ndim else None
    out = {}
    for oid in object_ids:
        oid = int(oid)
        target = (r > 0) if binary else (r == oid)
        m = binary_metrics(labels == oid, target, spacing=spacing, tolerance_mm=2.0)
        # an empty prediction or reference has an infinite HD95: JSON null
        out[str(oid)] = {k: (None if isinstance(v, float) and not np.isfinite(v) else
                             round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}
    return {"objects": out, "tolerance_mm": 2.0}
