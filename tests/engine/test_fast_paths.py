"""The fast memory-attention path (memory keys computed once per entry, `MemoryKVCache`) equals the plain path,
and its cache is never stale: replaced memories, changed weights and freed entries are all noticed."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from medmem.config import get_config
from medmem.engine.volume import VolumeSession
from medmem.model import MaskMemory, ObjectPointer, SAM2Model
from medmem.model.memory_attention import MemoryKVCache

TOL = dict(rtol=1e-5, atol=1e-5)


def _model(name: str = "test_tiny", **over) -> SAM2Model:
    torch.manual_seed(0)
    m = SAM2Model(get_config(name).replace(**over)).eval()
    with torch.no_grad():  # non-zero temporal encodings, so that a wrong slot would show
        m.maskmem_tpos_enc.normal_(0, 0.5)
    return m


def _memories(m: SAM2Model, t_pos, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    s = m.cfg.feat_size // m.cfg.memory_pool
    return [MaskMemory(torch.randn(1, m.mem_dim, s, s, generator=g).bfloat16(),
                       torch.randn(1, m.mem_dim, s, s, generator=g), t) for t in t_pos]


def _ptrs(m: SAM2Model, n: int = 5):
    g = torch.Generator().manual_seed(3)
    return [ObjectPointer(torch.randn(1, m.hidden_dim, generator=g), d) for d in range(1, n + 1)]


def _feats(m: SAM2Model):
    torch.manual_seed(4)
    return m.encode_image(torch.randn(1, 3, m.image_size, m.image_size))


@pytest.mark.parametrize("over", [{}, {"mem_attn_heads": 2}, {"memory_pool": 2}], ids=["1head", "2heads", "pooled"])
@torch.inference_mode()
def test_cached_memory_attention_equals_plain(over):
    m = _model(**over)
    f = _feats(m)
    mems, ptrs = _memories(m, [0, 3, 4, 5, 6]), _ptrs(m)
    cache = MemoryKVCache()
    plain = m.condition_on_memory(f, mems, ptrs, 4)
    fast = m.condition_on_memory(f, mems, ptrs, 4, cache)
    torch.testing.assert_close(fast, plain, **TOL)
    assert (cache.misses, cache.hits, len(cache)) == (5, 0, 5)
    # the next frame: the oldest recent entry (t_pos 3) leaves, the others move one slot back, one new entry
    new = _memories(m, [6], seed=9)[0]
    moved = [mems[0]] + [MaskMemory(mm.features, mm.pos, mm.t_pos - 1) for mm in mems[2:]] + [new]
    torch.testing.assert_close(m.condition_on_memory(f, moved, ptrs, 4, cache),
                               m.condition_on_memory(f, moved, ptrs, 4), **TOL)
    assert (cache.misses, cache.hits) == (6, 4)
    assert len(cache) == 5  # the entry no longer attended to was dropped (max_idle=0)
    # pointers only, and memories without pointers
    torch.testing.assert_close(m.condition_on_memory(f, [], ptrs, 4, cache), m.condition_on_memory(f, [], ptrs, 4),
                               **TOL)
    torch.testing.assert_close(m.condition_on_memory(f, mems, [], 4, cache), m.condition_on_memory(f, mems, [], 4),
                               **TOL)


@torch.inference_mode()
def test_replaced_memory_tensors_are_recomputed():
    """A slice whose memory is re-encoded (a correction) gets new tensors: the cache must not serve the old keys."""
    m = _model()
    f = _feats(m)
    mems = _memories(m, [0, 6])
    cache = MemoryKVCache(max_idle=5)
    m.condition_on_memory(f, mems, [], 1, cache)
    fresh = _memories(m, [0], seed=7)[0]
    swapped = [fresh, mems[1]]
    got = m.condition_on_memory(f, swapped, [], 1, cache)
    torch.testing.assert_close(got, m.condition_on_memory(f, swapped, [], 1), **TOL)
    assert not torch.allclose(got, m.condition_on_memory(f, mems, [], 1), atol=1e-3)  # the swap matters


def test_changed_weights_clear_the_cache():
    m = _model()
    with torch.inference_mode():
        f = _feats(m)
        mems = _memories(m, [0, 5, 6])
        cache = MemoryKVCache(max_idle=5)
        m.condition_on_memory(f, mems, [], 1, cache)
    for p in (m.memory_attention.layers[0].cross_attn_image.k_proj.weight, m.maskmem_tpos_enc):
        with torch.no_grad():
            p.add_(0.05 * torch.randn_like(p))  # an in-place update, as an optimiser or load_state_dict does
        with torch.inference_mode():
            torch.testing.assert_close(m.condition_on_memory(f, mems, [], 1, cache),
                                       m.condition_on_memory(f, mems, [], 1), **TOL)


@torch.inference_mode()
def test_freed_entries_leave_the_cache():
    m = _model()
    f = _feats(m)
    mems = _memories(m, [0, 5, 6])
    cache = MemoryKVCache(max_idle=100)
    m.condition_on_memory(f, mems, [], 1, cache)
    assert len(cache) == 3
    del mems[1:]
    gc.collect()
    assert len(cache) == 1


def _session_logits(model, volume, fast: bool):
    sess = VolumeSession(model, volume, policy="fifo", chunk=4)
    if not fast:
        sess.memory_caches = None
    sess.add_prompt(10, 1, box=[10, 10, 40, 34])
    sess.add_prompt(10, 2, points=[[52, 36]], labels=[1])
    for _ in sess.propagate("both"):
        pass
    sess.add_prompt(13, 1, points=[[20, 20], [5, 5]], labels=[1, 0])  # a correction: slice 13 becomes prompted
    for _ in sess.propagate("both"):
        pass
    out = {(o, s): sess.logits(o, s) for o in (1, 2) for s in range(volume.shape[0])}
    return out, sess


def test_session_fast_path_equals_plain_path(tiny_model, blob_volume):
    fast, sess = _session_logits(tiny_model, blob_volume, True)
    plain, _ = _session_logits(tiny_model, blob_volume, False)
    assert set(sess.memory_caches) == {1, 2} and all(c.hits > 0 for c in sess.memory_caches.values())
    for k in plain:
        torch.testing.assert_close(fast[k], plain[k], rtol=1e-4, atol=1e-4)
    # bounded: each object's cache holds at most what one slice attends to
    n = tiny_model.cfg.num_maskmem + len(sess.objects[1].prompts)
    assert all(len(c) <= n for c in sess.memory_caches.values())


def test_session_without_cache_support_runs_plain(tiny_model, blob_volume):
    """A model whose track_step has no memory_cache argument (e.g. an exported backend) gets the plain path."""

    class NoCache:
        def __init__(self, m):
            self._m = m

        def __getattr__(self, k):
            return getattr(self._m, k)

        def eval(self):
            return self

        def track_step(self, feats, **kw):
            assert "memory_cache" not in kw
            return self._m.track_step(feats, **kw)

    sess = VolumeSession(NoCache(tiny_model), blob_volume[:6], policy="fifo")
    assert sess.memory_caches is None
    sess.add_prompt(2, 1, box=[10, 10, 40, 34])
    assert sum(1 for _ in sess.propagate()) == 6
    assert np.asarray(sess.masks(1)).shape == (6, 48, 64)
