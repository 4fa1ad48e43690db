"""Load and save model weights: official SAM 2 / 2.1 `.pt` files, plain state dicts, safetensors,
and the layouts of the medical fine-tunes (MedSAM2, Medical SAM 2, SAMed-2).

Loading is strict: a mismatch raises `CheckpointMismatchError` naming the missing, unexpected
and mis-shaped keys (the first few of each, with counts) and the config that was tried.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import torch

from .atomic import atomic_path
from .config import SAM2Config, get_config, list_models

StateDict = Dict[str, torch.Tensor]
PathLike = Union[str, os.PathLike]

# wrappers that training code puts around a model (DDP / DataParallel, torch.compile, wrappers)
_PREFIXES = ("module.", "_orig_mod.", "base_net.", "model.")
# modules of the released SAMed-2 trunk that its forward pass never uses
_SAMED2_UNUSED = re.compile(r"^image_encoder\.trunk\.blocks\.\d+\.fancy_fusion\.")


class CheckpointError(ValueError):
    """The file cannot be read as model weights."""


class CheckpointMismatchError(CheckpointError):
    """The weights do not fit the model built from the chosen config."""

    def __init__(self, config_name: str, missing: list, unexpected: list, mismatched: list) -> None:
        self.config_name, self.missing, self.unexpected, self.mismatched = config_name, missing, unexpected, mismatched

        def few(keys, n=5):
            return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")

        parts = [f"checkpoint does not match config {config_name!r}:"]
        if missing:
            parts.append(f"{len(missing)} missing key(s): {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {few(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): " + few(
                [f"{k} checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in mismatched], 3))
        parts.append("(pass config=... for another variant, or see `medmem models`)")
        super().__init__("\n  ".join(parts))


def read_state_dict(path: PathLike) -> Tuple[StateDict, dict]:
    """Read weights from `.pt`/`.pth`/`.bin` (torch) or `.safetensors` → (state dict, metadata).

    Accepts `{"model": sd}` (official SAM 2, MedSAM2, Medical SAM 2, SAMed-2), `{"state_dict": sd}`
    and plain state dicts; strips wrapper prefixes (`module.`, `_orig_mod.`, `base_net.`).
    Never unpickles arbitrary objects (torch.load with weights_only=True).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"cannot read {path}: the file is empty (0 bytes)")
    meta: dict = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                sd = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # corrupt / not safetensors
            raise CheckpointError(f"cannot read {path} as safetensors weights: {_safetensors_reason(e, path)}") from None
    else:
        try:
            with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {_torch_reason(e, path)}") from None
        sd = _unwrap(obj, path)
    if "medmem_config" in meta:
        try:
            meta["medmem_config"] = json.loads(meta["medmem_config"])
        except ValueError:
            raise CheckpointError(f"cannot read {path}: its medmem_config metadata is not valid JSON") from None
    return strip_prefixes(sd), meta


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(e).__name__


def _safetensors_reason(e: BaseException, path: Path) -> str:
    """One line on what is wrong with a file that safetensors refused."""
    with open(path, "rb") as f:
        head = f.read(8)
    n = int.from_bytes(head, "little") if len(head) == 8 else None
    if n is None:
        return f"the file holds {path.stat().st_size} bytes, fewer than a safetensors header"
    if n == 0 or n > path.stat().st_size - 8:
        return (f"the header length field says {n} bytes but the file holds {path.stat().st_size} "
                "(not a safetensors file, or zeroed / truncated)")
    reason = _first_line(e).replace("Error while deserializing header: ", "")
    if "not fully covered" in reason:
        return "the file is truncated (the header lists more tensor data than the file holds)"
    return reason


def _torch_reason(e: BaseException, path: Path) -> str:
    """One line on why ``torch.load(weights_only=True)`` refused a file (never a hint to unpickle it)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    msg = str(e)
    glob = re.search(r"(?:unsupported GLOBAL|Unsupported global:?)\s+(?:GLOBAL\s+)?([\w.]+)", msg)
    if glob:
        return (f"it holds pickled Python objects ({glob.group(1)}) besides tensors; medmem loads weights only "
                "(torch.load with weights_only=True) and never runs pickled code")
    if magic.startswith(b"PK"):
        return f"the zip archive is truncated or corrupt ({_first_line(e)})"
    if isinstance(e, EOFError):
        return "the file ends early (truncated)"
    return "not a PyTorch checkpoint (neither a torch zip archive nor a weights-only pickle)"


def _unwrap(obj, path) -> StateDict:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                return _tensors_only(obj[key], path)
        return _tensors_only(obj, path)
    raise CheckpointError(f"{path}: expected a state dict or {{'model': state_dict}}, got {type(obj).__name__}")


def _tensors_only(d: Mapping, path) -> StateDict:
    sd = {k: v for k, v in d.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{path}: no tensors found (keys: {list(d)[:5]})")
    return sd


def strip_prefixes(sd: StateDict) -> StateDict:
    """Remove a wrapper prefix shared by every key (repeatedly: `module._orig_mod.` etc.)."""
    changed = True
    while changed and sd:
        changed = False
        for p in _PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def adapt_layout(sd: StateDict, cfg: SAM2Config) -> StateDict:
    """Map known fine-tune layouts onto ours (only what is proven to be unused is dropped)."""
    if cfg.temporal_adapter.blocks:  # SAMed-2 weights, in either adapter grouping mode
        sd = {k: v for k, v in sd.items() if not _SAMED2_UNUSED.match(k)}
    return sd


def check_state_dict(model: torch.nn.Module, sd: StateDict, config_name: str) -> None:
    """Raise `CheckpointMismatchError` unless keys and shapes match exactly."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    mismatched = [(k, sd[k].shape, own[k].shape) for k in sorted(own) if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(config_name, missing, unexpected, mismatched)


def load_weights(model: torch.nn.Module, path_or_sd: Union[PathLike, StateDict]) -> None:
    """Load weights into `model` strictly, adapting known layouts first."""
    cfg: SAM2Config = model.cfg
    sd = path_or_sd if isinstance(path_or_sd, Mapping) else read_state_dict(path_or_sd)[0]
    sd = adapt_layout(strip_prefixes(dict(sd)), cfg)
    check_state_dict(model, sd, cfg.name)
    for k, v in sd.items():
        if not v.is_floating_point() and model.state_dict()[k].is_floating_point():
            raise CheckpointError(f"tensor {k} has dtype {v.dtype}, expected floating point")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, strict=True)


def infer_config(sd: StateDict, meta: Optional[dict] = None) -> SAM2Config:
    """Guess the config of a state dict from its keys and shapes (and medmem metadata when present).

    Distinguishes trunk size (embed dim, depth), SAM 2.0 vs 2.1 and the SAMed-2 adapter. The input
    resolution is not stored in the weights: 1024² is assumed unless the metadata says otherwise
    (for MedSAM2's 512² weights pass config="sam2.1_hiera_tiny_512").
    """
    if meta and "medmem_config" in meta:
        return SAM2Config.from_dict(meta["medmem_config"])
    sd = strip_prefixes(dict(sd))
    pe = sd.get("image_encoder.trunk.pos_embed")
    if pe is None:
        raise CheckpointError("cannot infer the config: no image_encoder.trunk.pos_embed key "
                              "(is this a SAM 2 checkpoint?)")
    embed = pe.shape[1]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", k)))
    v21 = "no_obj_embed_spatial" in sd
    has_adapter = any(".adapter." in k for k in sd)
    for name in list_models():
        cfg = get_config(name)
        if (cfg.trunk.embed_dim == embed and sum(cfg.trunk.stages) == depth and cfg.no_obj_embed_spatial == v21
                and bool(cfg.temporal_adapter.blocks) == has_adapter and cfg.image_size in (1024, 256, 128)
                and cfg.trunk.d_model == sd["image_encoder.neck.convs.0.conv.weight"].shape[0]):
            return cfg
    raise CheckpointError(f"no registered config has trunk embed dim {embed} and depth {depth} "
                          f"(SAM 2.{'1' if v21 else '0'}{', temporal adapter' if has_adapter else ''})")


def save_weights(model: torch.nn.Module, path: PathLike, extra_meta: Optional[dict] = None) -> Path:
    """Write weights as safetensors with the config in the metadata, atomically (temp file + rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"medmem_config": json.dumps(model.cfg.to_dict())}
    meta.update({k: str(v) for k, v in (extra_meta or {}).items()})
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=meta)
    return path
