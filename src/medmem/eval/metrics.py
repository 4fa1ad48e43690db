"""Segmentation metrics: Dice, IoU, NSD@τ mm, HD95 mm, ASSD mm (2D and 3D).

Conventions (see docs/metrics.md for the full definitions)
-----------------------------------------------------------
- Masks and label maps are arrays in **array-axis order**, (H, W) or (D, H, W).
- ``spacing`` is given in the **same array-axis order**, in mm: (row, column) in 2D,
  (slice, row, column) in 3D. A medmem ``Volume`` stores spacing in ITK (x, y, z)
  order: convert it with `spacing_from_itk` (it reverses the tuple).
- Surfaces, selected with ``surface=``:
  ``"deepmind"`` (default) - the surface of DeepMind's *surface-distance* package: surface
  elements on the grid of voxel corners, weighted by their area (3D) or length (2D),
  computed with MONAI's subvoxel utilities (``use_subvoxels=True``).
  ``"voxel"`` - MONAI's default: the boundary voxels (mask XOR its erosion), each
  counted once, exactly what ``monai.metrics.compute_surface_dice`` /
  ``compute_hausdorff_distance(percentile=95)`` / ``compute_average_surface_distance``
  return.
- Empty masks: both empty -> Dice = IoU = NSD = 1, HD95 = ASSD = 0; exactly one empty ->
  Dice = IoU = NSD = 0 and HD95 = ASSD = ``empty_distance`` (default ``inf``; pass
  ``float("nan")``, a number of mm, or ``"diagonal"`` for the image's physical diagonal).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Dict, Iterable, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch

Surface = Literal["deepmind", "voxel"]
EmptyDistance = Union[float, Literal["diagonal"]]
METRIC_NAMES = ("dice", "iou", "nsd", "hd95", "assd")


# ----------------------------------------------------------------------------- input checks
def spacing_from_itk(spacing_xyz: Sequence[float]) -> Tuple[float, ...]:
    """ITK/SimpleITK/Volume spacing (x, y[, z]) -> array-axis order ([z,] y, x)."""
    return tuple(float(s) for s in reversed(tuple(spacing_xyz)))


def volume_spacing(volume) -> Tuple[float, ...]:
    """Array-axis-order spacing of a medmem ``Volume`` (which stores ITK order)."""
    return spacing_from_itk(volume.spacing)


def check_spacing(spacing: Union[Sequence[float], float, None], ndim: int) -> Tuple[float, ...]:
    """Validate spacing (array-axis order, mm): None -> all 1, a scalar -> isotropic."""
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        spacing = (float(spacing),) * ndim
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim:
        raise ValueError(f"spacing has {len(sp)} values for a {ndim}D mask (array-axis order expected)")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be finite and > 0, got {sp}")
    return sp


def _as_binary(mask, name: str) -> np.ndarray:
    arr = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask)
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a boolean or 0/1 array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise ValueError(f"{name} must be binary (0/1 or bool); found value {arr[bad].flat[0]!r}")
    return arr.astype(bool)


def _pair(pred, gt) -> Tuple[np.ndarray, np.ndarray]:
    p, g = _as_binary(pred, "pred"), _as_binary(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D, got shape {p.shape}")
    return p, g


def _empty_value(empty_distance: EmptyDistance, shape, spacing) -> float:
    if isinstance(empty_distance, str):
        if empty_distance != "diagonal":
            raise ValueError(f"empty_distance must be a number or 'diagonal', got {empty_distance!r}")
        return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))
    v = float(empty_distance)
    if v < 0:
        raise ValueError(f"empty_distance must be >= 0, inf or nan, got {v}")
    return v


# ----------------------------------------------------------------------------- overlap
def dice(pred, gt) -> float:
    """Dice = 2|P∩G| / (|P| + |G|); 1.0 when both are empty."""
    p, g = _pair(pred, gt)
    s = int(p.sum()) + int(g.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(p, g).sum()) / s


def iou(pred, gt) -> float:
    """IoU (Jaccard) = |P∩G| / |P∪G|; 1.0 when both are empty."""
    p, g = _pair(pred, gt)
    union = int(np.logical_or(p, g).sum())
    return 1.0 if union == 0 else int(np.logical_and(p, g).sum()) / union


# ----------------------------------------------------------------------------- surfaces
@dataclass
class SurfaceDistances:
    """Distances (mm) from each surface element of one mask to the other mask's surface.

    ``pred_to_gt[i]`` belongs to the i-th element of the predicted surface, whose
    measure (area in 3D, length in 2D, 1 for ``surface="voxel"``) is ``pred_weights[i]``.
    """

    pred_to_gt: np.ndarray
    gt_to_pred: np.ndarray
    pred_weights: np.ndarray
    gt_weights: np.ndarray
    surface: str


def surface_distances(pred, gt, spacing=None, surface: Surface = "deepmind") -> SurfaceDistances:
    """Surface distances of two non-empty binary masks (2D or 3D) via MONAI.

    ``spacing``: array-axis order, mm. Raises ValueError if either mask is empty.
    """
    from monai.metrics.utils import get_edge_surface_distance

    p, g = _pair(pred, gt)
    sp = check_spacing(spacing, p.ndim)
    if not p.any() or not g.any():
        raise ValueError("surface distances need two non-empty masks (see the empty-mask policy)")
    if surface not in ("deepmind", "voxel"):
        raise ValueError(f"surface must be 'deepmind' or 'voxel', got {surface!r}")
    sub = surface == "deepmind"
    with warnings.catch_warnings():  # MONAI's own deprecation notice for an internal argument
        warnings.simplefilter("ignore", FutureWarning)
        (edges_p, edges_g), dists, areas = get_edge_surface_distance(
            torch.from_numpy(p), torch.from_numpy(g), distance_metric="euclidean",
            spacing=sp, use_subvoxels=sub, symmetric=True, warn_empty=False,
        )
    d_pg = dists[0].detach().cpu().numpy().astype(np.float64)
    d_gp = dists[1].detach().cpu().numpy().astype(np.float64)
    if sub:
        w_p = areas[0][edges_p].detach().cpu().numpy().astype(np.float64)
        w_g = areas[1][edges_g].detach().cpu().numpy().astype(np.float64)
    else:
        w_p, w_g = np.ones_like(d_pg), np.ones_like(d_gp)
    return SurfaceDistances(d_pg, d_gp, w_p, w_g, surface)


def _weighted_percentile(d: np.ndarray, w: np.ndarray, q: float) -> float:
    """Smallest distance d* such that the elements with distance <= d* carry at least q %
    of the total measure (DeepMind's rule)."""
    order = np.argsort(d, kind="stable")
    d, w = d[order], w[order]
    cum = np.cumsum(w) / w.sum()
    idx = int(np.searchsorted(cum, q / 100.0))
    return float(d[min(idx, len(d) - 1)])


def _nsd_from(sd: SurfaceDistances, tol: float) -> float:
    total = sd.pred_weights.sum() + sd.gt_weights.sum()
    good = sd.pred_weights[sd.pred_to_gt <= tol].sum() + sd.gt_weights[sd.gt_to_pred <= tol].sum()
    return float(good / total)


def _hd_from(sd: SurfaceDistances, q: float) -> float:
    if sd.surface == "voxel":  # MONAI: torch.quantile (linear interpolation) per direction
        vals = [float(torch.quantile(torch.from_numpy(d), q / 100.0)) if q < 100 else float(d.max())
                for d in (sd.pred_to_gt, sd.gt_to_pred)]
    else:
        vals = [_weighted_percentile(d, w, q) for d, w in
                ((sd.pred_to_gt, sd.pred_weights), (sd.gt_to_pred, sd.gt_weights))]
    return max(vals)


def _assd_from(sd: SurfaceDistances) -> float:
    num = (sd.pred_to_gt * sd.pred_weights).sum() + (sd.gt_to_pred * sd.gt_weights).sum()
    return float(num / (sd.pred_weights.sum() + sd.gt_weights.sum()))


def _check_tol(tolerance_mm: float) -> float:
    t = float(tolerance_mm)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"tolerance_mm must be finite and >= 0, got {tolerance_mm}")
    return t


def nsd(pred, gt, spacing=None, tolerance_mm: float = 2.0, surface: Surface = "deepmind") -> float:
    """Normalised surface Dice at tolerance τ (mm): the fraction of both surfaces (by
    measure) within τ of the other surface. Both empty -> 1, one empty -> 0."""
    tol = _check_tol(tolerance_mm)
    p, g = _pair(pred, gt)
    check_spacing(spacing, p.ndim)
    if not p.any() and not g.any():
        return 1.0
    if not p.any() or not g.any():
        return 0.0
    return _nsd_from(surface_distances(p, g, spacing, surface), tol)


def _distance_inputs(pred, gt, spacing, empty_distance):
    """(pred, gt, spacing, value): value is the answer when a mask is empty (both empty: 0), else None."""
    p, g = _pair(pred, gt)
    sp = check_spacing(spacing, p.ndim)
    if not p.any() and not g.any():
        return p, g, sp, 0.0
    if not p.any() or not g.any():
        return p, g, sp, _empty_value(empty_distance, p.shape, sp)
    return p, g, sp, None


def hausdorff(pred, gt, spacing=None, percentile: float = 100.0, surface: Surface = "deepmind",
              empty_distance: EmptyDistance = math.inf) -> float:
    """Symmetric (percentile) Hausdorff distance in mm: max over the two directions of
    the ``percentile`` of the surface distances. Both empty -> 0; one empty -> empty_distance."""
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    p, g, sp, empty = _distance_inputs(pred, gt, spacing, empty_distance)
    return empty if empty is not None else _hd_from(surface_distances(p, g, sp, surface), percentile)


def hd95(pred, gt, spacing=None, surface: Surface = "deepmind", empty_distance: EmptyDistance = math.inf) -> float:
    """95th-percentile Hausdorff distance in mm (see `hausdorff`)."""
    return hausdorff(pred, gt, spacing, 95.0, surface, empty_distance)


def assd(pred, gt, spacing=None, surface: Surface = "deepmind", empty_distance: EmptyDistance = math.inf) -> float:
    """Average symmetric surface distance in mm: (Σ_P w·d(P→G) + Σ_G w·d(G→P)) / (Σ_P w + Σ_G w).
    Both empty -> 0; one empty -> empty_distance."""
    p, g, sp, empty = _distance_inputs(pred, gt, spacing, empty_distance)
    return empty if empty is not None else _assd_from(surface_distances(p, g, sp, surface))


def binary_metrics(
    pred,
    gt,
    spacing=None,
    tolerance_mm: float = 2.0,
    surface: Surface = "deepmind",
    empty_distance: EmptyDistance = math.inf,
    metrics: Iterable[str] = METRIC_NAMES,
) -> Dict[str, float]:
    """All metrics of one binary object, surfaces computed once.

    Returns ``{"dice", "iou", "nsd", "hd95", "assd", "pred_voxels", "gt_voxels"}``
    (only the requested metrics plus the two counts).
    """
    tol = _check_tol(tolerance_mm)
    wanted = tuple(metrics)
    unknown = set(wanted) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRIC_NAMES}")
    p, g = _pair(pred, gt)
    sp = check_spacing(spacing, p.ndim)
    n_p, n_g = int(p.sum()), int(g.sum())
    inter = int(np.logical_and(p, g).sum())
    out: Dict[str, float] = {}
    if "dice" in wanted:
        out["dice"] = 1.0 if n_p + n_g == 0 else 2.0 * inter / (n_p + n_g)
    if "iou" in wanted:
        out["iou"] = 1.0 if n_p + n_g == 0 else inter / (n_p + n_g - inter)
    surf = [m for m in ("nsd", "hd95", "assd") if m in wanted]
    if surf:
        if n_p == 0 and n_g == 0:
            vals = {"nsd": 1.0, "hd95": 0.0, "assd": 0.0}
        elif n_p == 0 or n_g == 0:
            e = _empty_value(empty_distance, p.shape, sp)
            vals = {"nsd": 0.0, "hd95": e, "assd": e}
        else:
            sd = surface_distances(p, g, sp, surface)
            vals = {"nsd": _nsd_from(sd, tol), "hd95": _hd_from(sd, 95.0), "assd": _assd_from(sd)}
        out.update({m: vals[m] for m in surf})
    out["pred_voxels"] = n_p
    out["gt_voxels"] = n_g
    return out


# ----------------------------------------------------------------------------- label maps
def _as_labels(arr, name: str) -> np.ndarray:
    a = np.asarray(arr.detach().cpu().numpy() if isinstance(arr, torch.Tensor) else arr)
    if a.dtype == bool:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be an integer label map, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf")
        if not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integer labels, found non-integer values")
        a = a.astype(np.int64)
    return a


def evaluate_case(
    pred_labels,
    gt_labels,
    spacing=None,
    labels: Optional[Sequence[int]] = None,
    tolerance_mm: float = 2.0,
    surface: Surface = "deepmind",
    empty_distance: EmptyDistance = math.inf,
    metrics: Iterable[str] = METRIC_NAMES,
) -> dict:
    """Per-label metrics of a label map (H, W) or (D, H, W); 0 is background.

    ``labels=None`` evaluates every non-zero label present in ``gt_labels`` or
    ``pred_labels`` (a label only in the prediction scores Dice 0, HD95 = empty_distance).
    Returns ``{"labels": {label: binary_metrics(...)}, "mean": {metric: mean over
    labels}}``; the mean is the plain arithmetic mean (an inf HD95 makes the mean inf,
    a nan makes it nan), and ``{}`` when there is no label to evaluate.
    ``spacing`` is in array-axis order (use `spacing_from_itk` for a Volume's spacing).
    """
    p, g = _as_labels(pred_labels, "pred_labels"), _as_labels(gt_labels, "gt_labels")
    if p.shape != g.shape:
        raise ValueError(f"pred_labels shape {p.shape} != gt_labels shape {g.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"label maps must be 2D or 3D, got shape {p.shape}")
    sp = check_spacing(spacing, p.ndim)
    wanted = tuple(metrics)
    if labels is None:
        labels = sorted(int(v) for v in np.union1d(np.unique(p), np.unique(g)) if v != 0)
    per: Dict[int, Dict[str, float]] = {}
    for lab in labels:
        per[int(lab)] = binary_metrics(p == lab, g == lab, sp, tolerance_mm, surface, empty_distance, wanted)
    mean: Dict[str, float] = {}
    if per:
        for m in wanted:
            mean[m] = float(np.mean([r[m] for r in per.values()]))
    return {"labels": per, "mean": mean, "spacing": sp, "tolerance_mm": float(tolerance_mm), "surface": surface}
