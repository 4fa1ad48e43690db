"""One-Prompt Segmentation (Medical SAM 2): one prompted image (or a few) segments a whole set of
unrelated 2D images from memory alone.

    session = medmem.ImageSetSession(model, images, policy="self_sorting")
    session.add_prompt(0, obj_id=1, box=[x0, y0, x1, y1])
    for idx, masks in session.propagate():     # every image without a prompt; masks: {obj_id: (H, W) bool}
        ...

The set has no order: every image attends to *every* prompted image (memory and object pointer,
at temporal distance 0) plus the k entries the bank policy retrieves for it (by similarity of
image features; sampled for self_sorting). With `update_bank=True` the confident results join the
bank, as in the paper. Results do not depend on the order images are asked for: `propagate()`
processes the requested images in index order (yielding them in the requested order), and the
sampling generator of each image is seeded from (seed, image index).
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import warnings

import numpy as np
import torch

from ..preprocess import Intensity, ResizeMode, prepare_slice, to_source
from ..memory.entry import FrameMemory
from ..memory.bank import MemoryBank, feature_key
from ..memory.policies import BankPolicy, make_policy
from ..model import ImageFeatures, MaskMemory, ObjectPointer, SAM2Model
from .autocast import autocast
from .features import encode_single
from .image import validate_image
from .prompts import check_prompt, prompt_to_inputs
from .window import clip_heads, prompt_windows
from .volume import SliceResult

_SET_POLICIES = ("self_sorting", "confidence")


class ImageSetSession:
    """One-Prompt segmentation of an unordered image set, with the verbs and results of `VolumeSession`:
    `add_prompt(idx, obj_id, ...)`, `propagate()`, `mask`, `logits`, `confidence`, `memory_stats`."""

    def __init__(self, model: SAM2Model, images: Sequence[np.ndarray], policy: Union[str, BankPolicy] = "self_sorting",
                 *, intensity: Intensity = "auto", resize_mode: ResizeMode = "stretch",
                 policy_kwargs: Optional[dict] = None, update_bank: bool = True, dtype: Optional[torch.dtype] = None,
                 storage_dtype: torch.dtype = torch.bfloat16, progress: bool = False,
                 policy_options: Optional[dict] = None, bank: Optional[MemoryBank] = None) -> None:
        """images: 2D images of any sizes ((H, W) or (H, W, 3)). policy: "self_sorting" | "confidence".
        policy_options (alias policy_kwargs): the policy's options; ``recent`` is 0 (no neighbours in a set).
        bank: a `MemoryBank` shared by all objects (and with other sessions)."""
        if isinstance(policy, str) and policy not in _SET_POLICIES:
            raise ValueError(f"image sets have no order: use one of {_SET_POLICIES}, not {policy!r}")
        if len(images) == 0:
            raise ValueError("the image set is empty")
        if not model.has_memory:
            raise ValueError(f"One-Prompt segmentation needs a model with memory; {model.cfg.name} has none "
                             "(e.g. --model medmem_small_256 or a SAM 2 checkpoint)")
        self.model = model.eval()
        self.images = [validate_image(im) for im in images]
        self.intensity, self.resize_mode, self.dtype, self.storage_dtype = intensity, resize_mode, dtype, storage_dtype
        kw = dict(policy_kwargs or {})
        kw.update(policy_options or {})
        if kw.get("recent", 0):
            raise ValueError("an unordered image set has no recent images: recent must be 0")
        kw["recent"] = 0
        if bank is not None:
            kw["bank"] = bank
        self._policy_spec, self._policy_kwargs = policy, kw
        self.policies: Dict[int, BankPolicy] = {}
        self.prompts: Dict[int, Dict[int, object]] = {}
        self.results: Dict[int, Dict[int, SliceResult]] = {}
        self.update_bank, self.progress = update_bank, progress

    def __len__(self) -> int:
        return len(self.images)

    def _features(self, idx: int) -> ImageFeatures:
        m = self.model
        x = prepare_slice(self.images[idx], m.image_size, intensity=self.intensity, mode=self.resize_mode,
                          device=m.device)
        with torch.inference_mode(), autocast(m.device, self.dtype):
            return encode_single(m, x[None])

    def _policy(self, obj_id: int) -> BankPolicy:
        if obj_id not in self.policies:
            if isinstance(self._policy_spec, BankPolicy) and self.policies:
                raise ValueError("pass a policy name (not an instance) to segment several objects")
            p = make_policy(self._policy_spec, self.model.cfg, **self._policy_kwargs)
            if not isinstance(p, BankPolicy):
                raise ValueError("image sets need a bank policy (self_sorting or confidence)")
            self.policies[obj_id] = p
            self.prompts[obj_id], self.results[obj_id] = {}, {}
        return self.policies[obj_id]

    def _generator(self, policy: BankPolicy, idx: int) -> torch.Generator:
        """Sampling generator of one image: seeded from (policy seed, image index), not the call order."""
        return torch.Generator().manual_seed(int(getattr(policy, "seed", 0)) * 1_000_003 + idx)

    @torch.inference_mode()
    def add_prompt(self, image_idx: int, obj_id: int = 1, points=None, labels=None, box=None, mask=None) -> np.ndarray:
        """Prompt an object on one image (pixels of that image); returns its mask (H, W) bool."""
        if not 0 <= int(image_idx) < len(self.images):
            raise ValueError(f"image {image_idx} is outside the set (0..{len(self.images) - 1})")
        idx = int(image_idx)
        hw = self.images[idx].shape[:2]
        p = check_prompt(hw, points, labels, box, mask)
        policy = self._policy(obj_id)
        m = self.model
        feats = self._features(idx)
        pi, mi = prompt_to_inputs(p, hw, m.image_size, self.resize_mode, m.device)
        with autocast(m.device, self.dtype):
            out = m.track_step(feats, is_init_cond_frame=True, point_inputs=pi, mask_inputs=mi, run_mem_encoder=False)
            for window in prompt_windows(pi, m.cfg.mask_window, m.image_size) or ():
                clip_heads(out.heads, window, m.image_size)  # the mask stays inside the prompt box
            mf, mp = m.encode_prompted_memory(feats, out.pred_masks, out.object_score_logits)
        entry = FrameMemory.from_step(idx, out, (mf, mp), is_cond=True, storage_dtype=self.storage_dtype)
        policy.remove_conditioning(idx)
        policy.add_conditioning(entry)
        self.prompts[obj_id][idx] = p
        self.results[obj_id][idx] = SliceResult.from_step(out, prompted=True)
        return self.mask(obj_id, idx)

    @torch.inference_mode()
    def propagate(self, indices: Optional[Sequence[int]] = None) -> Iterator[Tuple[int, Dict[int, np.ndarray]]]:
        """Carry the prompts to every image (or `indices`); yields (image_idx, {obj_id: (H, W) bool mask}),
        each asked image once, in the order asked."""
        if not self.policies:
            raise RuntimeError("add a prompt on at least one image first")
        asked = list(range(len(self.images))) if indices is None else [int(i) for i in indices]
        todo = sorted(set(asked))  # canonical order: results do not depend on the order asked
        it = todo
        if self.progress:
            from tqdm.auto import tqdm

            it = tqdm(todo, desc="one-prompt segmentation")
        m = self.model
        done: Dict[int, Dict[int, np.ndarray]] = {}
        for idx in it:
            feats = None
            out_masks = {}
            for oid, policy in self.policies.items():
                if idx in self.prompts[oid]:
                    out_masks[oid] = self.mask(oid, idx)
                    continue
                feats = feats if feats is not None else self._features(idx)
                key = feature_key(feats.vision_feats, policy.key_grid)[0]
                mems, ptrs, tmax = policy.select_unordered(key, self._generator(policy, idx))
                with autocast(m.device, self.dtype):
                    out = m.track_step(feats, is_init_cond_frame=False, ptr_tpos_max=tmax,
                                       memories=[MaskMemory(e.maskmem_features, e.maskmem_pos, 0) for _, e in mems],
                                       obj_ptrs=[ObjectPointer(e.obj_ptr, 0) for _, e in ptrs],
                                       run_mem_encoder=self.update_bank)
                if self.update_bank:
                    stored = out.pix_feat_with_mem if out.pix_feat_with_mem is not None else feats.vision_feats
                    policy.add(FrameMemory.from_step(idx, out, (out.maskmem_features, out.maskmem_pos),
                                                     storage_dtype=self.storage_dtype),
                               feature_key(stored, policy.key_grid)[0])
                res = SliceResult.from_step(out)
                res.retrieved = policy.last_retrieved
                res.bank_entries = len(policy.bank)
                self.results[oid][idx] = res
                out_masks[oid] = self.mask(oid, idx)
            done[idx] = out_masks
        for oid, policy in self.policies.items():
            if self.update_bank and len(policy.bank) == 0:
                c = policy.counts
                warnings.warn(f"object {oid}: the {policy.name} memory bank is empty ({c['offered']} offered: "
                              f"{c['rejected_empty']} empty masks, {c['rejected_confidence']} below the threshold "
                              f"{policy.effective_threshold():.3g}); images attended to the prompted images only",
                              stacklevel=2)
        for idx in dict.fromkeys(asked):
            yield idx, done[idx]

    def logits(self, obj_id: int, idx: int) -> Optional[torch.Tensor]:
        r = self.results.get(obj_id, {}).get(idx)
        if r is None:
            return None
        return to_source(r.low_res.float(), self.images[idx].shape[:2], self.resize_mode, self.model.image_size)[0, 0]

    def mask(self, obj_id: int, idx: int) -> np.ndarray:
        lg = self.logits(obj_id, idx)
        return np.zeros(self.images[idx].shape[:2], bool) if lg is None else (lg > 0).cpu().numpy()

    def confidence(self, obj_id: int, iou_threshold: float = 0.5) -> List[dict]:
        """Per-image rows as `VolumeSession.confidence` gives per slice: predicted IoU, object score,
        presence, prompted, a review flag (present but IoU below the threshold), and for images
        segmented from memory the bank fill level and the entries retrieved."""
        rows = []
        for i in range(len(self.images)):
            r = self.results.get(obj_id, {}).get(i)
            rows.append(dict(image=i, segmented=False) if r is None else dict(image=i, **r.row(iou_threshold)))
        return rows

    def memory_stats(self, obj_id: int) -> dict:
        """Bank fill level, admissions and rejections of an object's policy."""
        return self.policies[obj_id].stats()
