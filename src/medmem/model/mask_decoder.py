"""Mask decoder: two-way transformer over output tokens + prompt tokens and the image embedding.

Outputs mask logits at 4× the embedding resolution, IoU predictions, the mask tokens (object
pointers are built from them) and an object-presence score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


@dataclass
class DecoderOutput:
    masks: torch.Tensor          # (B, M, 4h, 4w) logits; M = 3 (multimask) or 1
    iou_pred: torch.Tensor       # (B, M)
    sam_tokens: torch.Tensor     # (B, M' , C) tokens used for the object pointer
    object_score_logits: torch.Tensor  # (B, 1)


class MaskDecoder(nn.Module):
    def __init__(self, dim: int, transformer: TwoWayTransformer, num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256, use_high_res_features: bool = True,
                 iou_prediction_use_sigmoid: bool = True, pred_obj_scores: bool = True,
                 pred_obj_scores_mlp: bool = True, use_multimask_token_for_obj_ptr: bool = True,
                 dynamic_multimask_via_stability: bool = False, stability_delta: float = 0.05,
                 stability_thresh: float = 0.98, obj_score_token: bool = True) -> None:
        super().__init__()
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.pred_obj_scores = pred_obj_scores
        # without its own token, the object-score head reads the IoU token's output (decoders trained
        # without the token, such as SAM 1's, then give unchanged masks)
        self.has_obj_score_token = pred_obj_scores and obj_score_token
        if self.has_obj_score_token:
            self.obj_score_token = nn.Embedding(1, dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth,
                                       sigmoid_output=iou_prediction_use_sigmoid)
        if pred_obj_scores:
            self.pred_obj_score_head = MLP(dim, dim, 1, 3) if pred_obj_scores_mlp else nn.Linear(dim, 1)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.stability_delta = stability_delta
        self.stability_thresh = stability_thresh

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor, multimask_output: bool, repeat_image: bool,
                high_res_features: Optional[List[torch.Tensor]] = None) -> DecoderOutput:
        """image_embeddings (B or 1, C, h, w); sparse (B, N, C); dense (B, C, h, w)."""
        masks, iou, mask_tokens, obj = self.predict_masks(image_embeddings, image_pe, sparse, dense, repeat_image,
                                                          high_res_features)
        if multimask_output:
            masks, iou = masks[:, 1:], iou[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou = self._stable_single_mask(masks, iou)
        else:
            masks, iou = masks[:, 0:1], iou[:, 0:1]
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            tokens = mask_tokens[:, 1:]
        else:
            tokens = mask_tokens[:, 0:1]
        return DecoderOutput(masks, iou, tokens, obj)

    def predict_masks(self, image_embeddings, image_pe, sparse, dense, repeat_image, high_res_features):
        """All 4 masks (B, 4, 4h, 4w), IoU (B, 4), mask tokens (B, 4, C), object score (B, 1)."""
        out_tokens = [self.iou_token.weight, self.mask_tokens.weight]
        if self.has_obj_score_token:
            out_tokens.insert(0, self.obj_score_token.weight)
        s = 1 if self.has_obj_score_token else 0
        out_tokens = torch.cat(out_tokens, dim=0).unsqueeze(0).expand(sparse.shape[0], -1, -1)
        tokens = torch.cat([out_tokens, sparse], dim=1)
        if repeat_image:
            src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0)
        else:
            if image_embeddings.shape[0] != tokens.shape[0]:
                raise ValueError("image batch and prompt batch differ")
            src = image_embeddings
        src = src + dense
        pos = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_token_out = hs[:, s]
        mask_tokens_out = hs[:, s + 1: s + 1 + self.num_mask_tokens]
        src = src.transpose(1, 2).reshape(b, c, h, w)
        if not self.use_high_res_features:
            up = self.output_upscaling(src)
        else:
            dc1, ln1, act1, dc2, act2 = self.output_upscaling
            feat_s0, feat_s1 = high_res_features
            up = act1(ln1(dc1(src) + feat_s1))
            up = act2(dc2(up) + feat_s0)
        hyper = torch.stack([mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        b, c, h, w = up.shape
        masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
        iou = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            obj = self.pred_obj_score_head(hs[:, 0])
        else:
            obj = 10.0 * iou.new_ones(iou.shape[0], 1)
        return masks, iou, mask_tokens_out, obj

    def _stable_single_mask(self, masks: torch.Tensor, iou: torch.Tensor):
        """Keep the single-mask output where it is stable; else the multimask output with the best IoU."""
        multi, multi_iou = masks[:, 1:], iou[:, 1:]
        best = multi_iou.argmax(dim=-1)
        idx = torch.arange(multi.shape[0], device=masks.device)
        best_masks = multi[idx, best].unsqueeze(1)
        best_iou = multi_iou[idx, best].unsqueeze(1)
        single, single_iou = masks[:, 0:1], iou[:, 0:1]
        flat = single.flatten(-2)
        inter = (flat > self.stability_delta).sum(-1).float()
        union = (flat > -self.stability_delta).sum(-1).float()
        stability = torch.where(union > 0, inter / union, torch.ones_like(inter))
        stable = stability >= self.stability_thresh  # (B, 1)
        out_masks = torch.where(stable[..., None, None].expand_as(single), single, best_masks)
        out_iou = torch.where(stable.expand_as(single_iou), single_iou, best_iou)
        return out_masks, out_iou
