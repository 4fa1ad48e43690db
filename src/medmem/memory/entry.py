"""What the engine remembers about one processed frame of one object."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

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
