"""The model a server uses (no FastAPI needed here)."""
from __future__ import annotations

from typing import Optional


def load_model(checkpoint: Optional[str] = None, device: Optional[str] = None):
    """The model `medmem segment` would use: `checkpoint`, else the default pretrained model."""
    import medmem

    if checkpoint is None:
        return medmem.build_model("default", device=device)
    return medmem.build_model(checkpoint=checkpoint, device=device)
