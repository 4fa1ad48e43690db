"""One training forward pass: encode clips, track them frame by frame with memory, simulate prompts and
corrective clicks, and sum the SAM 2 losses.

Follows SAM 2's training forward: prompted frames are processed first (without memory, or with
bank memories under SAMed-2's confidence memory), then the other frames in order, each attending
to `select_fifo(..., training=True)` memories; gradients flow through the memories of the clip.
Corrected frames get ``iters`` rounds of one click on the error region, each decoded again from
the memory-conditioned features with the previous low-res logits as mask prompt; every round's
prediction is supervised. Loss = Σ frames Σ rounds per-object loss, averaged over objects.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..engine.features import adapter_layout
from ..memory.entry import FrameMemory
from ..model.temporal_adapter import centred_clip
from ..memory.fifo import select_fifo
from ..model.sam2 import HeadsOutput, ImageFeatures, MaskMemory, ObjectPointer, SAM2Model
from .bank import Candidate, TrainingBank
from .clips import ClipGroup
from .config import TrainConfig
from .losses import LossWeights, mask_losses
from .prompts import concat_points, corrective_point, initial_prompts, plan_prompts, stack_points

LOSS_KEYS = ("mask", "dice", "iou", "cls", "total")


def adapter_frames(model: SAM2Model) -> int:
    """Clip length the temporal adapter groups slices by (1 without an adapter)."""
    ta = model.cfg.temporal_adapter
    return ta.num_frames if ta.blocks else 1


class FrozenEncoderCache:
    """Outputs of a frozen image encoder, keyed by the input slice's bytes (training revisits slices;
    an encoder such as LiteMedSAM's costs seconds per slice on a CPU). Bounded: oldest out first."""

    def __init__(self, max_items: int, directory: Optional[str] = None) -> None:
        self.max_items = int(max_items)
        self.directory = Path(directory) if directory else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._store: "OrderedDict[bytes, Tuple[List[torch.Tensor], List[torch.Tensor]]]" = OrderedDict()
        self.hits = self.misses = 0

    def __call__(self, model: SAM2Model, images: torch.Tensor, num_frames: int):
        """images (N, 3, S, S) → (fpn, pos) as `model.image_encoder` returns them, encoding only unseen slices."""
        keys = [hashlib.blake2b(x.detach().cpu().numpy().tobytes(), digest_size=16).digest() for x in images]
        todo = [i for i, k in enumerate(keys) if k not in self._store and not self._load(k)]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            fpn, pos = model.image_encoder(images[todo], num_frames)
            for j, i in enumerate(todo):
                self._store[keys[i]] = ([f[j].clone() for f in fpn], [p[j].clone() for p in pos])
                self._save(keys[i])
        out = [self._store[k] for k in keys]
        for k in keys:
            self._store.move_to_end(k)
        while len(self._store) > self.max_items:
            self._store.popitem(last=False)
        levels = len(out[0][0])
        if any(o[0][0].device != images.device for o in out):
            out = [([t.to(images.device) for t in o[0]], [t.to(images.device) for t in o[1]]) for o in out]
        fpn = [torch.stack([o[0][lv] for o in out]) for lv in range(levels)]
        pos = [torch.stack([o[1][lv] for o in out]) for lv in range(levels)]
        return fpn, pos


    def _file(self, key: bytes) -> Path:
        return self.directory / f"{key.hex()}.safetensors"

    def _load(self, key: bytes) -> bool:
        """Fill the RAM store from the directory (features of an earlier run); False if absent."""
        if self.directory is None or not self._file(key).is_file():
            return False
        from safetensors.torch import load_file

        d = load_file(str(self._file(key)))
        n = len(d) // 2
        self._store[key] = ([d[f"fpn{i}"] for i in range(n)], [d[f"pos{i}"] for i in range(n)])
        return True

    def _save(self, key: bytes) -> None:
        if self.directory is None:
            return
        from safetensors.torch import save_file

        from ..atomic import atomic_path

        fpn, pos = self._store[key]
        tensors = {**{f"fpn{i}": t.cpu().contiguous() for i, t in enumerate(fpn)},
                   **{f"pos{i}": t.cpu().contiguous() for i, t in enumerate(pos)}}
        with atomic_path(self._file(key)) as tmp:
            save_file(tensors, str(tmp))


def encode(model: SAM2Model, images: torch.Tensor, num_frames: int = 1, no_grad_trunk: bool = False,
           cache: Optional[FrozenEncoderCache] = None) -> ImageFeatures:
    """images (N, 3, S, S) → features; with ``no_grad_trunk`` the image encoder runs without autograd
    (frozen) while the decoder's high-resolution projections still get gradients; a `cache` then
    reuses the encoder outputs of slices seen before (no temporal adapter: features depend on one slice)."""
    if not no_grad_trunk:
        return model.encode_image(images, num_frames=num_frames)
    with torch.no_grad():
        if cache is not None and num_frames == 1:
            fpn, pos = cache(model, images, num_frames)
        else:
            fpn, pos = model.image_encoder(images, num_frames)
    high_res = list(fpn[:-1])
    if model.cfg.use_high_res_features_in_sam:
        high_res = [model.sam_mask_decoder.conv_s0(fpn[0]), model.sam_mask_decoder.conv_s1(fpn[1])]
    return ImageFeatures(fpn[-1], pos[-1], high_res, list(fpn))


def encode_clips(model: SAM2Model, images: torch.Tensor, no_grad_trunk: bool = False,
                 cache: Optional[FrozenEncoderCache] = None) -> List[ImageFeatures]:
    """images (B, T, 3, S, S) → per-frame features [T × (B, ...)]. With a temporal adapter, clips
    (T > 1) are padded by repeating their last frame to a multiple of its clip length."""
    b, t = images.shape[:2]
    mode, window = adapter_layout(model)
    if mode == "centred":  # each frame in a window centred on it (ends repeated), as the engine encodes slices
        idx = [j for i in range(t) for j in centred_clip(i, t, window)]
        feats = encode(model, images[:, idx].flatten(0, 1), window, no_grad_trunk)
        base = torch.arange(b, device=images.device) * t * window + window // 2
        return [feats.select(base + i * window) for i in range(t)]
    nf = adapter_frames(model) if t > 1 else 1
    tp = -(-t // nf) * nf
    if tp != t:
        images = torch.cat([images, images[:, -1:].expand(-1, tp - t, -1, -1, -1)], dim=1)
    feats = encode(model, images.flatten(0, 1), nf, no_grad_trunk, cache)
    idx = torch.arange(b, device=images.device) * tp
    return [feats.select(idx + i) for i in range(t)]


def _kept_iou(heads: HeadsOutput) -> torch.Tensor:
    """Predicted IoU (B, 1) of the mask the heads kept (the argmax when multimask)."""
    return heads.ious.max(dim=1, keepdim=True).values if heads.ious.shape[1] > 1 else heads.ious[:, :1]


class ClipForward(nn.Module):
    """The training forward as a module, so that DDP can wrap it (SAM2Model has no ``forward``)."""

    def __init__(self, model: SAM2Model, cfg: TrainConfig, bank: Optional[TrainingBank] = None) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.bank = bank
        self.weights = LossWeights(cfg.w_mask, cfg.w_dice, cfg.w_iou, cfg.w_class, cfg.focal_alpha,
                                   cfg.focal_gamma, cfg.supervise_all_iou)
        self.candidates: List[Candidate] = []
        self.encoder_cache = (FrozenEncoderCache(cfg.encoder_cache, cfg.encoder_cache_dir or None)
                              if cfg.encoder_cache > 0 else None)

    def trunk_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.model.image_encoder.parameters())

    def forward(self, groups: List[ClipGroup], rng: np.random.Generator) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Σ loss / objects over all groups → (loss, detached per-component sums incl. ``objects``, ``frames``)."""
        self.candidates = []
        n_obj = sum(g.batch for g in groups)
        sums = {k: torch.zeros((), device=groups[0].gt.device) for k in LOSS_KEYS}
        frames = 0
        for g in groups:
            part, f = self.run_group(g, rng)
            frames += f
            for k in LOSS_KEYS:
                sums[k] = sums[k] + part[k]
        loss = sums["total"] / n_obj
        stats = {k: v.detach() for k, v in sums.items()}
        stats["objects"] = torch.tensor(float(n_obj))
        stats["frames"] = torch.tensor(float(frames))
        return loss, stats

    def run_group(self, g: ClipGroup, rng: np.random.Generator) -> Tuple[Dict[str, torch.Tensor], int]:
        """Track one group; returns per-component loss sums over objects, frames and rounds."""
        m, cfg = self.model, self.cfg
        dev = g.gt.device
        t_len = g.length
        frozen = self.trunk_frozen()
        feats = encode_clips(m, g.images, frozen, self.encoder_cache if frozen else None)
        plan = plan_prompts(g.gt_np, rng, prob_box=cfg.prob_box, prob_mask=cfg.prob_mask,
                            max_cond_frames=cfg.max_cond_frames, correction_iters=cfg.correction_iters,
                            max_extra_correct_frames=cfg.max_extra_correct_frames)
        prompts = initial_prompts(plan, g.gt_np, rng, cfg.box_jitter, dev)
        cond: Dict[int, FrameMemory] = {}
        non_cond: Dict[int, FrameMemory] = {}
        sums = {k: torch.zeros((), device=dev) for k in LOSS_KEYS}
        supervised = 0
        order = plan.cond_frames + [i for i in range(t_len) if i not in plan.cond_frames]
        for t in order:
            f = feats[t]
            is_cond = t in plan.cond_frames
            if is_cond:
                mems, ptrs, tmax = [], [], 1
            else:
                sel_m, sel_p, tmax = select_fifo(t, cond, non_cond, m.cfg, t_len, reverse=False, training=True)
                mems = [MaskMemory(e.maskmem_features, e.maskmem_pos, tp) for tp, e in sel_m]
                ptrs = [ObjectPointer(e.obj_ptr, td) for td, e in sel_p]
            if self.bank is not None:
                bm, bp = self.bank.retrieve(f.vision_feats)
                mems, ptrs = mems + bm, ptrs + bp
            points, mask_in = prompts.get(t, (None, None))
            correct = t in plan.correct_frames
            out = m.track_step(f, is_init_cond_frame=is_cond, memories=mems, obj_ptrs=ptrs, ptr_tpos_max=tmax,
                               point_inputs=points, mask_inputs=mask_in, run_mem_encoder=not correct)
            heads = out.heads
            rounds = [] if mask_in is not None else [heads]  # mask-as-output frames carry no decoder loss
            mem_f, mem_p = out.maskmem_features, out.maskmem_pos
            if correct:
                pts = points
                for _ in range(plan.iters):
                    pred = (heads.high_res_masks[:, 0] > 0).cpu().numpy()
                    new = [corrective_point(pred[b], g.gt_np[b, t], rng, cfg.click_mode, cfg.prob_click_from_gt)
                           for b in range(g.batch)]
                    pts = concat_points(pts, stack_points(new, dev))
                    heads = m.sam_heads(out.pix_feat_with_mem, f.high_res, pts, heads.low_res_masks.detach(),
                                        m.use_multimask(is_cond, pts))
                    rounds.append(heads)
                mem_f, mem_p = m.encode_memory(f, heads.high_res_masks, heads.object_score_logits, is_mask_from_pts=True)
            entry = FrameMemory.from_step(t, heads, (mem_f, mem_p), is_cond=is_cond or correct)
            (cond if (is_cond or correct) else non_cond)[t] = entry
            target = g.gt[:, t]
            for h in rounds:
                losses = mask_losses(h.high_res_multimasks, h.ious, h.object_score_logits, target, self.weights)
                for k in LOSS_KEYS:
                    sums[k] = sums[k] + losses[k].sum()
                supervised += 1
            if self.bank is not None and mask_in is None and mem_f is not None:
                self.candidates += TrainingBank.candidates(
                    f.vision_feats, mem_f, mem_p, heads.obj_ptr, heads.object_score_logits, _kept_iou(heads),
                    key_feats=out.pix_feat_with_mem, masks=heads.low_res_masks, grid=self.bank.grid)
        return sums, supervised
