"""The CVPR 2025 interactive 3D segmentation protocol, driven through medmem's own engine.

For one case (image (D, H, W), ground-truth label map (D, H, W), spacing in array order):

1. step 0: every class gets its 3D box (`box_3d`: z-range + 2D box on the middle slice, or the
   case's ``boxes``) in one `VolumeSession` (one object per class), propagated both ways and kept
   inside the box's z-range;
2. steps 1..5: for every class, one click at the EDT maximum of the largest 26-connected error
   component (`corrective_click(regions="xor")`, label from the ground truth there, ties drawn
   from a seeded generator), added to the session, and the session re-propagates (only the slice
   ranges the click affects);
3. after every step: the label map's DSC and NSD (τ = 2 mm), each the mean over classes, with the
   official rule NSD = 0 when that step's DSC ≤ 0.2; AUCs over the 5 click steps
   (`interaction_auc`), final scores, inference time (prediction only, not click simulation)
   per step and per class against the 90 s-per-class limit.

As in the official evaluation, ``spacing`` is taken in the arrays' axis order (the npz files are
scored with ``spacing_mm=spacing`` on the (D, H, W) arrays).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..data.prompt_sim import Box3D, box_3d, corrective_click
from .interactive import final_score, interaction_auc
from .metrics import binary_metrics

TIME_LIMIT_PER_CLASS = 90.0
NSD_MIN_DSC = 0.2


def official_nsd(dsc: float, nsd: float, min_dsc: float = NSD_MIN_DSC) -> float:
    """The challenge's rule: NSD counts only when DSC > 0.2 (else 0)."""
    return float(nsd) if dsc > min_dsc else 0.0


def score_step(pred: np.ndarray, gts: np.ndarray, classes: Sequence[int], spacing: Sequence[float],
               tolerance_mm: float = 2.0) -> dict:
    """Mean-over-classes DSC and NSD of a label map, NSD zeroed when that DSC ≤ 0.2; per-class values too."""
    per = {}
    for c in classes:
        m = binary_metrics(pred == c, gts == c, spacing, tolerance_mm, metrics=("dice", "nsd"))
        per[int(c)] = {"dsc": m["dice"], "nsd": m["nsd"]}
    dsc = float(np.mean([v["dsc"] for v in per.values()]))
    nsd_raw = float(np.mean([v["nsd"] for v in per.values()]))
    return {"dsc": dsc, "nsd": official_nsd(dsc, nsd_raw), "nsd_raw": nsd_raw, "classes": per}


def _boxes(gts: np.ndarray, classes: Sequence[int], boxes=None) -> Dict[int, Box3D]:
    if boxes is None:
        return {c: box_3d(gts == c) for c in classes}
    out = {}
    for c, b in zip(classes, list(boxes)):
        b = dict(b)
        out[c] = Box3D(*(int(b[k]) for k in ("z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min",
                                             "z_mid_x_max", "z_mid_y_max")))
    return out


def run_case(model, image: np.ndarray, gts: np.ndarray, spacing: Sequence[float], *, policy: str = "fifo",
             policy_options: Optional[dict] = None, n_clicks: int = 5, seed: int = 42, boxes=None,
             intensity="auto", tolerance_mm: float = 2.0, session_kwargs: Optional[dict] = None) -> dict:
    """Box, then `n_clicks` corrective clicks with re-propagation after each; scores per step.

    Returns {"steps": [{"step", "dsc", "nsd", "nsd_raw", "seconds", "clicks", "classes"}], "dsc_auc",
    "nsd_auc", "dsc_final", "nsd_final", "seconds", "seconds_per_class", "over_time_limit", "num_classes"}.
    """
    from ..engine.prompts import keep_within_slices
    from ..engine.volume import VolumeSession

    gts = np.asarray(gts)
    if gts.shape != np.asarray(image).shape[:3] or gts.ndim != 3:
        raise ValueError(f"gts {gts.shape} must be (D, H, W) like the image {np.asarray(image).shape}")
    classes = [int(c) for c in np.unique(gts) if c != 0]
    if not classes:
        raise ValueError("the ground truth has no foreground class")
    rng = np.random.default_rng(seed)
    b3 = _boxes(gts, classes, boxes)
    sess = VolumeSession(model, image, policy, intensity=intensity, policy_options=dict(policy_options or {}),
                         **(session_kwargs or {}))

    def predict() -> np.ndarray:
        for _ in sess.propagate("both"):
            pass
        lm = sess.label_map(classes)
        for c in classes:  # each object lies within its box's z-range
            keep_within_slices(lm, b3[c].z_min, b3[c].z_max, label=c)
        return lm

    steps: List[dict] = []
    t0 = time.perf_counter()
    for c in classes:
        sess.add_prompt(b3[c].z_mid, c, box=list(b3[c].box_2d))
    pred = predict()
    dt = time.perf_counter() - t0
    steps.append({"step": 0, "seconds": dt, "clicks": {}, **score_step(pred, gts, classes, spacing, tolerance_mm)})
    for k in range(1, n_clicks + 1):
        clicks = {}
        for c in classes:
            click = corrective_click(pred == c, gts == c, regions="xor", rng=rng)
            if click is not None:  # no error: no click (as the official script)
                clicks[c] = click
        t0 = time.perf_counter()
        for c, click in clicks.items():
            x, y, z = click.point
            sess.add_prompt(int(z), c, points=[[x, y]], labels=[click.label], clear_old=False)
        if clicks:
            pred = predict()
        dt = time.perf_counter() - t0
        steps.append({"step": k, "seconds": dt,
                      "clicks": {c: {"xyz": list(cl.point), "positive": cl.positive} for c, cl in clicks.items()},
                      **score_step(pred, gts, classes, spacing, tolerance_mm)})
    dscs, nsds = [s["dsc"] for s in steps], [s["nsd"] for s in steps]
    total = float(sum(s["seconds"] for s in steps))
    return {"num_classes": len(classes), "policy": policy, "steps": steps,
            "dsc_auc": interaction_auc(dscs, n_clicks), "nsd_auc": interaction_auc(nsds, n_clicks),
            "dsc_final": final_score(dscs), "nsd_final": final_score(nsds), "seconds": total,
            "seconds_per_class": total / len(classes),
            "over_time_limit": total > TIME_LIMIT_PER_CLASS * len(classes),
            "memory": {c: sess.memory_stats(c) for c in classes}}


# ---------------------------------------------------------------------------------- data
def load_npz(path: Union[str, Path]) -> Tuple[np.ndarray, np.ndarray, Tuple[float, ...], Optional[list]]:
    """A challenge case: (imgs (D, H, W), gts (D, H, W), spacing as stored, boxes or None)."""
    with np.load(path, allow_pickle=True) as d:
        if "imgs" not in d or "gts" not in d:
            raise ValueError(f"{path}: a CVPR 2025 case needs 'imgs' and 'gts'")
        sp = tuple(float(s) for s in d["spacing"]) if "spacing" in d else (1.0, 1.0, 1.0)
        boxes = list(d["boxes"]) if "boxes" in d else None
        return np.asarray(d["imgs"]), np.asarray(d["gts"]), sp, boxes


def iter_cases(data: Union[str, Path], split: str = "test",
               tasks: Optional[Sequence[str]] = None) -> Iterator[Tuple[str, np.ndarray, np.ndarray, tuple, object]]:
    """Cases of an npz file, a folder of npz files, or a MedBank-mini manifest (its 3D cases of `split`):
    yields (name, image, gts, spacing in array order, boxes or None)."""
    p = Path(data)
    if p.is_file() and p.suffix == ".npz":
        yield (p.stem, *load_npz(p))
        return
    if p.is_dir() and not (p / "manifest.json").exists():
        files = sorted(p.glob("*.npz"))
        if not files:
            raise ValueError(f"{p}: no .npz cases")
        for f in files:
            yield (f.stem, *load_npz(f))
        return
    from ..data.synth import load_manifest

    for c in load_manifest(p, split=split, task=list(tasks) if tasks else None):
        if c.dims != 3:
            continue
        yield c.id, c.image, c.label, c.spacing_array_order, None


def summarize(results: Sequence[dict]) -> dict:
    """Means over cases of the challenge's five numbers (+ the per-step curves)."""
    if not results:
        return {}
    keys = ("dsc_auc", "nsd_auc", "dsc_final", "nsd_final", "seconds", "seconds_per_class")
    out = {k: float(np.mean([r[k] for r in results])) for k in keys}
    n = len(results[0]["steps"])
    out["dsc_per_step"] = [float(np.mean([r["steps"][i]["dsc"] for r in results])) for i in range(n)]
    out["nsd_per_step"] = [float(np.mean([r["steps"][i]["nsd"] for r in results])) for i in range(n)]
    out["cases"] = len(results)
    out["over_time_limit"] = int(sum(r["over_time_limit"] for r in results))
    return out
