"""The main job as one function: a volume and its prompts in, a label map and a report out."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..model import SAM2Model
from .prompts import keep_within_slices
from .volume import VolumeSession


@dataclass
class Segmentation:
    """The one result of the main job: the mask file, the overlay and the report are all written from it.

    labels: (Z, Y, X) uint16 label map in the volume's own array order (0 = background).
    sliced: (S, H, W) uint16, the same labels in the slicing order the model saw.
    slices: (S, H, W) or (S, H, W, 3), the image in that slicing order (what the overlay draws on).
    report: JSON-ready dict (model, policy, seconds, per object: voxels, volume_ml, per-slice confidence).
    session: the `VolumeSession` (None for multi-orientation, which fuses several sessions).
    """

    labels: np.ndarray
    sliced: np.ndarray
    slices: np.ndarray
    report: dict
    session: Optional[VolumeSession] = None

    def overlay(self, max_tiles: int = 12) -> np.ndarray:
        """(H', W', 3) uint8 mosaic of slices with each object's contour."""
        from ..io.overlay import overlay_mosaic

        return overlay_mosaic(self.slices, self.sliced, max_tiles=max_tiles)

    def write(self, volume, mask_path, overlay_path=None, report_path=None,
              names: Optional[Dict[int, str]] = None) -> None:
        """Write the mask (in `volume`'s geometry), then the overlay PNG, then the report JSON — last, so
        that a report means a complete case; each file atomically."""
        from ..io import write_mask
        from ..io.overlay import write_json_atomic, write_png_atomic

        write_mask(self.labels, volume, mask_path, labels=names or None)
        if overlay_path is not None:  # drawn from the same result as the mask
            write_png_atomic(self.overlay(), overlay_path)
            self.report["overlay"] = str(overlay_path)
        if report_path is not None:
            write_json_atomic(self.report, report_path)

    def confidence(self, obj_id: int) -> List[dict]:
        """Per-slice confidence rows of one object (predicted IoU, object score, review flag)."""
        for o in self.report["objects"]:
            if o["id"] == int(obj_id):
                return o.get("per_slice", [])
        raise KeyError(f"no object {obj_id}; objects: {[o['id'] for o in self.report['objects']]}")


def object_volumes(labels: np.ndarray, spacing, ids: Sequence[int]) -> Dict[int, dict]:
    """{id: {"voxels", "volume_ml"}} of each object in a (Z, Y, X) label map with voxel spacing (mm)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out = {}
    for oid in ids:
        n = int((labels == int(oid)).sum())
        out[int(oid)] = {"voxels": n, "volume_ml": round(n * voxel_ml, 3)}
    return out


def _precision_name(session: VolumeSession) -> str:
    """The precision the session's network ran in: the onnxruntime backend's name, or the autocast dtype's."""
    from .autocast import precision_name

    backend = getattr(session.model, "backend", "torch")  # an OnnxSAM2 names its backend; a SAM2Model has none
    return backend if backend != "torch" else precision_name(session.model.device, session.dtype)


def segment_volume(model: SAM2Model, volume, objects: Sequence, *, policy: str = "fifo", axis=None,
                   direction: str = "both", policy_kwargs: Optional[dict] = None, progress: bool = False,
                   intensity="auto", review_iou: float = 0.5, dtype=None) -> Segmentation:
    """Segment `volume` (a medmem.io.Volume) from `objects` (medmem.io.ObjectPrompts) → `Segmentation`.

    A 3D box prompt (z-range + box on one slice) limits its object to the z-range, in the labels,
    the overlay and the report alike.
    """
    if not objects:
        raise ValueError("no prompts: give at least one object with one prompt")
    axes = {o.axis for o in objects}
    if axis is None:
        if len(axes) > 1:
            raise ValueError(f"objects are prompted along different axes {sorted(map(str, axes))}; give one axis")
        axis = next(iter(axes))
    t0 = time.perf_counter()
    session = VolumeSession(model, volume, policy, axis=axis, policy_kwargs=policy_kwargs, progress=progress,
                            intensity=intensity, dtype=dtype)
    z_limits = {}
    for o in objects:
        if not o.prompts:
            raise ValueError(f"object {o.id} has no prompts")
        for p in o.prompts:
            session.add_prompt(int(p.slice), int(o.id), **p.inputs())
            if getattr(p, "z_range", None) is not None:
                z_limits[int(o.id)] = (int(min(p.z_range)), int(max(p.z_range)))
    for _ in session.propagate(direction):
        pass
    labels = session.label_map()
    for oid, (z0, z1) in z_limits.items():  # CVPR 2025 protocol: the object lies within its z-range
        keep_within_slices(labels, z0, z1, label=oid)
    elapsed = time.perf_counter() - t0
    label_vol = session.view.to_volume(labels) if session.view is not None else labels
    sizes = object_volumes(label_vol, getattr(volume, "spacing", (1.0, 1.0, 1.0)), [o.id for o in objects])
    report = {
        "model": model.cfg.name,
        "policy": policy,
        "axis": str(axis),
        "direction": direction,
        "precision": _precision_name(session),
        "num_slices": session.num_slices,
        "slice_shape": list(session.slice_hw),
        "seconds": round(elapsed, 3),
        "slices_per_second": round(session.num_slices * len(objects) / max(elapsed, 1e-9), 3),
        "objects": [],
    }
    for o in objects:
        oid = int(o.id)
        rows = session.confidence(oid, review_iou)
        report["objects"].append({
            "id": oid, "name": o.name, **sizes[oid],
            "slices_present": [r["slice"] for r in rows if r.get("present") and (labels[r["slice"]] == oid).any()],
            "slices_to_review": [r["slice"] for r in rows if r.get("review")],
            "memory": session.memory_stats(oid),
            "per_slice": rows,
        })
    image = session.view.array if session.view is not None else np.asarray(getattr(volume, "array", volume))
    return Segmentation(label_vol, labels, image, report, session)


def parse_cli_prompts(volume, axis, box: Optional[str], slice_idx: Optional[int], points: List[str], obj_id: int = 1):
    """--box X0,Y0,X1,Y1 --slice Z and --point X,Y,Z[,LABEL] → [ObjectPrompts]."""
    from ..io.prompts import BoxPrompt, ObjectPrompts, PointsPrompt

    prompts = []
    if box is not None:
        if slice_idx is None:
            if np.asarray(volume.array).shape[0] != 1 or axis not in (None, 0, "0"):
                raise ValueError("--box needs --slice (the slice the box is drawn on)")
            slice_idx = 0  # a 2D image: its only slice
        try:
            b = tuple(float(v) for v in box.split(","))
        except ValueError:
            raise ValueError(f"--box must be X0,Y0,X1,Y1 numbers, got {box!r}") from None
        if len(b) != 4:
            raise ValueError(f"--box must be X0,Y0,X1,Y1, got {box!r}")
        prompts.append(BoxPrompt(slice=int(slice_idx), box=b))
    by_slice = {}
    for p in points or []:
        try:
            v = [float(x) for x in p.split(",")]
        except ValueError:
            raise ValueError(f"--point must be X,Y,Z[,LABEL], got {p!r}") from None
        if len(v) not in (3, 4):
            raise ValueError(f"--point must be X,Y,Z[,LABEL], got {p!r}")
        lab = int(v[3]) if len(v) == 4 else 1
        by_slice.setdefault(int(v[2]), []).append(((v[0], v[1]), lab))
    for s, pl in by_slice.items():
        prompts.append(PointsPrompt(slice=s, points=np.array([q for q, _ in pl], float),
                                    labels=np.array([lab for _, lab in pl], np.int32)))
    if not prompts:
        raise ValueError("no prompts: give --prompts FILE.json, or --box with --slice, or --point X,Y,Z")
    return [ObjectPrompts(id=obj_id, prompts=prompts, axis=axis if axis is not None else 0)]
