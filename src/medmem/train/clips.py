"""Samples and clips: which object of which case, which consecutive slices, in which direction.

`ShardedSampler` walks epoch-wise permutations of the sample pool, each rank taking every
world-th index (as `torch.utils.data.DistributedSampler`), as a pure function of the position:
resuming needs no sampler state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from .data import PreparedCase


@dataclass(frozen=True)
class SampleRef:
    case: int  # index into the training cases
    obj: int   # label id


def build_pool(cases: Sequence[PreparedCase], tasks: Sequence[str] = ()) -> List[SampleRef]:
    """Every (case, object) pair with the object present somewhere, for cases of ``tasks`` (all if empty)."""
    return [SampleRef(i, obj) for i, c in enumerate(cases) if not tasks or c.task in tasks
            for obj in sorted(c.objects)]


class ShardedSampler:
    """Indices into a pool of n samples, sharded over ``world`` ranks, reshuffled every epoch."""

    def __init__(self, n: int, world: int = 1, rank: int = 0, seed: int = 0) -> None:
        if n < 1:
            raise ValueError("empty sample pool")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world of {world}")
        self.n, self.world, self.rank, self.seed = n, world, rank, seed
        self.per_rank = -(-n // world)  # the last ranks wrap around, as DistributedSampler pads

    def _epoch(self, epoch: int) -> np.ndarray:
        perm = np.random.default_rng([self.seed, epoch, 0x5A17]).permutation(self.n)
        padded = np.resize(perm, self.per_rank * self.world)
        return padded[self.rank::self.world]

    def indices(self, start: int, count: int) -> List[int]:
        """This rank's samples at stream positions start .. start + count - 1."""
        out: List[int] = []
        cache: Dict[int, np.ndarray] = {}
        for p in range(start, start + count):
            e, i = divmod(p, self.per_rank)
            if e not in cache:
                cache[e] = self._epoch(e)
            out.append(int(cache[e][i]))
        return out


def sample_clip(case: PreparedCase, obj: int, clip_len: int, rng: np.random.Generator, full_prob: float = 1.0,
                reverse_prob: float = 0.5) -> List[int]:
    """Slice indices of a clip in processing order; its first frame contains the object.

    2D cases give ``[0]``. 3D cases give min(clip_len, N) consecutive slices (fewer when no such
    window starts or ends on the object), played backwards with probability ``reverse_prob``; with probability ``full_prob`` a window whose every slice contains
    the object is chosen when one exists.
    """
    if case.dims == 2 or case.num_slices == 1:
        return [0]
    n = case.num_slices
    present = np.zeros(n, dtype=bool)
    present[case.objects[obj]] = True
    if not present.any():
        raise ValueError(f"object {obj} absent from case {case.id}")
    reverse = bool(rng.random() < reverse_prob)
    t = min(clip_len, n)
    while True:  # shorten the clip when no window of length t starts (or ends) on the object
        cands = [(s, rev) for s in range(n - t + 1) for rev in (False, True) if present[s + (t - 1 if rev else 0)]]
        if cands:
            break
        t -= 1
    same_dir = [c for c in cands if c[1] == reverse]
    cands = same_dir or cands
    if rng.random() < full_prob:
        full = [c for c in cands if present[c[0]:c[0] + t].all()]
        cands = full or cands
    s, rev = cands[int(rng.integers(len(cands)))]
    frames = list(range(s, s + t))
    return frames[::-1] if rev else frames


@dataclass
class ClipGroup:
    """B samples sharing the clip length T, in processing order.

    images (B, T, 3, S, S) normalised model input; gt (B, T, 1, S, S) float {0, 1} on the device;
    gt_np (B, T, S, S) bool for prompt simulation.
    """

    images: torch.Tensor
    gt: torch.Tensor
    gt_np: np.ndarray
    refs: List[Tuple[SampleRef, List[int]]]

    @property
    def batch(self) -> int:
        return int(self.gt.shape[0])

    @property
    def length(self) -> int:
        return int(self.gt.shape[1])


def make_groups(cases: Sequence[PreparedCase], refs: Sequence[SampleRef], clip_len: int, rng: np.random.Generator,
                device: torch.device, full_prob: float = 1.0, reverse_prob: float = 0.5) -> List[ClipGroup]:
    """Draw a clip per sample and batch samples of equal clip length together."""
    by_len: Dict[int, List[Tuple[SampleRef, List[int]]]] = {}
    for r in refs:
        frames = sample_clip(cases[r.case], r.obj, clip_len, rng, full_prob, reverse_prob)
        by_len.setdefault(len(frames), []).append((r, frames))
    groups = []
    for t in sorted(by_len):
        items = by_len[t]
        imgs = torch.stack([cases[r.case].model_input(frames, device) for r, frames in items])
        gt_np = np.stack([cases[r.case].masks[frames] == r.obj for r, frames in items])
        gt = torch.from_numpy(gt_np).to(device=device, dtype=torch.float32)[:, :, None]
        groups.append(ClipGroup(imgs, gt, gt_np, list(items)))
    return groups
