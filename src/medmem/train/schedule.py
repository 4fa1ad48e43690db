"""Optimisation plumbing: freezing by component, AdamW parameter groups (weight decay, layer-wise
lr decay over the Hiera trunk) and the linear warm-up + cosine learning-rate schedule."""
from __future__ import annotations

import math
import re
from typing import Callable, Dict, Iterable, List, Sequence

import torch
from torch import nn

#: freeze groups → predicate on parameter names. The temporal adapter is its own group, so
#: ``image_encoder`` frozen with the adapter trainable is SAMed-2-style adapter tuning.
def _is_litemedsam_key(name: str) -> bool:
    from ..pretrained import is_litemedsam_key

    return is_litemedsam_key(name)


FREEZE_GROUPS: Dict[str, Callable[[str], bool]] = {
    "image_encoder": lambda n: n.startswith("image_encoder.") and ".adapter." not in n,
    "temporal_adapter": lambda n: n.startswith("image_encoder.") and ".adapter." in n,
    "prompt_encoder": lambda n: n.startswith("sam_prompt_encoder."),
    "mask_decoder": lambda n: n.startswith("sam_mask_decoder."),
    # medmem_lite_256: everything that comes from LiteMedSAM (its encoder, prompt encoder and decoder)
    "litemedsam": lambda n: _is_litemedsam_key(n),
    "memory": lambda n: n.split(".")[0] in ("memory_attention", "memory_encoder", "maskmem_tpos_enc", "no_mem_embed",
                                           "no_mem_pos_enc", "obj_ptr_proj", "obj_ptr_tpos_proj", "mask_downsample",
                                           "no_obj_ptr", "no_obj_embed_spatial"),
}

_NO_DECAY = ("pos_embed", "no_mem_", "no_obj_", "tpos_enc", "_token", "point_embeddings", "not_a_point_embed",
             "no_mask_embed")


def freeze(model: nn.Module, groups: Iterable[str]) -> List[str]:
    """Set requires_grad=False on the named component groups; returns the frozen parameter names."""
    groups = list(groups)
    for g in groups:
        if g not in FREEZE_GROUPS:
            raise ValueError(f"unknown freeze group {g!r}; choose from {', '.join(FREEZE_GROUPS)}")
    frozen = []
    for name, p in model.named_parameters():
        if any(FREEZE_GROUPS[g](name) for g in groups):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def trunk_layer_id(name: str, num_blocks: int) -> int:
    """Depth of a parameter for layer-wise lr decay: 0 = trunk stem (patch/pos embedding),
    i + 1 = trunk block i, num_blocks + 1 = everything after the trunk (neck, heads, memory)."""
    if name.startswith("image_encoder.trunk."):
        m = re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", name)
        if m:
            return int(m.group(1)) + 1
        return 0
    return num_blocks + 1


def param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0) -> List[dict]:
    """AdamW groups of the trainable parameters. Each group has ``lr_scale`` (layer_decay^(L+1−depth)
    for the trunk, 1 elsewhere) and ``weight_decay`` (0 for biases, norms, embeddings and tokens)."""
    blocks = [int(m.group(1)) for n, _ in model.named_parameters()
              if (m := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", n))]
    num_blocks = max(blocks) + 1 if blocks else 0
    groups: Dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = layer_decay ** (num_blocks + 1 - trunk_layer_id(name, num_blocks)) if layer_decay != 1.0 else 1.0
        wd = 0.0 if (p.ndim <= 1 or any(k in name for k in _NO_DECAY)) else weight_decay
        key = (round(scale, 12), wd)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "lr_scale": scale, "weight_decay": wd, "lr": lr * scale}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def lr_factor(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base lr for optimizer update ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup`` for ``step < warmup``, then cosine from 1 down to
    ``min_ratio`` at the last step ``total - 1``.
    """
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets each group's lr to base_lr × lr_scale × `lr_factor`; ``restart_every`` > 0 restarts the
    schedule (warm-up included) every that many steps (continual learning)."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, total: int, warmup: int,
                 min_ratio: float = 0.0, restart_every: int = 0) -> None:
        self.optimizer, self.base_lr, self.total, self.warmup = optimizer, base_lr, total, warmup
        self.min_ratio, self.restart_every = min_ratio, restart_every
        self.step_num = 0
        self.apply(0)

    def factor(self, step: int) -> float:
        if self.restart_every > 0:
            return lr_factor(step % self.restart_every, self.restart_every, min(self.warmup, self.restart_every),
                             self.min_ratio)
        return lr_factor(step, self.total, self.warmup, self.min_ratio)

    def apply(self, step: int) -> float:
        f = self.factor(step)
        for g in self.optimizer.param_groups:
            g["lr"] = self.base_lr * g.get("lr_scale", 1.0) * f
        return self.base_lr * f

    def step(self) -> None:
        """After an optimizer update: set the lr of the next one."""
        self.step_num += 1
        self.apply(self.step_num)

    def state_dict(self) -> dict:
        return {"step_num": self.step_num}

    def load_state_dict(self, state: dict) -> None:
        self.step_num = int(state["step_num"])
        self.apply(self.step_num)


def check_groups_cover(model: nn.Module, groups: Sequence[dict]) -> None:
    """Every trainable parameter is in exactly one group."""
    ids = [id(p) for g in groups for p in g["params"]]
    want = {id(p) for p in model.parameters() if p.requires_grad}
    if len(ids) != len(set(ids)) or set(ids) != want:
        raise AssertionError("parameter groups do not cover the trainable parameters exactly once")
