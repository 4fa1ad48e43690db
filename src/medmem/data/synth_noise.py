"""Simulated annotation noise for robustness experiments (train on noisy, test on clean).

`corrupt_label` returns a corrupted copy of a label map and a JSON-able description.
Kinds: ``erode`` / ``dilate`` (boundary moved by 1-3 pixels), ``shift`` (2-6 pixels),
``missing_slices`` (3D: about a third of the annotated slices left blank) and ``swap``
(two label ids exchanged; tasks with >= 2 labels). In 3D, erode/dilate/shift/swap are
applied slice-wise to a random half of the annotated slices, as an annotator's slip would.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
from scipy import ndimage

NOISE_KINDS = ("erode", "dilate", "shift", "missing_slices", "swap")


def available_kinds(label: np.ndarray, dims: int) -> List[str]:
    """Noise kinds that make sense for this label map."""
    kinds = ["erode", "dilate", "shift"]
    if dims == 3:
        kinds.append("missing_slices")
    if len([v for v in np.unique(label) if v != 0]) >= 2:
        kinds.append("swap")
    return kinds


def _morph2d(lab: np.ndarray, op: str, it: int) -> np.ndarray:
    out = lab.copy()
    for v in np.unique(lab):
        if v == 0:
            continue
        m = lab == v
        if op == "erode":
            out[m & ~ndimage.binary_erosion(m, iterations=it)] = 0
        else:
            grown = ndimage.binary_dilation(m, iterations=it) & (out == 0)
            out[grown] = v
    return out


def _shift2d(lab: np.ndarray, dy: int, dx: int) -> np.ndarray:
    return ndimage.shift(lab, (dy, dx), order=0, mode="constant", cval=0).astype(lab.dtype)


def _swap(lab: np.ndarray, a: int, b: int) -> np.ndarray:
    out = lab.copy()
    out[lab == a] = b
    out[lab == b] = a
    return out


def corrupt_label(label: np.ndarray, rng: np.random.Generator, dims: int, kind: Optional[str] = None
                  ) -> Tuple[np.ndarray, dict]:
    """Corrupt a label map (H, W) or (D, H, W); returns (noisy copy, description dict)."""
    label = np.asarray(label)
    if dims not in (2, 3) or label.ndim < dims:
        raise ValueError(f"dims must be 2 or 3 and match the label (shape {label.shape})")
    kinds = available_kinds(label, dims)
    if kind is None:
        kind = str(rng.choice(kinds))
    elif kind not in kinds:
        raise ValueError(f"noise kind {kind!r} not applicable here; choose from {kinds}")
    info: dict = {"kind": kind}
    ids = [int(v) for v in np.unique(label) if v != 0]

    def apply2d(lab2d: np.ndarray) -> np.ndarray:
        if kind in ("erode", "dilate"):
            return _morph2d(lab2d, kind, info["pixels"])
        if kind == "shift":
            return _shift2d(lab2d, *info["offset_yx"])
        if kind == "swap":
            return _swap(lab2d, *info["labels"])
        raise AssertionError(kind)

    if kind in ("erode", "dilate"):
        info["pixels"] = int(rng.integers(1, 4))
    elif kind == "shift":
        mag = rng.integers(2, 7, size=2) * rng.choice([-1, 1], size=2)
        info["offset_yx"] = [int(mag[0]), int(mag[1])]
    elif kind == "swap":
        pair = rng.choice(ids, size=2, replace=False)
        info["labels"] = [int(pair[0]), int(pair[1])]

    if dims == 2:
        noisy = apply2d(label)
    else:
        fg = [int(z) for z in np.flatnonzero(label.reshape(label.shape[0], -1).any(axis=1))]
        noisy = label.copy()
        if not fg:
            info["slices"] = []
            return noisy, info
        frac = 1.0 / 3.0 if kind == "missing_slices" else 0.5
        k = max(1, int(round(frac * len(fg))))
        chosen = sorted(int(z) for z in rng.choice(fg, size=k, replace=False))
        info["slices"] = chosen
        for z in chosen:
            noisy[z] = 0 if kind == "missing_slices" else apply2d(label[z])
    if np.array_equal(noisy, label) and kind != "dilate":  # e.g. erosion of nothing: fall back
        return corrupt_label(label, rng, dims, "dilate")
    return noisy, info
