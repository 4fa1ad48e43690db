"""SAM 2 assembly: image encoding, memory conditioning, prompt decoding, memory encoding.

The model is stateless: which memories a frame attends to is decided by the caller (the
engine and the memory policies); the model only turns explicit inputs into outputs.
Module names mirror the official checkpoints, so official state dicts load strictly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SAM2Config
from .common import MLP
from .hiera import ImageEncoder
from .mask_decoder import MaskDecoder
from .memory_attention import MemoryAttention, MemoryKVCache
from .memory_encoder import MemoryEncoder
from .position_encoding import sine_encoding_1d
from .click_box import boxes_for_clicks
from .prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, PromptEncoder
from .tiny_vit import TinyViTEncoder
from .transformer import TwoWayTransformer

NO_OBJ_SCORE = -1024.0


@dataclass
class ImageFeatures:
    """Per-frame features. B = number of frames (or objects sharing a frame)."""

    vision_feats: torch.Tensor      # (B, C, h, w) stride-16 features, before memory
    vision_pos: torch.Tensor        # (B, C, h, w)
    high_res: List[torch.Tensor]    # [(B, C/8, 4h, 4w), (B, C/4, 2h, 2w)] projected for the decoder
    backbone_fpn: List[torch.Tensor]  # neck outputs [(B, C, 4h, 4w), (B, C, 2h, 2w), (B, C, h, w)]

    def select(self, idx) -> "ImageFeatures":
        """Features of batch items `idx` (int, slice or index tensor)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return ImageFeatures(self.vision_feats[idx], self.vision_pos[idx], [x[idx] for x in self.high_res],
                             [x[idx] for x in self.backbone_fpn])

    def expand(self, b: int) -> "ImageFeatures":
        """Broadcast a single frame's features to b objects."""
        e = lambda t: t.expand(b, *t.shape[1:])  # noqa: E731
        return ImageFeatures(e(self.vision_feats), e(self.vision_pos), [e(x) for x in self.high_res],
                             [e(x) for x in self.backbone_fpn])

    def to(self, device=None, dtype=None) -> "ImageFeatures":
        f = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return ImageFeatures(f(self.vision_feats), f(self.vision_pos), [f(x) for x in self.high_res],
                             [f(x) for x in self.backbone_fpn])


@dataclass
class MaskMemory:
    """One frame's mask memory as the model attends to it."""

    features: torch.Tensor  # (B, M, h, w)
    pos: torch.Tensor       # (B, M, h, w)
    t_pos: int              # 0 for conditioning frames, 1..num_maskmem-1 = frames back in time


@dataclass
class ObjectPointer:
    ptr: torch.Tensor       # (B, C)
    t_diff: int             # temporal distance to the current frame (signed for SAM 2.1)


@dataclass
class HeadsOutput:
    low_res_multimasks: torch.Tensor   # (B, M, 4h, 4w)
    high_res_multimasks: torch.Tensor  # (B, M, S, S)
    ious: torch.Tensor                 # (B, M)
    low_res_masks: torch.Tensor        # (B, 1, 4h, 4w) best mask
    high_res_masks: torch.Tensor       # (B, 1, S, S)
    obj_ptr: torch.Tensor              # (B, C)
    object_score_logits: torch.Tensor  # (B, 1)


@dataclass
class StepOutput:
    heads: HeadsOutput
    maskmem_features: Optional[torch.Tensor]  # (B, M, h, w)
    maskmem_pos: Optional[torch.Tensor]       # (B, M, h, w)
    pix_feat_with_mem: Optional[torch.Tensor] = None  # (B, C, h, w) memory-conditioned features

    @property
    def pred_masks(self) -> torch.Tensor:
        return self.heads.low_res_masks

    @property
    def pred_masks_high_res(self) -> torch.Tensor:
        return self.heads.high_res_masks

    @property
    def obj_ptr(self) -> torch.Tensor:
        return self.heads.obj_ptr

    @property
    def object_score_logits(self) -> torch.Tensor:
        return self.heads.object_score_logits


class SAM2Model(nn.Module):
    def __init__(self, cfg: SAM2Config) -> None:
        super().__init__()
        self.cfg = cfg
        c, m = cfg.hidden_dim, cfg.mem_dim
        self.hidden_dim, self.mem_dim = c, m
        self.image_size = cfg.image_size
        if cfg.tiny_vit is not None:
            self.image_encoder = TinyViTEncoder(cfg.tiny_vit)
        else:
            self.image_encoder = ImageEncoder(cfg.trunk, cfg.temporal_adapter if cfg.temporal_adapter.blocks else None)
        if cfg.use_obj_ptrs_in_encoder:
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        if cfg.num_maskmem > 0:  # a model without memory (num_maskmem = 0) has none of its modules
            self.memory_attention = MemoryAttention(c, m, cfg.mem_attn_layers, cfg.mem_attn_heads,
                                                    cfg.mem_attn_ffn_dim, cfg.mem_attn_dropout, cfg.rope_theta)
            self.memory_encoder = MemoryEncoder(c, m, cfg.mem_fuser_layers)
            self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, m))
            self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
            self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
            for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc):
                nn.init.trunc_normal_(p, std=0.02)
        if cfg.pred_obj_scores and cfg.use_obj_ptrs_in_encoder:
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
            nn.init.trunc_normal_(self.no_obj_ptr, std=0.02)
        if cfg.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, m))
            nn.init.trunc_normal_(self.no_obj_embed_spatial, std=0.02)
        fs = cfg.feat_size
        self.sam_prompt_encoder = PromptEncoder(c, (fs, fs), (cfg.image_size, cfg.image_size), cfg.mask_in_chans)
        self.sam_mask_decoder = MaskDecoder(
            c, TwoWayTransformer(cfg.decoder_depth, c, cfg.decoder_heads, cfg.decoder_mlp_dim),
            cfg.num_multimask_outputs, cfg.iou_head_depth, cfg.iou_head_hidden_dim, cfg.use_high_res_features_in_sam,
            cfg.iou_prediction_use_sigmoid, cfg.pred_obj_scores, cfg.pred_obj_scores_mlp,
            cfg.use_multimask_token_for_obj_ptr, cfg.dynamic_multimask_via_stability,
            cfg.dynamic_multimask_stability_delta, cfg.dynamic_multimask_stability_thresh, cfg.obj_score_token)
        if cfg.use_obj_ptrs_in_encoder:
            self.obj_ptr_proj = MLP(c, c, c, 3) if cfg.use_mlp_for_obj_ptr_proj else nn.Linear(c, c)
        else:
            self.obj_ptr_proj = nn.Identity()
        self.obj_ptr_tpos_proj = nn.Linear(c, m) if cfg.proj_tpos_enc_in_obj_ptrs else nn.Identity()

    # ------------------------------------------------------------------ utilities
    @property
    def has_memory(self) -> bool:
        """False for models that segment each slice from its prompt alone (num_maskmem = 0)."""
        return self.cfg.num_maskmem > 0

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @staticmethod
    def count_parameters(cfg: SAM2Config) -> int:
        """Number of parameters of a config, counted without allocating weights."""
        with torch.device("meta"):
            model = SAM2Model(cfg)
        return sum(p.numel() for p in model.parameters())

    # ------------------------------------------------------------------ image
    def encode_image(self, images: torch.Tensor, num_frames: int = 1) -> ImageFeatures:
        """images (B, 3, S, S) normalised → ImageFeatures. `num_frames`: clip length for the temporal adapter."""
        fpn, pos = self.image_encoder(images, num_frames)
        high_res = fpn[:-1]
        if self.cfg.use_high_res_features_in_sam:
            high_res = [self.sam_mask_decoder.conv_s0(fpn[0]), self.sam_mask_decoder.conv_s1(fpn[1])]
        return ImageFeatures(fpn[-1], pos[-1], list(high_res), list(fpn))

    # ------------------------------------------------------------------ memory → features
    def condition_on_memory(self, feats: ImageFeatures, memories: Sequence[MaskMemory] = (),
                            obj_ptrs: Sequence[ObjectPointer] = (), ptr_tpos_max: int = 1,
                            memory_cache: Optional[MemoryKVCache] = None) -> torch.Tensor:
        """Fuse current features with memories → (B, C, h, w).

        With no memories (an initial conditioning frame) SAM 2 adds `no_mem_embed` instead.
        `ptr_tpos_max` normalises object-pointer temporal distances (official: min(num_frames, 16) - 1).
        `memory_cache` (inference): the fast path, each memory's keys computed once and kept there
        (`MemoryKVCache`); the same numbers as without it, to float rounding.
        """
        x = feats.vision_feats
        b, c, h, w = x.shape
        if self.cfg.num_maskmem == 0:
            return x
        fast = memory_cache is not None and not self.training
        if not memories and not obj_ptrs:
            if self.cfg.raw_features_without_memory:
                return x
            if self.cfg.directly_add_no_mem_embed:
                return x + self.no_mem_embed.view(1, c, 1, 1)
            mem = self.no_mem_embed.expand(b, 1, c)
            mem_pos = self.no_mem_pos_enc.expand(b, 1, c)
            n_ptr, fast = 0, False
        elif not fast:
            mem, mem_pos, n_ptr = self.assemble_memory(memories, obj_ptrs, ptr_tpos_max, b)
        grid, grid_pos = self.memory_grid(x), self.memory_grid(feats.vision_pos)
        gh, gw = grid.shape[-2:]
        curr = grid.flatten(2).transpose(1, 2)
        curr_pos = grid_pos.flatten(2).transpose(1, 2)
        if fast:
            keys, values = self.cached_memory_inputs(memory_cache, memories, obj_ptrs, ptr_tpos_max, b, (gh, gw))
            out = self.memory_attention.forward_cached(curr, curr_pos, keys, values, (gh, gw))
        else:
            out = self.memory_attention(curr, curr_pos, mem, mem_pos, n_ptr, (gh, gw))
        out = out.transpose(1, 2).reshape(b, c, gh, gw)
        if (gh, gw) == (h, w):
            return out
        # pooled grid: the memory's effect, upsampled, on top of the full-resolution features
        return x + F.interpolate(out - grid, size=(h, w), mode="bilinear", align_corners=False)

    def memory_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → the grid memory works on, (B, C, h/p, w/p) with p = cfg.memory_pool."""
        p = self.cfg.memory_pool
        return x if p == 1 else F.avg_pool2d(x, p)

    def assemble_memory(self, memories: Sequence[MaskMemory], obj_ptrs: Sequence[ObjectPointer], ptr_tpos_max: int,
                        b: int) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """Memory tokens (B, N, M) and their position encodings; object-pointer tokens last."""
        device = self.maskmem_tpos_enc.device
        toks, poss = [], []
        n = self.cfg.num_maskmem
        for mm in memories:
            # memories may be stored in bf16 (as SAM 2 does); compute in fp32 (autocast narrows where enabled)
            toks.append(mm.features.to(device=device, dtype=torch.float32).flatten(2).transpose(1, 2))
            pos = mm.pos.to(device).flatten(2).transpose(1, 2)
            poss.append(pos + self.maskmem_tpos_enc[n - mm.t_pos - 1].view(1, 1, -1))
        ptr = self.pointer_tokens(obj_ptrs, ptr_tpos_max, b)
        n_ptr = 0
        if ptr is not None:
            toks.append(ptr[0])
            poss.append(ptr[1])
            n_ptr = ptr[0].shape[1]
        return torch.cat(toks, dim=1), torch.cat(poss, dim=1), n_ptr

    def pointer_tokens(self, obj_ptrs: Sequence[ObjectPointer], ptr_tpos_max: int, b: int
                       ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Object pointers as memory tokens (B, P·C/M, M) and their temporal encodings; None without pointers."""
        if not obj_ptrs or not self.cfg.use_obj_ptrs_in_encoder:
            return None
        device = self.maskmem_tpos_enc.device
        c, m = self.hidden_dim, self.mem_dim
        ptrs = torch.stack([p.ptr.to(device) for p in obj_ptrs], dim=1)  # (B, P, C)
        if self.cfg.add_tpos_enc_to_obj_ptrs:
            t = torch.tensor([p.t_diff for p in obj_ptrs], dtype=torch.float32, device=device)
            dim = c if self.cfg.proj_tpos_enc_in_obj_ptrs else m
            ppos = self.obj_ptr_tpos_proj(sine_encoding_1d(t / ptr_tpos_max, dim))
            ppos = ppos.unsqueeze(0).expand(b, -1, m)
        else:
            ppos = ptrs.new_zeros(b, len(obj_ptrs), m)
        if m < c:  # split each C-dim pointer into C/M tokens of width M
            ptrs = ptrs.reshape(b, len(obj_ptrs) * (c // m), m)
            ppos = ppos.repeat_interleave(c // m, dim=1)
        return ptrs, ppos

    def memory_key_params(self) -> List[torch.Tensor]:
        """The weights cached memory keys depend on (a `MemoryKVCache` is cleared when any of them changes)."""
        ps = [self.maskmem_tpos_enc]
        for layer in self.memory_attention.layers:
            ps += [layer.cross_attn_image.k_proj.weight, layer.cross_attn_image.k_proj.bias]
        return ps

    def cached_memory_inputs(self, cache: MemoryKVCache, memories: Sequence[MaskMemory],
                             obj_ptrs: Sequence[ObjectPointer], ptr_tpos_max: int, b: int, hw: Tuple[int, int]
                             ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Inputs of `MemoryAttention.forward_cached`: per-layer keys (B, N, C) and value tokens (B, N, M) of the
        memories (then the object pointers), each memory's keys taken from `cache` or computed once into it."""
        ma = self.memory_attention
        device = self.maskmem_tpos_enc.device
        n = self.cfg.num_maskmem
        cache.check_weights(self.memory_key_params())
        cache.begin()
        parts = []  # (keys per layer, slot keys per layer or None, values)
        for mm in memories:
            def make(mm: MaskMemory = mm) -> Tuple[List[torch.Tensor], torch.Tensor]:
                f = mm.features.to(device=device, dtype=torch.float32).flatten(2).transpose(1, 2)
                p = mm.pos.to(device).flatten(2).transpose(1, 2)
                return ma.memory_keys(f + p, hw), f.contiguous()

            ks, vals = cache.entry_keys(mm.features, mm.pos, make)
            slot = n - mm.t_pos - 1
            sk = cache.slot_keys(slot, hw, lambda: ma.slot_keys(self.maskmem_tpos_enc[slot].reshape(-1), hw))
            parts.append((ks, sk, vals))
        cache.end()
        ptr = self.pointer_tokens(obj_ptrs, ptr_tpos_max, b)
        if ptr is not None:
            parts.append((ma.memory_keys(ptr[0] + ptr[1], None), None, ptr[0]))
        total = sum(p[2].shape[1] for p in parts)
        keys = []
        for li in range(len(ma.layers)):
            k0 = parts[0][0][li]
            buf = k0.new_empty(b, total, k0.shape[-1])
            a = 0
            for ks, sk, vals in parts:
                e = a + vals.shape[1]
                if sk is None:
                    buf[:, a:e] = ks[li]
                else:
                    torch.add(ks[li], sk[li].to(buf.dtype), out=buf[:, a:e])
                a = e
            keys.append(buf)
        values = torch.cat([p[2].to(parts[0][2].dtype).expand(b, -1, -1) for p in parts], dim=1)
        return keys, values

    # ------------------------------------------------------------------ prompts → masks
    def sam_heads(self, pix_feat: torch.Tensor, high_res: Optional[List[torch.Tensor]] = None,
                  point_inputs: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                  mask_inputs: Optional[torch.Tensor] = None, multimask_output: bool = False) -> HeadsOutput:
        """Decode masks from (memory-conditioned) features.

        point_inputs: (coords (B, P, 2) pixels at model resolution, labels (B, P) int; 2/3 = box corners).
        mask_inputs: (B, 1, H', W') logits, resized to the prompt encoder's mask size.
        """
        b = pix_feat.shape[0]
        device = pix_feat.device
        if point_inputs is None:
            coords = torch.zeros(b, 1, 2, device=device)
            labels = -torch.ones(b, 1, dtype=torch.int32, device=device)
        else:
            coords, labels = point_inputs
        dense_in = None
        if mask_inputs is not None:
            size = self.sam_prompt_encoder.mask_input_size
            if tuple(mask_inputs.shape[-2:]) != tuple(size):
                dense_in = F.interpolate(mask_inputs.float(), size=size, mode="bilinear", align_corners=False,
                                         antialias=True)
            else:
                dense_in = mask_inputs
        pe = self.sam_prompt_encoder
        grid = tuple(pix_feat.shape[-2:])
        grid = None if grid == tuple(pe.embedding_hw) else grid  # an input of another size (an image region)
        if grid is not None and dense_in is not None:
            raise ValueError("mask prompts need features of the model's own input size")
        sparse, dense = pe((coords, labels), None, dense_in, pad=self.pad_points(labels), grid_hw=grid)
        dec = self.sam_mask_decoder(pix_feat, pe.dense_pe(grid), sparse, dense, multimask_output,
                                    repeat_image=False, high_res_features=high_res)
        low = dec.masks
        obj = dec.object_score_logits
        if self.cfg.pred_obj_scores:
            is_obj = obj > 0
            low = torch.where(is_obj[:, None, None], low, NO_OBJ_SCORE)
        low = low.float()
        high = F.interpolate(low, size=pe.image_hw_for(grid), mode="bilinear", align_corners=False)
        token = dec.sam_tokens[:, 0]
        if multimask_output:
            best = torch.argmax(dec.iou_pred, dim=-1)
            idx = torch.arange(b, device=device)
            low_best, high_best = low[idx, best].unsqueeze(1), high[idx, best].unsqueeze(1)
            if dec.sam_tokens.shape[1] > 1:
                token = dec.sam_tokens[idx, best]
        else:
            low_best, high_best = low, high
        obj_ptr = self.obj_ptr_proj(token)
        if self.cfg.pred_obj_scores:
            lam = torch.sigmoid(obj) if self.cfg.soft_no_obj_ptr else (obj > 0).float()
            obj_ptr = self._mix_no_obj_ptr(obj_ptr, lam)
        return HeadsOutput(low, high, dec.iou_pred, low_best, high_best, obj_ptr, obj)

    def read_clicks(self, pix_feat: torch.Tensor, high_res: Optional[List[torch.Tensor]],
                    point_inputs: Optional[Tuple[torch.Tensor, torch.Tensor]],
                    prior: Optional[torch.Tensor] = None):
        """With `cfg.click_boxes` (a box-trained decoder): each prompt in point_inputs (coords (B, P, 2), labels (B, P))
        that holds clicks replaced by the candidate box chosen on these features (`model/click_box.py`).
        pix_feat (B or 1, C, h, w); prior (B, 1, h', w') logits of the slice's current mask (a correction), or None.
        Returns (point_inputs, whether any prompt was read)."""
        if not self.cfg.click_boxes or point_inputs is None:
            return point_inputs, False
        pe = self.sam_prompt_encoder
        grid = tuple(pix_feat.shape[-2:])
        grid = None if grid == tuple(pe.embedding_hw) else grid

        def decode(b: int, boxes: torch.Tensor):
            k = boxes.shape[0]
            labels = torch.tensor([[BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]], dtype=torch.int32, device=boxes.device)
            sparse, dense = pe((boxes.view(k, 2, 2), labels.expand(k, -1)), None, None, pad=self.pad_points(labels),
                               grid_hw=grid)
            i = min(b, pix_feat.shape[0] - 1)
            hr = None if high_res is None else [h[i:i + 1] for h in high_res]
            dec = self.sam_mask_decoder(pix_feat[i:i + 1], pe.dense_pe(grid), sparse, dense, False,
                                        repeat_image=True, high_res_features=hr)
            return dec.masks[:, 0].float(), dec.iou_pred[:, 0].float()

        read = boxes_for_clicks(decode, point_inputs, self.image_size, prior)
        return read, read is not point_inputs

    def pad_points(self, labels: Optional[torch.Tensor]) -> bool:
        """Whether the prompt encoder appends a padding point to point labels (B, P): SAM 2 always does;
        SAM 1 decoders (LiteMedSAM) saw none after box corners."""
        return (self.cfg.pad_points_with_box or labels is None
                or not bool((labels == BOX_TOP_LEFT).any()))

    def _mix_no_obj_ptr(self, obj_ptr: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if self.cfg.fixed_no_obj_ptr:
            obj_ptr = lam * obj_ptr
        return obj_ptr + (1 - lam) * self.no_obj_ptr

    def mask_as_output(self, feats: ImageFeatures, mask_inputs: torch.Tensor) -> HeadsOutput:
        """Turn a binary mask prompt (B, 1, S, S) directly into outputs (SAM 2's behaviour on mask-prompted frames)."""
        scale, bias = 20.0, -10.0
        m = mask_inputs.float()
        high = m * scale + bias
        low = F.interpolate(high, size=(high.shape[-2] // 4, high.shape[-1] // 4), mode="bilinear",
                            align_corners=False, antialias=True)
        ious = m.new_ones(m.shape[0], 1)
        if not self.cfg.use_obj_ptrs_in_encoder:
            obj_ptr = torch.zeros(m.shape[0], self.hidden_dim, device=m.device)
        else:
            obj_ptr = self.sam_heads(feats.vision_feats, feats.high_res, mask_inputs=self.mask_downsample(m)).obj_ptr
        lam = torch.any(m.flatten(1) > 0.0, dim=1)[..., None].float()
        obj = scale * lam + bias
        if self.cfg.pred_obj_scores:
            obj_ptr = self._mix_no_obj_ptr(obj_ptr, lam)
        return HeadsOutput(low, high, ious, low, high, obj_ptr, obj)

    # ------------------------------------------------------------------ mask → memory
    def encode_memory(self, feats: ImageFeatures, high_res_masks: torch.Tensor, object_score_logits: torch.Tensor,
                      is_mask_from_pts: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Memory of a frame from its raw features and mask logits (B, 1, S, S) → (features, pos), (B, M, h, w)."""
        if self.cfg.num_maskmem == 0:
            return None, None
        if self.cfg.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts and not self.training:
            mask = (high_res_masks > 0).float()
        else:
            mask = torch.sigmoid(high_res_masks)
        mask = mask * self.cfg.sigmoid_scale_for_mem_enc + self.cfg.sigmoid_bias_for_mem_enc
        features, pos = self.memory_encoder(self.memory_grid(feats.vision_feats), mask)
        if self.cfg.no_obj_embed_spatial:
            absent = 1 - (object_score_logits > 0).float()
            features = features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return features, pos

    def encode_prompted_memory(self, feats: ImageFeatures, low_res_masks: torch.Tensor,
                               object_score_logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Memory of a prompted frame as SAM 2's video predictor makes it before propagating: from the
        low-res logits (B, 1, S/4, S/4) upsampled to S, treated as clicked (binarised at inference)."""
        high = F.interpolate(low_res_masks.float().to(feats.vision_feats.device), size=(self.image_size,) * 2,
                             mode="bilinear", align_corners=False)
        return self.encode_memory(feats, high, object_score_logits, is_mask_from_pts=True)

    # ------------------------------------------------------------------ one tracking step
    def use_multimask(self, is_init_cond_frame: bool, point_inputs) -> bool:
        n = 0 if point_inputs is None else point_inputs[1].shape[1]
        c = self.cfg
        return (c.multimask_output_in_sam and (is_init_cond_frame or c.multimask_output_for_tracking)
                and c.multimask_min_pt_num <= n <= c.multimask_max_pt_num)

    def track_step(self, feats: ImageFeatures, *, is_init_cond_frame: bool, memories: Sequence[MaskMemory] = (),
                   obj_ptrs: Sequence[ObjectPointer] = (), ptr_tpos_max: int = 1,
                   point_inputs: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                   mask_inputs: Optional[torch.Tensor] = None, prev_mask_logits: Optional[torch.Tensor] = None,
                   run_mem_encoder: bool = True, memory_cache: Optional[MemoryKVCache] = None) -> StepOutput:
        """Segment one frame from its features, prompts and the memories chosen by the caller.

        memory_cache: the fast memory-attention path (inference; see `condition_on_memory`)."""
        pix = None
        if mask_inputs is not None and self.cfg.use_mask_input_as_output_without_sam:
            heads = self.mask_as_output(feats, mask_inputs)
        else:
            pix = self.condition_on_memory(feats, memories, obj_ptrs, ptr_tpos_max, memory_cache)
            point_inputs, read = self.read_clicks(pix, feats.high_res, point_inputs,
                                                  mask_inputs if prev_mask_logits is None else prev_mask_logits)
            if read:  # a box-trained decoder: the current mask was the prior of the box, not a mask prompt
                mask_inputs = prev_mask_logits = None
            if prev_mask_logits is not None:
                mask_inputs = prev_mask_logits
            heads = self.sam_heads(pix, feats.high_res, point_inputs, mask_inputs,
                                   self.use_multimask(is_init_cond_frame, point_inputs))
        mem_f = mem_p = None
        if run_mem_encoder and self.cfg.num_maskmem > 0:
            mem_f, mem_p = self.encode_memory(feats, heads.high_res_masks, heads.object_score_logits,
                                              is_mask_from_pts=point_inputs is not None)
        return StepOutput(heads, mem_f, mem_p, pix)

    def forward(self, *args, **kwargs):  # pragma: no cover - explicit API only
        raise RuntimeError("SAM2Model has no forward(); use encode_image / track_step, or an engine session")
