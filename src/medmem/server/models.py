"""The model a server uses (no FastAPI needed here)."""
from __future__ import annotations

from typing import Optional


def load_model(checkpoint: Optional[str] = None, device: Optional[str] = None):
    """The model `medmem segment` would use: `checkpoint`, else the bundled default model."""
    import medmem
    from ..engine.pipeline import default_model_path

    if checkpoint is None:
        path = default_model_path()
        if path is None:
            raise ValueError("this build has no bundled default model; pass --checkpoint PATH")
        checkpoint = str(path)
    return medmem.build_model(checkpoint=checkpoint, device=device)
