"""Distributed data parallel under ``torchrun``: process group from the environment, device per
rank, DDP wrapping, reductions for logging. Single-process runs pass through unchanged.

    torchrun --nproc_per_node 4 -m medmem.cli train --data ... --config medmem_small_256
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m medmem.cli train ...
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Dict, Optional

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this module created the process group (and destroys it)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(pref: Optional[str], local_rank: int, distributed: bool) -> torch.device:
    if pref is not None:
        dev = torch.device(pref)
        if dev.type == "cuda" and distributed and dev.index is None:
            dev = torch.device("cuda", local_rank)
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank if distributed else torch.cuda.current_device())
    from ..build import default_device

    return default_device(None)


def init_distributed(device: Optional[str] = None) -> DistInfo:
    """Join the process group described by torchrun's env (WORLD_SIZE > 1): NCCL on CUDA, gloo
    otherwise. Returns this process's rank and device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=_pick_device(device, 0, False))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = _pick_device(device, local_rank, True)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        # generous timeout: the other ranks wait at a barrier while rank 0 validates
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(minutes=60))
        owns = True
    return DistInfo(world, rank, local_rank, dev, owns)


def wrap(module: nn.Module, info: DistInfo, find_unused_parameters: bool = True) -> nn.Module:
    """DDP around the training forward module (parameters are broadcast from rank 0)."""
    if not info.enabled:
        return module
    import warnings

    from torch.nn.parallel import DistributedDataParallel as DDP

    # CPU depthwise-conv grads come back with other strides than DDP's buckets: harmless, noisy
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(module, device_ids=ids, output_device=ids[0] if ids else None,
               find_unused_parameters=find_unused_parameters)


def sum_stats(stats: Dict[str, torch.Tensor], info: DistInfo) -> Dict[str, float]:
    """Sum scalar statistics over ranks → floats (one all-reduce)."""
    keys = sorted(stats)
    v = torch.stack([stats[k].detach().float().reshape(()).to(info.device) for k in keys])
    if info.enabled:
        dist.all_reduce(v)
    return dict(zip(keys, v.cpu().tolist()))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()
