"""Tiny synthetic cases for the training tests (made in memory, milliseconds)."""
from __future__ import annotations

import numpy as np

from medmem.train.data import RawCase


def disk(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def case_2d(i: int, split: str = "train", size: int = 48, task: str = "disk2d", seed: int = 0,
            noisy: bool = False) -> RawCase:
    rng = np.random.default_rng([seed, i, 2])
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    r = rng.uniform(size * 0.12, size * 0.22)
    lab = disk(size, size, cy, cx, r).astype(np.uint8)
    img = (40 + 150 * lab + rng.normal(0, 10, lab.shape)).clip(0, 255).astype(np.uint8)
    ln = None
    if noisy:
        ln = disk(size, size, cy + 3, cx - 3, r * 1.3).astype(np.uint8)
    return RawCase(f"{task}_{i}", task, img, lab, split, 2, (0.5, 0.5), ln)


def case_3d(i: int, split: str = "train", size: int = 48, depth: int = 6, task: str = "ball3d", seed: int = 0,
            two_objects: bool = False) -> RawCase:
    rng = np.random.default_rng([seed, i, 3])
    cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
    vy, vx = rng.uniform(-1.5, 1.5, 2)
    lab = np.zeros((depth, size, size), np.uint8)
    for z in range(depth):
        r = size * (0.12 + 0.08 * np.sin(np.pi * (z + 0.5) / depth))
        lab[z][disk(size, size, cy + vy * z, cx + vx * z, r)] = 1
        if two_objects:
            lab[z][disk(size, size, size * 0.2, size * 0.2, size * 0.08)] = 2
    img = (-200 + 300 * (lab > 0) + rng.normal(0, 20, lab.shape)).astype(np.int16)
    return RawCase(f"{task}_{i}", task, img, lab, split, 3, (2.0, 0.8, 0.8))


def mixed_cases(n_train: int = 2, n_val: int = 1) -> list:
    return ([case_2d(i) for i in range(n_train)] + [case_3d(i) for i in range(n_train)]
            + [case_2d(100 + i, "val") for i in range(n_val)] + [case_3d(100 + i, "val") for i in range(n_val)])


def free_port() -> int:
    """A free TCP port on the loopback, for a gloo rendezvous."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_cpu_group(rank: int, world: int, port: int) -> None:
    """Environment of one torchrun-like CPU rank on the loopback (one thread each)."""
    import os

    import torch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
