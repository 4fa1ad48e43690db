"""Prompt steps of an editing session, as JSON-safe records (the undo/redo log)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from ..io.prompts import rle_decode, rle_encode


@dataclass
class Step:
    """One prompt on one slice of one object; `propagated` marks a propagation that followed it."""

    obj: int
    slice: int
    box: Optional[List[float]] = None
    points: Optional[List[List[float]]] = None
    labels: Optional[List[int]] = None
    mask_rle: Optional[Dict[str, Any]] = None
    clear_old: bool = True
    propagated: bool = False

    def kwargs(self) -> dict:
        """Keyword arguments for `VolumeSession.add_prompt`."""
        kw: dict = {"clear_old": self.clear_old}
        if self.box is not None:
            kw["box"] = list(self.box)
        if self.points is not None:
            kw["points"] = np.asarray(self.points, dtype=np.float64)
            kw["labels"] = np.asarray(self.labels, dtype=np.int32)
        if self.mask_rle is not None:
            kw["mask"] = rle_decode(self.mask_rle)
        return kw

    def kind(self) -> str:
        if self.mask_rle is not None:
            return "mask"
        if self.box is not None:
            return "box"
        return "points"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Step":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @classmethod
    def from_mask(cls, obj: int, slice_idx: int, mask: np.ndarray) -> "Step":
        return cls(obj=obj, slice=slice_idx, mask_rle=rle_encode(mask))
