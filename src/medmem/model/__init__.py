"""The SAM 2 network in plain PyTorch, one file per component."""
from .sam2 import SAM2Model, ImageFeatures, MaskMemory, ObjectPointer, StepOutput, HeadsOutput, NO_OBJ_SCORE

__all__ = ["SAM2Model", "ImageFeatures", "MaskMemory", "ObjectPointer", "StepOutput", "HeadsOutput", "NO_OBJ_SCORE"]
