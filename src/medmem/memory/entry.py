"""What the engine remembers about one processed frame of one object."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch


@dataclass
class FrameMemory:
    """Memory of one frame (batch axis = objects sharing the frame, usually 1).

    maskmem_features (B, M, h, w) may be stored in a reduced dtype (bf16, as SAM 2 does);
    maskmem_pos (B, M, h, w); obj_ptr (B, C); pred_masks (B, 1, 4h, 4w) low-res logits.
    """

    frame_idx: int
    maskmem_features: Optional[torch.Tensor]
    maskmem_pos: Optional[torch.Tensor]
    obj_ptr: torch.Tensor
    pred_masks: torch.Tensor
    object_score_logits: torch.Tensor
    iou: Optional[torch.Tensor] = None  # (B, 1) predicted IoU of the kept mask
    is_cond: bool = False

    @classmethod
    def from_step(cls, frame_idx: int, heads: Any, maskmem: Tuple[Optional[torch.Tensor], Optional[torch.Tensor]],
                  *, is_cond: bool = False, storage_dtype: Optional[torch.dtype] = None) -> "FrameMemory":
        """The memory of one tracking step: `heads` is the step's `HeadsOutput` (or a `StepOutput`),
        `maskmem` its (features, pos) from the memory encoder (None, None before encoding).

        Keeps the kept mask's predicted IoU (the best of a multimask output); features are cast to
        `storage_dtype` when given (inference stores bf16 as SAM 2 does; training keeps the graph)."""
        h = getattr(heads, "heads", heads)
        ious = h.ious
        iou = ious.max(dim=-1, keepdim=True).values if ious.shape[-1] > 1 else ious[..., :1]
        mf, mp = maskmem
        if mf is not None and storage_dtype is not None:
            mf = mf.to(storage_dtype)
        return cls(frame_idx, mf, mp, h.obj_ptr.float(), h.low_res_masks.float(), h.object_score_logits.float(),
                   iou.float(), is_cond)
