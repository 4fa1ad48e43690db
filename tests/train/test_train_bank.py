"""The training bank: keys, empty predictions, and DDP ranks gathering their entries before saving."""
import os

import pytest
import torch
import torch.multiprocessing as mp

from medmem.config import get_config
from medmem.memory.bank import MemoryBank
from medmem.train.bank import TrainingBank
from train_helpers import free_port, join_cpu_group

CFG = get_config("test_tiny")
FS = CFG.image_size // 16


def _cands(seed: int, n: int, iou: float, obj: float = 5.0, key_feats=None):
    g = torch.Generator().manual_seed(seed)
    b = n
    return TrainingBank.candidates(torch.randn(b, CFG.hidden_dim, FS, FS, generator=g),
                                   torch.randn(b, CFG.mem_dim, FS, FS, generator=g),
                                   torch.randn(b, CFG.mem_dim, FS, FS, generator=g),
                                   torch.randn(b, CFG.hidden_dim, generator=g), torch.full((b, 1), obj),
                                   torch.full((b, 1), iou), key_feats=key_feats)


def test_empty_predictions_never_enter_and_keys_follow_key_feats():
    bank = TrainingBank(CFG, capacity=4, k=2)
    assert bank.offer_all(_cands(0, 2, 0.9, obj=-1.0)) == 0  # absent object: empty prediction
    kf = torch.randn(2, CFG.hidden_dim, FS, FS)
    cands = _cands(1, 2, 0.9, key_feats=kf)
    assert bank.offer_all(cands) == 2
    from medmem.memory.bank import feature_key

    torch.testing.assert_close(bank.policy.bank.keys[0], feature_key(kf, bank.grid)[0])


def test_eval_policy_retrieves_what_the_bank_retrieves_and_stays_frozen():
    """Validation's session policy attends to the same k entries, in the same order, as training's retrieve."""
    from medmem.memory.bank import feature_key

    bank = TrainingBank(CFG, capacity=8, k=3)
    for seed, iou in enumerate((0.9, 0.5, 0.7, 0.95)):
        bank.offer_all(_cands(seed, 2, iou))
    query = torch.randn(1, CFG.hidden_dim, FS, FS, generator=torch.Generator().manual_seed(9))
    mems, ptrs = bank.retrieve(query)
    pol = bank.eval_policy()
    sel_m, sel_p, _ = pol.select(0, 1, query_key=feature_key(query, bank.grid)[0])
    assert len(sel_m) == len(mems) == 3 and all(tp == 0 for tp, _ in sel_m)
    for (_, e), m, (_, pe), p in zip(sel_m, mems, sel_p, ptrs):
        assert torch.equal(e.maskmem_features, m.features) and torch.equal(pe.obj_ptr, p.ptr)
    entries = list(bank.policy.bank.entries)
    pol.add(_cands(20, 1, 0.99)[0][0], _cands(20, 1, 0.99)[0][1])  # frozen: offers never reach the bank
    assert bank.policy.bank.entries == entries and pol.bank is bank.policy.bank


def _worker(rank: int, world: int, port: int, out: str) -> None:
    join_cpu_group(rank, world, port)
    from medmem.train import ddp

    info = ddp.init_distributed("cpu")
    bank = TrainingBank(CFG, capacity=6, k=2)
    bank.offer_all(_cands(10 + rank, 3, 0.5 + 0.1 * rank))   # each rank sees other samples
    path = bank.save(os.path.join(out, "bank.safetensors"), info)
    torch.save({"conf": bank.policy.bank.conf, "saved": path is not None}, os.path.join(out, f"r{rank}.pt"))
    ddp.cleanup(info)


@pytest.mark.timeout(240)
def test_ddp_ranks_gather_their_entries_before_saving(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt") for r in (0, 1))
    assert r0["saved"] and not r1["saved"]                  # rank 0 writes
    assert r0["conf"] == r1["conf"]                         # every rank holds the merged bank
    saved = MemoryBank.load(tmp_path / "bank.safetensors", CFG)
    assert sorted(round(c, 2) for c in saved.conf) == [0.5] * 3 + [0.6] * 3   # both ranks' entries
