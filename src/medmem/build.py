"""Build a model by config name, optionally loading weights from a local path."""
from __future__ import annotations

from typing import Optional, Union

import torch

from .allocator import tune_allocator
from .checkpoint import PathLike, infer_config, load_weights, read_state_dict
from .config import SAM2Config, get_config
from .pretrained import DEFAULT_MODEL, PRETRAINED, TRAINED_PARTS_META, lite_state_dict, pretrained_state_dict
from .model import SAM2Model


def build_model(name: Optional[Union[str, SAM2Config]] = None, checkpoint: Optional[PathLike] = None,
                device: Optional[Union[str, torch.device]] = None, pretrained: bool = False) -> SAM2Model:
    """A `SAM2Model` in eval mode.

    name: a registered config (`medmem.list_models()`), a `SAM2Config`, "default" for the default
    pretrained model, or None to infer it from the checkpoint. checkpoint: a local
    `.pt`/`.pth`/`.safetensors` file, loaded strictly. pretrained: load the named model's own weights
    (`medmem.pretrained.PRETRAINED`; "default" always does). device: "cpu", "cuda", "mps", ...
    (default: CUDA if available, else MPS, else CPU).
    """
    sd = meta = None
    if name == "default" or pretrained:
        if checkpoint is not None:
            raise ValueError("give either a checkpoint or pretrained weights, not both")
        key = DEFAULT_MODEL if name == "default" else name
        if not isinstance(key, str):
            raise ValueError("pretrained=True needs a model name")
        sd, name = pretrained_state_dict(key), PRETRAINED[key].config if key in PRETRAINED else key
    if checkpoint is not None:
        sd, meta = read_state_dict(checkpoint)
        if (meta or {}).get(TRAINED_PARTS_META) == "trained":  # medmem's trained parts of a LiteMedSAM-based model
            sd = lite_state_dict(sd)
    if name is None:
        if sd is None:
            raise ValueError("give a config name or a checkpoint to infer it from")
        cfg = infer_config(sd, meta)
    elif isinstance(name, SAM2Config):
        cfg = name
    else:
        cfg = get_config(name)
    model = SAM2Model(cfg)
    if sd is not None:
        load_weights(model, sd)
    dev = default_device(device)
    if dev.type == "cpu":
        tune_allocator()  # large activations reuse heap blocks instead of page-faulting in each slice
    return model.to(dev).eval()


def default_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
