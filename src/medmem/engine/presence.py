"""Object presence without a trained head: is a decoded region more like the prompted object or its surroundings?

A model whose decoder always answers a box with some mask (LiteMedSAM's, with box tracking) cannot say
that an object has ended. From the prompted slice we keep two prototypes of the image embedding: the
mean feature under the object's mask and the mean feature of a ring around it. On a tracked slice the
region the decoder returns is kept if its mean feature is closer (cosine) to the object prototype than
to the ring's; else the object is absent there. An object's look changes along its extent (a brain near the
skull base is not the brain at the ventricles), so the prototypes may follow it: on each slice judged present
they move towards that slice's own (`follow`). Features (B, C, h, w); mask logits at any resolution.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def _weights(mask_logits: torch.Tensor, hw) -> torch.Tensor:
    """(1, 1, H, W) logits → (h, w) fraction of each feature cell inside the mask."""
    return F.adaptive_avg_pool2d((mask_logits.float() > 0).float(), hw)[0, 0]


def _mean(feats: torch.Tensor, w: torch.Tensor) -> Optional[torch.Tensor]:
    total = w.sum()
    if total < 1e-6:
        return None
    return (feats[0].float() * w).sum(dim=(-2, -1)) / total


def prototypes(feats: torch.Tensor, mask_logits: torch.Tensor, ring: int = 2) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(object, surroundings) prototypes (C,), (C,) from a slice's features and its mask; None for an empty mask.
    The surroundings are the feature cells within `ring` cells of the mask, outside it."""
    w = _weights(mask_logits, feats.shape[-2:])
    grown = F.max_pool2d(w[None, None], 2 * ring + 1, stride=1, padding=ring)[0, 0]
    fg, bg = _mean(feats, w), _mean(feats, (grown - w).clamp(min=0))
    if fg is None or bg is None:
        return None
    return fg, bg


def looks_present(feats: torch.Tensor, mask_logits: torch.Tensor, protos: Tuple[torch.Tensor, torch.Tensor]) -> bool:
    """Whether the masked region of a slice is more like the object prototype than like its surroundings."""
    region = _mean(feats, _weights(mask_logits, feats.shape[-2:]))
    if region is None:
        return False
    fg, bg = protos
    return bool(F.cosine_similarity(region, fg, dim=0) > F.cosine_similarity(region, bg, dim=0))


def follow(protos: Tuple[torch.Tensor, torch.Tensor], feats: torch.Tensor, mask_logits: torch.Tensor,
           momentum: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prototypes moved towards a present slice's own: p ← (1 - momentum) p + momentum p_slice, each of
    (object, surroundings); unchanged when the slice's mask is empty or has no surroundings."""
    if momentum <= 0:
        return protos
    cur = prototypes(feats, mask_logits)
    if cur is None:
        return protos
    return tuple((1 - momentum) * p + momentum * c for p, c in zip(protos, cur))
