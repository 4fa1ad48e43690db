"""The model a server uses (no FastAPI needed here)."""
from __future__ import annotations

from typing import Optional


def load_model(checkpoint: Optional[str] = None, device: Optional[str] = None, name: Optional[str] = None):
    """The model `medmem segment` would use: `checkpoint`, else the pretrained model `name` (default: the
    default pretrained model)."""
    import medmem

    if checkpoint is None:
        return medmem.build_model(name or "default", pretrained=True, device=device)
    if name is not None:
        raise ValueError("give --model or --checkpoint, not both")
    return medmem.build_model(checkpoint=checkpoint, device=device)
