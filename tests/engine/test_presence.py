"""Presence without a trained head (engine/presence.py): prototypes, the check, and prototypes that follow."""
from __future__ import annotations

import math

import torch

from medmem.engine.presence import follow, looks_present, prototypes


def _slice(obj: torch.Tensor, bg: torch.Tensor):
    """Features (1, C, 8, 8): `obj` in the centre 4 × 4 cells, `bg` around; the centre's mask logits (1, 1, 32, 32)."""
    feats = bg.view(1, -1, 1, 1).repeat(1, 1, 8, 8)
    feats[..., 2:6, 2:6] = obj.view(1, -1, 1, 1)
    mask = torch.full((1, 1, 32, 32), -5.0)
    mask[..., 8:24, 8:24] = 5.0
    return feats, mask


def test_prototypes_and_the_check_by_hand():
    e = torch.eye(4)
    feats, mask = _slice(e[0], e[1])
    fg, bg = prototypes(feats, mask, ring=1)
    assert torch.allclose(fg, e[0]) and torch.allclose(bg, e[1])
    assert looks_present(feats, mask, (fg, bg))
    assert not looks_present(*_slice(e[1], e[1]), (fg, bg))  # the masked region looks like the surroundings
    assert prototypes(feats, torch.full_like(mask, -5.0)) is None  # empty mask: no prototypes


def test_followed_prototypes_keep_a_drifting_object_present():
    """The object's feature turns from e0 towards e1 by 6° a slice, its surroundings are (e1 + e2)/√2: against
    the first slice's prototypes it turns absent past 54.7° (tan θ > √2); followed (momentum 0.5), it stays
    present all the way to 84°; momentum 0 is the first slice's prototypes."""
    e = torch.eye(4)
    bg = (e[1] + e[2]) / math.sqrt(2)
    first = prototypes(*_slice(e[0], bg), ring=2)
    fixed, followed, still = [], [], first
    moving = first
    for k in range(1, 15):
        th = math.radians(6 * k)
        feats, mask = _slice(math.cos(th) * e[0] + math.sin(th) * e[1], bg)
        fixed.append(looks_present(feats, mask, first))
        ok = looks_present(feats, mask, moving)
        followed.append(ok)
        if ok:
            moving = follow(moving, feats, mask, 0.5)
        still = follow(still, feats, mask, 0.0)
    assert fixed.index(False) == 9  # 60°: the first absent slice against the fixed prototypes
    assert all(followed)
    assert all(torch.equal(a, b) for a, b in zip(still, first))
