"""DDP on CPU: 2 processes, gloo backend, joined through torchrun-style environment variables."""
import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
from train_helpers import free_port  # noqa: E402


def _worker(rank: int, world: int, port: int, out: str) -> None:
    sys.path.insert(0, HERE)
    from train_helpers import join_cpu_group, mixed_cases

    join_cpu_group(rank, world, port)

    from medmem.train import TrainConfig, Trainer

    cfg = TrainConfig(model="test_tiny", out=out, steps=3, batch_size=1, clip_len=2, warmup=1, lr=1e-3, progress=False, save_every=0,
                      device="cpu", val_cases=1)
    tr = Trainer(cfg, mixed_cases())
    assert tr.dist.world == 2 and tr.dist.rank == rank and dist.get_backend() == "gloo"
    init = {k: v.clone() for k, v in tr.model.state_dict().items()}
    refs = [(r.case, r.obj) for s in range(3) for r in tr._refs(s, 0)]
    res = tr.fit()
    torch.save({"init": init, "final": tr.model.state_dict(), "refs": refs, "last": res.last,
                "weights": str(res.weights) if res.weights else None}, os.path.join(out, f"rank{rank}.pt"))
    tr.close()


@pytest.mark.timeout(240)
def test_ddp_two_cpu_ranks_agree(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(r0["init"][k], r1["init"][k]) for k in r0["init"])
    assert all(torch.equal(r0["final"][k], r1["final"][k]) for k in r0["final"])       # ranks agree
    assert any(not torch.equal(r0["init"][k], r0["final"][k]) for k in r0["final"])    # and trained
    assert r0["refs"] != r1["refs"]                                                     # on different samples
    assert r0["last"]["loss"] == r1["last"]["loss"] and r0["last"]["objects"] == 2      # reduced over ranks
    assert r0["weights"] and r1["weights"] is None                                     # rank 0 writes
    assert (tmp_path / "checkpoint.pt").is_file()
    logs = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len([ln for ln in logs if '"loss"' in ln]) == 3                              # logged once
