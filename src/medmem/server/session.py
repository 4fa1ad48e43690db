"""An editing session: an engine `VolumeSession` plus named objects and an undo/redo log.

Objects are independent in the engine, so undo concerns one object: before each step the
object's engine state (`VolumeSession.objects[k]`) is copied; undo puts the copy back (instant).
Where no copy is kept (older steps, a restored session) undo removes k and replays k's remaining
steps (its prompts and the propagations that followed them). Other objects are not touched.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np

from ..engine.volume import VolumeSession
from .history import Step

AXES = ("axial", "coronal", "sagittal")
PALETTE = ("#ff4040", "#40c0ff", "#ffd000", "#40ff70", "#ff40ff", "#ff9020", "#a080ff", "#00e0c0")
Progress = Callable[[int, int], None]


@dataclass
class ObjectInfo:
    """A named, coloured object."""

    name: str
    color: str

    def to_json(self) -> dict:
        return {"name": self.name, "color": self.color}


class EditSession:
    """Interactive segmentation state of one volume (not thread-safe: the caller holds a lock)."""

    def __init__(self, model, volume, *, policy: str = "fifo", intensity: str = "auto") -> None:
        self.model, self.volume = model, volume
        self.policy, self.intensity = policy, intensity
        self.axis: Optional[str] = None        # the propagation axis, fixed by the first prompt
        self.vs: Optional[VolumeSession] = None
        self.objects: Dict[int, ObjectInfo] = {}
        self.history: List[Step] = []
        self.redo_stack: List[Step] = []
        self.version = 0
        self._labels_cache: Optional[tuple] = None
        self._snapshots: Dict[int, object] = {}   # id(step) -> engine state of step.obj before the step

    SNAPSHOTS = 32  # engine-state copies kept for instant undo (about 2 MB each for one object at 94 slices: benchmarks/results_undo_snapshot.json)

    # ------------------------------------------------------------------ objects
    def add_object(self, name: Optional[str] = None, color: Optional[str] = None) -> int:
        oid = max(self.objects, default=0) + 1
        self.objects[oid] = ObjectInfo(_clean_name(name) or f"object {oid}", _check_color(color)
                                       or PALETTE[(oid - 1) % len(PALETTE)])
        self._changed()
        return oid

    def update_object(self, oid: int, name: Optional[str] = None, color: Optional[str] = None) -> None:
        info = self._info(oid)
        if name is not None:
            info.name = _clean_name(name) or info.name
        if color is not None:
            info.color = _check_color(color) or info.color
        self._changed()

    def delete_object(self, oid: int) -> None:
        """Remove an object with all its steps (not undoable)."""
        self._info(oid)
        del self.objects[oid]
        gone = {id(s) for s in self.history + self.redo_stack if s.obj == oid}
        self.history = [s for s in self.history if s.obj != oid]
        for k in gone & set(self._snapshots):
            del self._snapshots[k]
        self.redo_stack = [s for s in self.redo_stack if s.obj != oid]
        if self.vs is not None and oid in self.vs.objects:
            self.vs.remove_object(oid)
        self._changed()

    def _info(self, oid: int) -> ObjectInfo:
        if oid not in self.objects:
            raise KeyError(f"no object {oid}; objects: {sorted(self.objects)}")
        return self.objects[oid]

    # ------------------------------------------------------------------ prompts
    def num_slices(self, axis: str) -> int:
        return self.volume.slices(_check_axis(axis)).num_slices

    def prompt(self, oid: int, axis: str, slice_idx: int, *, box=None, points=None, labels=None,
               mask: Optional[np.ndarray] = None, add: bool = True) -> None:
        """Prompt an object on a slice of `axis` (a box, clicks, or a mask); corrections are prompts too.

        add=True adds clicks to the slice's earlier box and clicks; add=False replaces them."""
        self._info(oid)
        axis = _check_axis(axis)
        if self.axis is not None and axis != self.axis and self.history:
            raise ValueError(f"this session propagates along the {self.axis} axis; prompt on an {self.axis} "
                             "slice (or delete the objects to start over on another axis)")
        if not isinstance(slice_idx, int) or not 0 <= slice_idx < self.num_slices(axis):
            raise ValueError(f"slice {slice_idx} is outside the {axis} range 0..{self.num_slices(axis) - 1}")
        if mask is not None:
            step = Step.from_mask(oid, slice_idx, np.asarray(mask, bool))
        else:
            step = Step(obj=oid, slice=slice_idx,
                        box=None if box is None else [float(v) for v in box],
                        points=None if points is None else [[float(a), float(b)] for a, b in points],
                        labels=None if labels is None else [int(v) for v in labels],
                        clear_old=not (add and box is None))
        self._ensure_engine(axis)
        before = copy.deepcopy(self.vs.objects.get(oid))
        self._apply(step)             # raises ValueError on a bad prompt, before anything is recorded
        self._keep_snapshot(step, before)
        self.history.append(step)
        self.redo_stack.clear()
        self._changed()

    def _ensure_engine(self, axis: str) -> None:
        if self.vs is None or self.axis != axis:
            self.axis = axis
            self.vs = VolumeSession(self.model, self.volume, self.policy, axis=axis, intensity=self.intensity)

    def _apply(self, step: Step) -> None:
        self.vs.add_prompt(step.slice, step.obj, **step.kwargs())

    def dirty_objects(self) -> List[int]:
        """Objects whose latest step has not been propagated yet."""
        last: Dict[int, Step] = {}
        for s in self.history:
            last[s.obj] = s
        return [o for o, s in last.items() if not s.propagated]

    def propagate(self, progress: Optional[Progress] = None) -> int:
        """Propagate every object that changed; returns the number of slices processed."""
        dirty = self.dirty_objects()
        if not dirty:
            return 0
        n = self._run_propagation(dirty, progress)
        last: Dict[int, Step] = {}
        for s in self.history:
            last[s.obj] = s
        for o in dirty:
            last[o].propagated = True
        self._changed()
        return n

    def _run_propagation(self, obj_ids: List[int], progress: Optional[Progress]) -> int:
        total = self.vs.num_slices
        done = 0
        for _ in self.vs.propagate("both", obj_ids=obj_ids):
            done += 1
            if progress is not None:
                progress(min(done, total), total)
        return done

    # ------------------------------------------------------------------ undo / redo
    @property
    def can_undo(self) -> bool:
        return bool(self.history)

    @property
    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    def undo(self, progress: Optional[Progress] = None) -> Step:
        if not self.history:
            raise ValueError("nothing to undo")
        step = self.history.pop()
        self.redo_stack.append(step)
        snap = self._snapshots.pop(id(step), False)
        if snap is False:
            self._rebuild(step.obj, progress)
        elif snap is None:
            self.vs.remove_object(step.obj)
        else:
            self.vs.objects[step.obj] = snap
        self._changed()
        return step

    def redo(self, progress: Optional[Progress] = None) -> Step:
        if not self.redo_stack:
            raise ValueError("nothing to redo")
        step = self.redo_stack.pop()
        before = copy.deepcopy(self.vs.objects.get(step.obj))
        self._apply(step)
        self._keep_snapshot(step, before)
        if step.propagated:
            self._run_propagation([step.obj], progress)
        self.history.append(step)
        self._changed()
        return step

    def _keep_snapshot(self, step: Step, state) -> None:
        self._snapshots[id(step)] = state
        live = {id(s) for s in self.history[-self.SNAPSHOTS:]} | {id(step)}
        for k in [k for k in self._snapshots if k not in live]:
            del self._snapshots[k]

    def _rebuild(self, oid: int, progress: Optional[Progress]) -> None:
        """Replay an object's remaining steps on a fresh engine object."""
        if oid in self.vs.objects:
            self.vs.remove_object(oid)
        for s in [s for s in self.history if s.obj == oid]:
            self._apply(s)
            if s.propagated:
                self._run_propagation([oid], progress)

    def replay_all(self, progress: Optional[Progress] = None) -> None:
        """Rebuild the engine state from the log (after a server restart)."""
        if not self.history:
            return
        self.vs = None
        self._ensure_engine(self.axis or "axial")
        for oid in sorted({s.obj for s in self.history}):
            self._rebuild(oid, progress)
        self._changed()

    # ------------------------------------------------------------------ results
    def _changed(self) -> None:
        self.version += 1

    def label_volume(self) -> np.ndarray:
        """(Z, Y, X) uint16 label map in the volume's array order (cached per version)."""
        if self._labels_cache is not None and self._labels_cache[0] == self.version:
            return self._labels_cache[1]
        if self.vs is None or not self.vs.objects:
            lab = np.zeros(self.volume.shape, np.uint16)
        else:
            ids = [o for o in self.vs.obj_ids if o in self.objects]
            lab = self.vs.label_volume(ids) if ids else np.zeros(self.volume.shape, np.uint16)
        self._labels_cache = (self.version, lab)
        return lab

    def cached_labels(self) -> Optional[np.ndarray]:
        """The last computed label map (possibly one version old), without computing."""
        return None if self._labels_cache is None else self._labels_cache[1]

    def confidence(self, oid: int) -> List[dict]:
        self._info(oid)
        if self.vs is None or oid not in self.vs.objects:
            return []
        return self.vs.confidence(oid)

    def seed_from_mask(self, labels: np.ndarray, axis: str = "axial", every: int = 5,
                       progress: Optional[Progress] = None) -> List[int]:
        """Start from an existing label map (Z, Y, X): one object per label value, mask prompts on
        its first and last slices and every `every`-th slice between, then propagation.
        Returns the new object ids."""
        labels = np.asarray(labels)
        if labels.shape != self.volume.shape:
            raise ValueError(f"the mask has shape {labels.shape} but the image is {self.volume.shape} (Z, Y, X)")
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
                raise ValueError("the mask must hold integer labels (0 = background)")
            labels = labels.astype(np.int64)
        values = [int(v) for v in np.unique(labels) if v > 0]
        if not values:
            raise ValueError("the mask is empty (no label above 0)")
        if len(values) > 64:
            raise ValueError(f"the mask has {len(values)} labels; at most 64 objects")
        axis = _check_axis(axis if self.axis is None else self.axis)
        view = self.volume.slices(axis)
        lab_s = labels.transpose(view.perm[:3])
        new = []
        for v in values:
            oid = self.add_object(f"label {v}")
            new.append(oid)
            present = [s for s in range(lab_s.shape[0]) if (lab_s[s] == v).any()]
            seeds = sorted(set(present[::every]) | {present[0], present[-1]})
            for s in seeds:
                self.prompt(oid, axis, s, mask=lab_s[s] == v)
        self.propagate(progress)
        return new

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict:
        return {"axis": self.axis, "objects": {str(k): v.to_json() for k, v in self.objects.items()},
                "history": [s.to_json() for s in self.history], "redo": [s.to_json() for s in self.redo_stack]}

    def load_json(self, d: dict) -> None:
        """Restore objects and the log (call `replay_all` to rebuild the masks)."""
        self.axis = d.get("axis")
        self.objects = {int(k): ObjectInfo(**v) for k, v in d.get("objects", {}).items()}
        self.history = [Step.from_json(s) for s in d.get("history", [])]
        self.redo_stack = [Step.from_json(s) for s in d.get("redo", [])]
        self._changed()


def _check_axis(axis: str) -> str:
    if axis not in AXES:
        raise ValueError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    return axis


def _clean_name(name: Optional[str]) -> Optional[str]:
    if name is None:
        return None
    name = "".join(ch for ch in str(name) if ch.isprintable()).strip()
    return name[:64] or None


def _check_color(color: Optional[str]) -> Optional[str]:
    if color is None:
        return None
    c = str(color).strip().lower()
    if len(c) == 7 and c[0] == "#" and all(ch in "0123456789abcdef" for ch in c[1:]):
        return c
    raise ValueError(f"colour must be #rrggbb, got {color!r}")
