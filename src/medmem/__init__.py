"""medmem: promptable medical image segmentation with memory, built on SAM 2."""
from .build import build_model, default_device
from .config import SAM2Config, get_config, list_models
from .model import SAM2Model

__version__ = "0.1.0"

__all__ = ["build_model", "default_device", "get_config", "list_models", "SAM2Config", "SAM2Model",
           "ImagePredictor", "VolumeSession", "ImageSetSession", "__version__"]


def __getattr__(name):  # lazy: keep `import medmem` light
    if name == "ImagePredictor":
        from .engine.image import ImagePredictor

        return ImagePredictor
    if name == "VolumeSession":
        from .engine.volume import VolumeSession

        return VolumeSession
    if name == "ImageSetSession":
        from .engine.image_set import ImageSetSession

        return ImageSetSession
    if name in ("io", "data", "eval", "engine", "memory", "train", "checkpoint", "model", "config"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'medmem' has no attribute {name!r}")
