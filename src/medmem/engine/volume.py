"""3D volume and video propagation: prompt any slice, propagate both ways, correct, many objects.

    session = medmem.VolumeSession(model, volume, policy="fifo")      # Volume, (S, H, W) or (S, H, W, 3)
    session.add_prompt(slice_idx=40, obj_id=1, box=[x0, y0, x1, y1])  # (x, y) = (column, row) pixels
    for s, masks in session.propagate():                               # direction="both" by default
        ...                                                           # masks: {obj_id: (H, W) bool}
    labels = session.label_map()                                       # (S, H, W) in the slicing order

State lives here (per object, independent); the model stays stateless; a memory policy per
object decides what is remembered. Bounded memory: slice features are encoded in chunks and
cached only briefly; per-slice results are kept as low-resolution logits (fp16).

Bank policies tell what they hold: `memory_stats(obj_id)` (bank fill level, admissions,
rejections), `confidence(obj_id)` rows carry the bank size and the entries retrieved on each
slice, and a warning is raised when a bank is still empty after propagation.
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..preprocess import Intensity, ResizeMode, to_source
from ..memory.entry import FrameMemory
from ..memory.bank import MemoryBank, feature_key, model_fingerprint
from ..memory.policies import BankPolicy, MemoryPolicy, make_policy
from ..model import NO_OBJ_SCORE, MaskMemory, ObjectPointer, SAM2Model
from ..model.memory_attention import MemoryKVCache
from .autocast import autocast
from .features import FeatureCache
from .frames import FrameSource, TensorFrameSource
from .presence import follow, looks_present, prototypes
from .prompts import SlicePrompt, check_prompt, prompt_to_inputs
from .region import Region, box_inputs, region_around
from .window import clip_heads, clip_to_window, grow_box, mask_box, prompt_windows


@dataclass
class SliceResult:
    """One object's result on one slice."""

    low_res: torch.Tensor       # (1, 1, S/4, S/4) fp16 logits
    iou: float                  # predicted IoU of the kept mask
    object_score: float         # object-presence logit
    prompted: bool = False
    bank_entries: Optional[int] = None  # bank fill level after this slice (bank policies)
    retrieved: Optional[int] = None     # bank entries attended to on this slice (bank policies)

    @classmethod
    def from_step(cls, out, prompted: bool = False) -> "SliceResult":
        """From a `SAM2Model.track_step` output: logits stored fp16 on the CPU, the best predicted IoU."""
        return cls(out.pred_masks.detach().to("cpu", torch.float16), float(out.heads.ious.float().max()),
                   float(out.object_score_logits.float().reshape(-1)[0]), prompted)

    def row(self, iou_threshold: float = 0.5) -> dict:
        """The confidence row of this result (without the slice / image index). `present`: the object
        score is positive *and* the mask has a pixel (an empty mask is never reported as the object)."""
        present = self.object_score > 0 and bool((self.low_res > 0).any())
        row = dict(segmented=True, iou=round(self.iou, 4), object_score=round(self.object_score, 3),
                   present=present, prompted=self.prompted, review=bool(present and self.iou < iou_threshold))
        if self.retrieved is not None:
            row.update(bank_entries=self.bank_entries, retrieved=self.retrieved)
        return row


@dataclass
class _Object:
    obj_id: int
    policy: MemoryPolicy
    prompts: Dict[int, SlicePrompt] = field(default_factory=dict)
    results: Dict[int, SliceResult] = field(default_factory=dict)
    pending: Dict[int, FrameMemory] = field(default_factory=dict)   # prompted, memory not yet encoded
    tracked_dir: Dict[int, bool] = field(default_factory=dict)       # slice -> reverse flag of last pass
    dirty: Optional[Tuple[int, int]] = None                          # slice range to (re)propagate
    prototypes: Optional[tuple] = None                               # (object, surroundings) features, box tracking
    pass_prototypes: Optional[tuple] = None                          # the same, updated along the current pass


class VolumeSession:
    """Propagation over an ordered sequence of slices (a volume along an axis, or video frames)."""

    def __init__(self, model: SAM2Model, volume, policy: Union[str, MemoryPolicy] = "fifo", *, axis=None,
                 intensity: Intensity = "auto", resize_mode: ResizeMode = "stretch", chunk: int = 8,
                 dtype: Optional[torch.dtype] = None, storage_dtype: torch.dtype = torch.bfloat16,
                 policy_kwargs: Optional[dict] = None, progress: bool = False, frames=None,
                 policy_options: Optional[dict] = None, backend: str = "torch") -> None:
        """volume: a `medmem.io.Volume`, or an array (S, H, W) / (S, H, W, 3) of slices in order.
        axis: slicing axis ("axial" | "coronal" | "sagittal" | array axis 0/1/2; default axial). Names are
        resolved from a Volume's direction; a plain (Z, Y, X) array is sliced the same way as a Volume
        with identity direction (axial = Z, coronal = Y, sagittal = X); slices (S, H, W, 3) of a video
        or an RGB stack have only their own order (axis 0).
        policy: "fifo" | "self_sorting" | "confidence", one instance per object.
        policy_options (alias policy_kwargs): the policy's keyword options (`medmem.memory.policies`),
        plus, for bank policies, ``bank`` (a `MemoryBank` or a saved bank's path: shared by every
        object), ``share_bank`` (one bank for all objects) and ``save_bank`` (path written after
        every `propagate()`).
        dtype: autocast dtype (default: `engine.autocast.resolve_dtype`, bf16 on CUDA and on CPUs with
        AMX, fp32 elsewhere); storage_dtype: dtype of stored mask memories.
        frames: advanced — a ready frame source (`TensorFrameSource`) instead of `volume`.
        backend: "torch", "onnxruntime" or "onnxruntime-int8" (`medmem.export.as_backend`; CPU)."""
        if backend != "torch":
            from ..export.backend import as_backend

            model = as_backend(model, backend)
        self.model = model.eval()
        self.volume, self.view = None, None
        if frames is None:
            arr = volume
            if axis not in (None, 0, "0", "axial") and not hasattr(volume, "slices"):
                from ..io import Volume

                arr = np.asarray(volume)
                if arr.ndim != 3:
                    raise ValueError(f"axis {axis!r} needs a volume (Z, Y, X); slices of shape {arr.shape} have only "
                                     "their own order (axis 0)")
                volume = Volume(arr)
            if axis is None:
                axis = "axial"
            if hasattr(volume, "slices") and hasattr(volume, "array"):
                self.volume = volume
                # a single 2D image has no anatomical slicing axis: its one "slice" is array axis 0
                self.view = volume.slices(0 if volume.array.shape[0] == 1 else axis)
                arr = self.view.array
            frames = FrameSource(np.asarray(arr), model.image_size, intensity, resize_mode, model.device)
        self.frames = frames
        self.num_slices = frames.num_slices
        self.slice_hw = frames.slice_hw
        self.resize_mode = frames.resize_mode
        if model.cfg.region_size > 0 and not model.has_memory:
            chunk = 1  # region tracking: only prompted slices are encoded whole (engine/region.py)
        self.features = FeatureCache(model, frames, chunk, dtype=dtype)
        self.dtype, self.storage_dtype = dtype, storage_dtype
        opts = dict(policy_kwargs or {})
        opts.update(policy_options or {})
        if not model.has_memory and (policy != "fifo" or opts):
            raise ValueError(f"{model.cfg.name} has no memory: a memory policy or its options would have no effect "
                             "(it tracks with a box from the previous slice); for memory use a model with it, "
                             "e.g. --model medmem_small_256 or a SAM 2 checkpoint")
        self._shared_bank, self._save_bank = self._bank_options(policy, opts)
        self._policy_spec, self._policy_kwargs = policy, opts
        self.objects: Dict[int, _Object] = {}
        self.progress = progress
        # fast memory attention: each object's memory keys are computed once and kept (`MemoryKVCache`) while
        # its memory holds them; set to None for the plain path (same numbers, to float rounding)
        self.memory_caches: Optional[Dict[int, MemoryKVCache]] = (
            {} if "memory_cache" in inspect.signature(self.model.track_step).parameters else None)

    def _bank_options(self, policy, opts: dict) -> Tuple[Optional[MemoryBank], Optional[str]]:
        """Pop the session-level bank options (bank, share_bank, save_bank) from `opts`."""
        bank, share, save = opts.pop("bank", None), bool(opts.pop("share_bank", False)), opts.pop("save_bank", None)
        if (bank is not None or share or save) and policy not in ("self_sorting", "confidence"):
            raise ValueError(f"bank options need a bank policy (self_sorting, confidence), not {policy!r}")
        if isinstance(bank, (str, Path)):
            src = bank
            bank = MemoryBank.load(src, self.model.cfg, model_fingerprint(self.model),
                                   capacity=opts.get("capacity"), grid=opts.get("key_grid"))
            if not len(bank):
                warnings.warn(f"the memory bank loaded from {src} is empty", stacklevel=3)
        elif share and bank is None:
            bank = MemoryBank(opts.get("capacity", 16 if policy == "self_sorting" else 640), opts.get("key_grid", 4))
        return bank, (str(save) if save else None)

    @property
    def bank(self) -> Optional[MemoryBank]:
        """The bank shared by all objects (with ``bank`` / ``share_bank``), else None."""
        return self._shared_bank

    def save_bank(self, path, obj_id: Optional[int] = None) -> Path:
        """Write the shared bank (or object `obj_id`'s) to `path` with this model's config and fingerprint."""
        if obj_id is None and self._shared_bank is None:
            if len(self.objects) != 1:
                raise ValueError("the bank is not shared: name the object whose bank to save")
            obj_id = next(iter(self.objects))
        bank = self._shared_bank if obj_id is None else getattr(self.objects[obj_id].policy, "bank", None)
        if bank is None:
            raise ValueError(f"policy {self._policy_spec!r} has no bank")
        return bank.save(path, self.model.cfg, model_fingerprint(self.model))

    @classmethod
    def from_model_inputs(cls, model: SAM2Model, images: torch.Tensor, slice_hw: Tuple[int, int],
                          **kwargs) -> "VolumeSession":
        """A session over already normalised model inputs (N, 3, S, S) whose slices are slice_hw in the source."""
        return cls(model, None, frames=TensorFrameSource(images, slice_hw), **kwargs)

    # ------------------------------------------------------------------ objects and prompts
    @property
    def obj_ids(self) -> List[int]:
        return list(self.objects)

    def _object(self, obj_id: int) -> _Object:
        if obj_id not in self.objects:
            if isinstance(self._policy_spec, MemoryPolicy) and self.objects:
                raise ValueError("pass a policy name (not an instance) to track several objects")
            kw = dict(self._policy_kwargs)
            if self._shared_bank is not None:
                kw["bank"] = self._shared_bank
            self.objects[obj_id] = _Object(obj_id, make_policy(self._policy_spec, self.model.cfg, **kw))
        return self.objects[obj_id]

    def remove_object(self, obj_id: int) -> None:
        if obj_id not in self.objects:
            raise KeyError(f"no object {obj_id}; objects: {self.obj_ids}")
        del self.objects[obj_id]
        if self.memory_caches is not None:
            self.memory_caches.pop(obj_id, None)

    @torch.inference_mode()
    def add_prompt(self, slice_idx: int, obj_id: int = 1, points=None, labels=None, box=None, mask=None,
                   clear_old: bool = True) -> np.ndarray:
        """Prompt object `obj_id` on a slice; returns its mask on that slice (H, W) bool.

        Coordinates are (x, y) = (column, row) pixels of the slice. On a slice that was already
        tracked, the prompt is a correction: that slice becomes a conditioning slice and the next
        `propagate()` re-runs only the slices between its neighbouring conditioning slices.
        With clear_old=False, new points are added to the points already on that slice.
        """
        if not isinstance(slice_idx, (int, np.integer)) or not 0 <= slice_idx < self.num_slices:
            raise ValueError(f"slice {slice_idx} is outside the volume (0..{self.num_slices - 1})")
        s = int(slice_idx)
        p = check_prompt(self.slice_hw, points, labels, box, mask)
        obj = self._object(obj_id)
        if not clear_old:
            p = p.merged_with(obj.prompts.get(s))
        obj.prompts[s] = p
        feats = self.features.get(s)
        is_init = s not in obj.tracked_dir
        reverse = obj.tracked_dir.get(s, False)
        m = self.model
        point_inputs, mask_inputs = prompt_to_inputs(p, self.slice_hw, m.image_size, self.resize_mode, m.device)
        prev = None
        prev_res = obj.results.get(s)
        if point_inputs is not None and not is_init and prev_res is not None:
            prev = torch.clamp(prev_res.low_res.float().to(m.device), -32.0, 32.0)
        no_mask = prev is None or not bool((prev > 0).any())
        if m.cfg.click_boxes and p.points is not None and p.box is None and no_mask:
            prev = self._nearest_mask(obj, s)  # a box-trained decoder reads clicks through the nearest mask's box
        mems, ptrs, tmax = ([], [], 1) if is_init else self._select(obj, s, reverse, feats)
        with autocast(m.device, self.dtype):
            out = m.track_step(feats, is_init_cond_frame=is_init, memories=mems, obj_ptrs=ptrs, ptr_tpos_max=tmax,
                               point_inputs=point_inputs, mask_inputs=mask_inputs, prev_mask_logits=prev,
                               run_mem_encoder=False, **self._fast(obj))
            for window in prompt_windows(point_inputs, m.cfg.mask_window, m.image_size) or ():
                clip_heads(out.heads, window, m.image_size)  # the mask stays inside the prompt box
        entry = self._entry(s, out, is_cond=True)
        obj.pending[s] = entry
        obj.results[s] = SliceResult.from_step(out, prompted=True)
        obj.policy.remove_conditioning(s)
        lo, hi = self._cond_neighbours(obj, s)
        obj.dirty = self._union(obj.dirty, (lo, hi))
        return self.mask(obj_id, s)

    def _nearest_mask(self, obj: _Object, s: int) -> Optional[torch.Tensor]:
        """Low-res logits (1, 1, h, w) of the object's nearest slice to s with a non-empty present mask, or None."""
        for d in sorted((t for t in obj.results if t != s), key=lambda t: (abs(t - s), t)):
            r = obj.results[d]
            if r.object_score > 0 and bool((r.low_res > 0).any()):
                return torch.clamp(r.low_res.float().to(self.model.device), -32.0, 32.0)
        return None

    def clear_prompts(self, slice_idx: int, obj_id: int) -> None:
        """Remove an object's prompts on a slice (it becomes an ordinary tracked slice)."""
        obj = self.objects[obj_id]
        obj.prompts.pop(slice_idx, None)
        obj.pending.pop(slice_idx, None)
        obj.policy.remove_conditioning(slice_idx)
        obj.results.pop(slice_idx, None)
        if not obj.prompts:
            obj.results.clear()
            obj.dirty = None
        else:
            obj.dirty = self._union(obj.dirty, self._cond_neighbours(obj, slice_idx))

    @staticmethod
    def _union(a, b):
        return b if a is None else (min(a[0], b[0]), max(a[1], b[1]))

    def _cond_neighbours(self, obj: _Object, s: int) -> Tuple[int, int]:
        """The slices a change on slice s affects: up to the neighbouring conditioning slices (exclusive)."""
        others = [t for t in obj.prompts if t != s]
        if not obj.tracked_dir:  # never propagated: everything
            return 0, self.num_slices - 1
        lo = max([t for t in others if t < s], default=-1) + 1
        hi = min([t for t in others if t > s], default=self.num_slices) - 1
        return lo, hi

    # ------------------------------------------------------------------ one step
    def _fast(self, obj: _Object) -> dict:
        """Extra track_step arguments: the object's memory-key cache (none on the plain path)."""
        if self.memory_caches is None:
            return {}
        return {"memory_cache": self.memory_caches.setdefault(obj.obj_id, MemoryKVCache())}

    def _entry(self, s, out, is_cond=False) -> FrameMemory:
        return FrameMemory.from_step(s, out, (out.maskmem_features, out.maskmem_pos), is_cond=is_cond,
                                     storage_dtype=self.storage_dtype)

    def _select(self, obj: _Object, s: int, reverse: bool, feats):
        key = feature_key(feats.vision_feats, obj.policy.key_grid)[0] if obj.policy.needs_key else None
        mems, ptrs, tmax = obj.policy.select(s, self.num_slices, reverse, key)
        return ([MaskMemory(e.maskmem_features, e.maskmem_pos, tp) for tp, e in mems],
                [ObjectPointer(e.obj_ptr, td) for td, e in ptrs], tmax)

    def _commit_pending(self, obj: _Object) -> None:
        """Encode the memory of newly prompted slices (as SAM 2 does before propagating)."""
        m = self.model
        for s, e in sorted(obj.pending.items()):
            feats = self.features.get(s)
            with autocast(m.device, self.dtype):
                mf, mp = m.encode_prompted_memory(feats, e.pred_masks, e.object_score_logits)
            e.maskmem_features, e.maskmem_pos = (None if mf is None else mf.to(self.storage_dtype)), mp
            obj.policy.add_conditioning(e)
            if m.cfg.prototype_presence:  # what the object and its surroundings look like, for presence checks
                obj.prototypes = self._prototypes(s, feats, e.pred_masks) or obj.prototypes
        obj.pending.clear()

    def _prototypes(self, s: int, feats, low_res: torch.Tensor):
        """Object and surroundings prototypes of a prompted slice; with region tracking, from the region that
        tracking would encode around its mask (the same scale as the regions they are compared with)."""
        m = self.model
        box = mask_box(low_res[0, 0], m.image_size)
        if m.cfg.region_size <= 0 or m.has_memory or box is None:
            return prototypes(feats.vision_feats, low_res)
        region = region_around(grow_box(box, m.cfg.propagation_box_margin, m.image_size), m.image_size,
                               m.cfg.region_size, m.cfg.region_context)
        if region.scale < m.cfg.region_min_scale:  # tracked whole: prototypes of the whole slice
            return prototypes(feats.vision_feats, low_res)
        full = F.interpolate(low_res.float(), size=(m.image_size,) * 2, mode="bilinear", align_corners=False)
        crop = region.crop(full)  # the mask over the same region
        return prototypes(self._region_features(s, region).vision_feats, crop)

    # ------------------------------------------------------------------ propagation
    @torch.inference_mode()
    def propagate(self, direction: str = "both", obj_ids: Optional[Sequence[int]] = None,
                  start: Optional[int] = None) -> Iterator[Tuple[int, Dict[int, np.ndarray]]]:
        """Propagate prompts through the slices; yields (slice_idx, {obj_id: (H, W) bool mask}), each slice
        once per call (where the two passes of "both" meet, a slice comes again only with the objects
        whose result the second pass changed).

        direction: "both" (forward from the first prompted slice to the end, then backward from it
        to slice 0; for models without memory and several prompted slices, each slice is tracked from its
        nearest prompted slice: forward from one before it, backward from one after it), "forward" or
        "backward". Only objects and slice ranges that changed since the last call are processed (new
        objects: everything; corrections: between the neighbouring conditioning slices). `start` overrides
        the first slice of the pass(es).
        """
        if direction not in ("both", "forward", "backward"):
            raise ValueError("direction must be 'both', 'forward' or 'backward'")
        ids = list(self.objects) if obj_ids is None else list(obj_ids)
        if not ids:
            raise RuntimeError("add a prompt first (add_prompt)")
        for i in ids:
            if i not in self.objects:
                raise KeyError(f"no object {i}; objects: {self.obj_ids}")
        todo = [self.objects[i] for i in ids if self.objects[i].dirty is not None or self.objects[i].pending]
        if not todo:
            return
        for obj in todo:
            self._commit_pending(obj)
        passes = []
        if direction in ("both", "forward"):
            passes.append(False)
        if direction in ("both", "backward"):
            passes.append(True)
        yielded = set()  # with "both", the prompted slice where the passes meet is yielded once
        for reverse in passes:
            plans = {}
            for obj in todo:
                first = min(obj.prompts) if not reverse or direction == "both" else max(obj.prompts)
                nearest = direction == "both" and start is None and not self.model.has_memory and len(obj.prompts) > 1
                if nearest and reverse:
                    first = max(obj.prompts)
                st = first if start is None else int(start)
                lo, hi = obj.dirty if obj.dirty is not None else (0, self.num_slices - 1)
                order = range(st, -1, -1) if reverse else range(st, self.num_slices)
                order = [s for s in order if lo <= s <= hi]
                if nearest:  # box tracking: each slice is tracked from its nearest prompted slice (ties: forward)
                    order = [s for s in order if s in obj.prompts or self._from_after(obj, s) == reverse]
                if order:
                    plans[obj.obj_id] = order
                    obj.policy.start_pass(reverse, order[0])
                    obj.pass_prototypes = obj.prototypes  # each pass starts from the prompted slice's
            all_slices = sorted({s for o in plans.values() for s in o}, reverse=reverse)
            it = all_slices
            if self.progress:
                from tqdm.auto import tqdm

                it = tqdm(all_slices, desc="propagate " + ("backward" if reverse else "forward"))
            for s in it:
                feats = None
                out_masks = {}
                fresh = set()  # objects with a new result on this slice
                for oid, order in plans.items():
                    obj = self.objects[oid]
                    if s not in order:
                        continue
                    if s in obj.prompts:
                        obj.tracked_dir[s] = reverse
                    elif self._ended(obj, s, reverse):  # the object has ended: not even encoded
                        obj.results[s] = self._absent()
                        obj.tracked_dir[s] = reverse
                        fresh.add(oid)
                    else:
                        fresh.add(oid)
                        if self._region_box(obj, s, reverse) is not None:  # only a region is encoded
                            self._track_region(obj, s, reverse)
                        else:
                            feats = feats if feats is not None else self.features.get(s, reverse)
                            self._track(obj, s, reverse, feats)
                    out_masks[oid] = self.mask(oid, s)
                if s in yielded:  # met again (passes of "both"): only what changed
                    out_masks = {o: mk for o, mk in out_masks.items() if o in fresh}
                if out_masks:
                    yielded.add(s)
                    yield s, out_masks
        for obj in todo:
            obj.dirty = None
            self._tell(obj)
        if self._save_bank is not None:
            self.save_bank(self._save_bank, None if self._shared_bank is not None else todo[0].obj_id)

    @staticmethod
    def _from_after(obj: _Object, s: int) -> bool:
        """Whether slice s's nearest prompted slice lies after it (strictly nearer than the nearest at or before)."""
        before = max((t for t in obj.prompts if t <= s), default=None)
        after = min((t for t in obj.prompts if t > s), default=None)
        if before is None or after is None:
            return before is None
        return after - s < s - before

    def _tell(self, obj: _Object) -> None:
        """Warn when a bank policy ran with an empty bank (it then attended to prompts + recent slices only)."""
        p = obj.policy
        if isinstance(p, BankPolicy) and len(p.bank) == 0:
            c = p.counts
            warnings.warn(f"object {obj.obj_id}: the {p.name} memory bank is empty after propagation "
                          f"({c['offered']} offered: {c['rejected_empty']} empty masks, {c['rejected_confidence']} "
                          f"below the confidence threshold {p.effective_threshold():.3g}); slices attended only to "
                          f"the prompted slices and the last {p.recent}", stacklevel=3)

    def _ended(self, obj: _Object, s: int, reverse: bool) -> bool:
        """Whether the object was absent on the last `stop_after_absent` slices before s in this pass,
        with none of its prompts at or beyond s."""
        n = self.model.cfg.stop_after_absent
        if n <= 0 or any((t <= s) if reverse else (t >= s) for t in obj.prompts):
            return False
        step = 1 if reverse else -1
        for k in range(1, n + 1):
            r = obj.results.get(s + k * step)
            if r is None or r.prompted or r.object_score > 0 and bool((r.low_res > 0).any()):
                return False
        return True

    def _absent(self) -> SliceResult:
        side = 4 * self.model.cfg.feat_size  # the decoder upsamples its grid 4x
        return SliceResult(torch.full((1, 1, side, side), NO_OBJ_SCORE, dtype=torch.float16), 0.0, -10.0)

    def _previous_mask_box(self, obj: _Object, s: int, reverse: bool):
        """Box (model pixels) of the previous slice's mask in this pass (over an absent slice: the one before
        it), or None when that slice has no result or an empty mask."""
        r = obj.results.get(s + 1 if reverse else s - 1)
        if r is not None and r.object_score <= 0:  # an absent slice: the box of the last slice with the object
            r = obj.results.get(s + 2 if reverse else s - 2)
        return None if r is None else mask_box(r.low_res[0, 0], self.model.image_size)

    def _previous_box(self, prev_box):
        """Point inputs for the previous slice's mask box grown by the config's margin (box tracking), or None."""
        margin = self.model.cfg.propagation_box_margin
        if margin <= 0 or prev_box is None:
            return None
        dev = self.model.device
        box = grow_box(prev_box, margin, self.model.image_size)
        return (torch.tensor([box], dtype=torch.float32, device=dev).view(1, 2, 2),
                torch.tensor([[2, 3]], dtype=torch.int32, device=dev))

    def _region_box(self, obj: _Object, s: int, reverse: bool) -> Optional[Tuple[list, Region]]:
        """With region tracking (`cfg.region_size` > 0, a model without memory): the box (model pixels) to decode
        on slice s (the previous slice's mask box grown by the config's margin) and its region; None when the
        slice is tracked whole (no previous box, or a region shrunk below `cfg.region_min_scale`)."""
        m = self.model
        c = m.cfg
        if c.region_size <= 0 or m.has_memory or c.propagation_box_margin <= 0:
            return None
        prev_box = self._previous_mask_box(obj, s, reverse)
        if prev_box is None:
            return None
        box = grow_box(prev_box, c.propagation_box_margin, m.image_size)
        region = region_around(box, m.image_size, c.region_size, c.region_context)
        return None if region.scale < c.region_min_scale else (box, region)

    def _region_features(self, s: int, region: Region):
        """Features of one region of slice s (B = 1), encoded on their own (never cached)."""
        m = self.model
        with autocast(m.device, self.dtype):
            feats = m.encode_image(region.crop(self.frames.get([s]).to(m.device)))
        self.features.encoded_regions += 1
        return feats

    def _track_region(self, obj: _Object, s: int, reverse: bool) -> None:
        """Box tracking on a region around the previous slice's box (engine/region.py): encode the region,
        decode the box there, check presence against the region prototypes, paste the mask back."""
        m = self.model
        box, region = self._region_box(obj, s, reverse)
        feats = self._region_features(s, region)
        with autocast(m.device, self.dtype):
            out = m.track_step(feats, is_init_cond_frame=False, point_inputs=box_inputs(region, box, m.device),
                               run_mem_encoder=False)
        heads = out.heads
        present = True
        if obj.prototypes is not None and m.cfg.prototype_presence:
            present = self._check_presence(obj, feats.vision_feats, heads.low_res_masks)
        side = 4 * m.cfg.feat_size
        low = region.paste(heads.low_res_masks, m.image_size, side)
        if m.cfg.mask_window > 0:
            low = clip_to_window(low, grow_box(box, m.cfg.mask_window, m.image_size), m.image_size)
        if not present:
            low = torch.full_like(low, NO_OBJ_SCORE)
        iou = float(heads.ious.float().max())
        score = float(heads.object_score_logits.float().reshape(-1)[0]) if present else -10.0
        obj.results[s] = SliceResult(low.to("cpu", torch.float16), iou, score)
        obj.tracked_dir[s] = reverse

    def _check_presence(self, obj: _Object, feats: torch.Tensor, mask_logits: torch.Tensor) -> bool:
        """Presence of the decoded mask (engine/presence.py) against this pass's prototypes; on a present slice,
        with `cfg.prototype_momentum` = a > 0, the prototypes move towards this slice's: p ← (1 - a) p + a p_s
        (an object's look changes along its extent; the prompted slice's alone go stale far from it)."""
        present = looks_present(feats, mask_logits, obj.pass_prototypes)
        if present:
            obj.pass_prototypes = follow(obj.pass_prototypes, feats, mask_logits, self.model.cfg.prototype_momentum)
        return present

    def _track(self, obj: _Object, s: int, reverse: bool, feats) -> None:
        m = self.model
        mems, ptrs, tmax = self._select(obj, s, reverse, feats)
        prev_box = self._previous_mask_box(obj, s, reverse)
        box = self._previous_box(prev_box)
        window = grow_box(prev_box, m.cfg.mask_window, m.image_size) if m.cfg.mask_window > 0 and prev_box else None
        with autocast(m.device, self.dtype):
            out = m.track_step(feats, is_init_cond_frame=False, memories=mems, obj_ptrs=ptrs, ptr_tpos_max=tmax,
                               point_inputs=box, run_mem_encoder=window is None, **self._fast(obj))
            if window is not None:  # the mask stays near the previous slice's before it enters memory
                clip_heads(out.heads, window, m.image_size)
                if m.cfg.num_maskmem > 0:
                    out.maskmem_features, out.maskmem_pos = m.encode_memory(
                        feats, out.heads.high_res_masks, out.heads.object_score_logits, is_mask_from_pts=box is not None)
        if box is not None and obj.prototypes is not None and m.cfg.prototype_presence:
            if not self._check_presence(obj, feats.vision_feats, out.pred_masks):
                out.heads.low_res_masks = torch.full_like(out.heads.low_res_masks, NO_OBJ_SCORE)
                out.heads.object_score_logits = torch.full_like(out.heads.object_score_logits, -10.0)
        entry = self._entry(s, out)
        res = SliceResult.from_step(out)
        if obj.policy.needs_key:  # stored key: the memory-conditioned features (as SAMed-2 / MedSAM-2 store)
            cond_feats = out.pix_feat_with_mem if out.pix_feat_with_mem is not None else feats.vision_feats
            obj.policy.add(entry, feature_key(cond_feats, obj.policy.key_grid)[0])
            res.retrieved, res.bank_entries = obj.policy.last_retrieved, len(obj.policy.bank)
        else:
            obj.policy.add(entry)
        obj.results[s] = res
        obj.tracked_dir[s] = reverse

    # ------------------------------------------------------------------ results
    def logits(self, obj_id: int, slice_idx: int) -> Optional[torch.Tensor]:
        """Mask logits of an object on a slice at source resolution (H, W), or None if not segmented."""
        r = self.objects[obj_id].results.get(slice_idx)
        if r is None:
            return None
        return to_source(r.low_res.float(), self.slice_hw, self.resize_mode, self.model.image_size)[0, 0]

    def mask(self, obj_id: int, slice_idx: int) -> np.ndarray:
        """(H, W) bool mask; all False where the object was not segmented."""
        lg = self.logits(obj_id, slice_idx)
        if lg is None:
            return np.zeros(self.slice_hw, bool)
        return (lg > 0).cpu().numpy()

    def masks(self, obj_id: int) -> np.ndarray:
        """(S, H, W) bool masks of one object in slicing order."""
        return np.stack([self.mask(obj_id, s) for s in range(self.num_slices)])

    def label_map(self, obj_ids: Optional[Sequence[int]] = None) -> np.ndarray:
        """(S, H, W) uint16 label map in slicing order: each voxel takes the object id with the highest
        positive logit (overlaps go to the most confident object); 0 = background."""
        ids = list(self.objects) if obj_ids is None else list(obj_ids)
        out = np.zeros((self.num_slices, *self.slice_hw), np.uint16)
        for s in range(self.num_slices):
            best = torch.zeros(self.slice_hw)
            for oid in ids:
                lg = self.logits(oid, s)
                if lg is None:
                    continue
                win = lg.float().cpu() > best
                out[s][win.numpy()] = oid
                best = torch.maximum(best, lg.float().cpu())
        return out

    def label_volume(self, obj_ids: Optional[Sequence[int]] = None) -> np.ndarray:
        """The label map in the volume's own array order (Z, Y, X)."""
        lm = self.label_map(obj_ids)
        return self.view.to_volume(lm) if self.view is not None else lm

    def memory_stats(self, obj_id: int) -> dict:
        """What an object's memory policy holds (bank fill level, admissions, rejections) and the mean
        number of bank entries retrieved per tracked slice."""
        obj = self.objects[obj_id]
        st = obj.policy.stats()
        got = [r.retrieved for r in obj.results.values() if r.retrieved is not None]
        if got:
            st["retrieved_per_slice_mean"] = round(sum(got) / len(got), 3)
            st["slices_without_bank"] = sum(g == 0 for g in got)
        return st

    def confidence(self, obj_id: int, iou_threshold: float = 0.5) -> List[dict]:
        """Per-slice confidence track: predicted IoU, object score, presence, and a review flag
        (object present but IoU below the threshold); with a bank policy also the bank fill level
        after the slice (`bank_entries`) and the entries retrieved for it (`retrieved`)."""
        res = self.objects[obj_id].results
        rows = []
        for s in range(self.num_slices):
            r = res.get(s)
            rows.append(dict(slice=s, segmented=False) if r is None else dict(slice=s, **r.row(iou_threshold)))
        return rows
