"""Memory policy rules on hand-made entries (no model needed).

Entries carry two independent directions: `key` (retrieval key, the memory-conditioned image
features) and `mem` (the mask-memory features), so each test can tell which one a rule uses.
"""
from __future__ import annotations

import math

import pytest
import torch

from medmem.config import get_config
from medmem.memory.bank import MemoryBank, feature_key, is_empty
from medmem.memory.entry import FrameMemory
from medmem.memory.fifo import closest_cond_frames, select_fifo
from medmem.memory.policies import (ConfidencePolicy, FifoPolicy, SelfSortingPolicy, confidence_of, make_policy,
                                    parse_policy_options)

CFG = get_config("test_tiny")


def mem(angle: float) -> torch.Tensor:
    """(1, 16, 8, 8) mask-memory features whose pooled key has direction `angle` in channels 0/1."""
    v = torch.zeros(1, 16, 8, 8)
    v[:, 0], v[:, 1] = math.cos(angle), math.sin(angle)
    return v


def entry(t, iou=0.9, score=10.0, mem_angle=0.0, empty=False):
    masks = torch.full((1, 1, 32, 32), -5.0 if empty else 5.0)
    return FrameMemory(t, mem(mem_angle), torch.zeros(1, 16, 8, 8), torch.zeros(1, 32), masks,
                       torch.tensor([[score]]), torch.tensor([[iou]]))


def key(angle):
    return torch.tensor([math.cos(angle), math.sin(angle)] + [0.0] * 30)


def test_fifo_selection_rule():
    cond = {0: entry(0)}
    non = {t: entry(t) for t in range(1, 10)}
    mems, ptrs, tmax = select_fifo(9, cond, non, CFG, num_frames=20)
    assert [tp for tp, _ in mems] == [0, 1, 2, 3, 4, 5, 6]
    assert [e.frame_idx for _, e in mems] == [0, 3, 4, 5, 6, 7, 8]  # cond + the 6 previous frames
    assert [td for td, _ in ptrs][:3] == [9, 1, 2] and tmax == 15
    mems_r, _, _ = select_fifo(2, {9: entry(9)}, {t: entry(t) for t in range(3, 9)}, CFG, 20, reverse=True)
    assert [e.frame_idx for _, e in mems_r] == [9, 8, 7, 6, 5, 4, 3]


def test_closest_cond_frames():
    cond = {t: t for t in (0, 5, 10, 20)}
    sel, rest = closest_cond_frames(12, cond, 2)
    assert set(sel) == {10, 20} and set(rest) == {0, 5}


def test_fifo_bounded():
    p = FifoPolicy(CFG)
    p.start_pass(False, 0)
    for t in range(200):
        p.add(entry(t))
    assert p.num_entries() <= CFG.max_obj_ptrs_in_encoder + 2


# ---------------------------------------------------------------- admission (both bank policies)
@pytest.mark.parametrize("cls", [SelfSortingPolicy, ConfidencePolicy])
def test_empty_masks_never_enter(cls):
    p = cls(CFG, capacity=4, k=2)
    p.add(entry(1, iou=0.99, empty=True), key(0.0))      # confident but empty mask
    p.add(entry(2, iou=0.99, score=-3.0), key(0.5))      # object absent
    assert len(p.bank) == 0 and p.counts["rejected_empty"] == 2
    p.add(entry(3, iou=0.99), key(1.0))
    assert len(p.bank) == 1
    assert is_empty(entry(0, empty=True)) and not is_empty(entry(0))


@pytest.mark.parametrize("cls,kw", [(SelfSortingPolicy, {"iou_threshold": 0.5}), (ConfidencePolicy, {"threshold": 0.5})])
def test_threshold_is_relative_to_the_prompted_slices(cls, kw):
    p = cls(CFG, capacity=4, k=2, **kw)
    p.add_conditioning(entry(0, iou=0.4))                # the model's own scale: its IoU on the prompt
    assert p.effective_threshold() == pytest.approx(0.2)
    p.add(entry(1, iou=0.3, mem_angle=0.0), key(0.0))    # 0.3 >= 0.5 x 0.4: admitted
    p.add(entry(2, iou=0.1, mem_angle=1.0), key(1.0))    # below: not admitted
    assert [e.frame_idx for e in p.bank.entries] == [1] and p.counts["rejected_confidence"] == 1
    a = cls(CFG, capacity=4, k=2, relative=False, **kw)
    a.add_conditioning(entry(0, iou=0.4))
    a.add(entry(1, iou=0.3), key(0.0))                   # absolute 0.5: rejected
    assert len(a.bank) == 0


def test_confidence_is_iou_presence_optional():
    e = entry(0, iou=0.9, score=0.0)                     # presence sigmoid(0) = 0.5
    assert confidence_of(e) == pytest.approx(0.9)
    assert confidence_of(e, use_presence=True) == pytest.approx(0.45)


@pytest.mark.parametrize("cls", [SelfSortingPolicy, ConfidencePolicy])
def test_prompted_slices_do_not_crowd_the_bank_out(cls):
    """7 prompted slices (CVPR 2025: box + 5 clicks + ...) and the bank still gets its k slots."""
    p = cls(CFG, capacity=8, k=3, iou_threshold=0.0) if cls is SelfSortingPolicy else cls(CFG, capacity=8, k=3)
    for t in range(0, 14, 2):
        p.add_conditioning(entry(t))
    p.start_pass(False, 14)
    for t, a in zip(range(20, 25), (0.0, 0.7, 1.4, 2.1, 2.8)):
        p.add(entry(t, mem_angle=a), key(a))
    mems, ptrs, _ = p.select(30, 40, False, key(0.0))
    cond = [e for _, e in mems if e.is_cond]
    bank = [e for tp, e in mems if tp == 0 and not e.is_cond]
    assert len(cond) == 7 and len(bank) == 3 and p.last_retrieved == 3
    assert sum(1 for td, e in ptrs if td == 0 and not e.is_cond) == 3


def test_confidence_attends_to_recent_slices_and_bank():
    """Inference as in training: SAM 2's recent-frame memories (t_pos 1..6) + k bank entries (t_pos 0)."""
    p = ConfidencePolicy(CFG, capacity=20, k=2)
    p.add_conditioning(entry(0))
    p.start_pass(False, 0)
    for t in range(1, 10):
        p.add(entry(t, mem_angle=0.3 * t), key(0.3 * t))
    mems, ptrs, _ = p.select(10, 20, False, key(0.3))
    recent = [e.frame_idx for tp, e in mems if tp > 0]
    assert recent == [4, 5, 6, 7, 8, 9]                  # the 6 previous slices, as fifo
    bank = [e.frame_idx for tp, e in mems if tp == 0 and not e.is_cond]
    assert len(bank) == 2 and not set(bank) & set(recent)  # k entries besides the recent ones
    assert bank == [1, 2]                                # most similar to angle 0.3, then the next


def test_confidence_retrieval_score_clamps_similarity_and_adds_iou():
    p = ConfidencePolicy(CFG, capacity=3, k=2, conf_weight=1.0)
    p.offer(entry(0, mem_angle=0.0), key(0.0), 0.1)
    p.offer(entry(1, mem_angle=1.0), key(1.5), 0.7)
    p.offer(entry(2, mem_angle=2.0), key(1.5 + math.pi), 0.9)
    # scores for query 1.5: 0.07+0.1, 1+0.7, max(-1, 0)+0.9 → [1, 2]; without the clamp → [1, 0]
    assert p.retrieve(key(1.5)) == [1, 2]
    s = p.scores(key(1.5))
    assert s.tolist() == pytest.approx([math.cos(1.5) + 0.1, 1.7, 0.9], abs=1e-5)


def test_confidence_replaces_most_similar_mask_memory_only_if_more_confident():
    p = ConfidencePolicy(CFG, capacity=2, k=1)
    p.offer(entry(1, mem_angle=0.0), key(2.0), 0.6)      # mask memory like the newcomer's, key unlike
    p.offer(entry(2, mem_angle=2.0), key(0.1), 0.5)      # key like the newcomer's, mask memory unlike
    assert not p.offer(entry(3, mem_angle=0.1), key(0.1), 0.55)   # its most similar *mask memory* is 0.6
    assert p.offer(entry(4, mem_angle=0.1), key(0.1), 0.9)        # replaces entry 1, not entry 2
    assert sorted(e.frame_idx for e in p.bank.entries) == [2, 4]
    assert sorted(round(c, 2) for c in p.bank.conf) == [0.5, 0.9]


# ---------------------------------------------------------------- self-sorting
def test_self_sorting_samples_by_default_with_softmax_probabilities():
    p = SelfSortingPolicy(CFG, capacity=3, k=1, iou_threshold=0.0)
    assert p.sample
    for t, a in enumerate((0.0, 1.5, 3.0)):
        p.add(entry(t, mem_angle=a), key(a))
    q = key(0.0)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(3000):
        counts[p.retrieve(q, g)[0]] += 1
    probs = torch.softmax(torch.tensor([1.0, math.cos(1.5), math.cos(3.0)]), 0)
    assert torch.allclose(counts / 3000, probs, atol=0.03), (counts / 3000, probs)
    # deterministic for a seed, and the seed matters
    a = [p.retrieve(q, torch.Generator().manual_seed(5)) for _ in range(20)]
    b = [p.retrieve(q, torch.Generator().manual_seed(5)) for _ in range(20)]
    assert a == b
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    assert [p.retrieve(q, g1) for _ in range(30)] != [p.retrieve(q, g2) for _ in range(30)]


def test_self_sorting_paper_rule_keeps_confident_and_diverse_mask_memories():
    p = SelfSortingPolicy(CFG, capacity=2, k=1, iou_threshold=0.5, relative=False, sample=False)
    p.add(entry(0, iou=0.2), key(0.0))  # not confident: not admitted
    assert len(p.bank) == 0
    # mask memories: two near-duplicates and one opposite; retrieval keys say the opposite
    p.add(entry(1, mem_angle=0.0), key(0.0))
    p.add(entry(2, mem_angle=0.02), key(math.pi))
    p.add(entry(3, mem_angle=math.pi), key(0.01))
    frames = sorted(e.frame_idx for e in p.bank.entries)
    assert len(frames) == 2 and 3 in frames and frames[0] in (1, 2)  # a mask-memory duplicate went
    q = key(2.0)
    sims = [float(k @ q) for k in p.bank.keys]
    assert p.retrieve(q) == [max(range(2), key=lambda i: sims[i])]  # sample=False: the most similar


def test_self_sorting_released_rule_on_mask_memory_features():
    p = SelfSortingPolicy(CFG, capacity=2, rule="released")
    p.add(entry(0, iou=0.9, mem_angle=0.0), key(2.0))
    p.add(entry(1, iou=0.9, mem_angle=0.1), key(0.0))
    # diverse in mask memory (keys say it duplicates entry 1): replaces one of the similar pair
    p.add(entry(2, iou=0.9, mem_angle=2.0), key(0.0))
    assert 2 in [e.frame_idx for e in p.bank.entries]
    # a mask-memory duplicate is not admitted, whatever its key
    p.add(entry(3, iou=0.99, mem_angle=2.0), key(3.0))
    assert 3 not in [e.frame_idx for e in p.bank.entries]
    # diverse but not confident enough (0.1 < IoU_j - 0.1)
    p.add(entry(4, iou=0.1, mem_angle=-2.0), key(3.0))
    assert 4 not in [e.frame_idx for e in p.bank.entries]


# ---------------------------------------------------------------- options and persistence
def test_policy_options_parse_and_reject():
    o = parse_policy_options(["k=8", "rule=released", "sample=false", "temperature=0.5", "share_bank=yes"],
                             "self_sorting")
    assert o == {"k": 8, "rule": "released", "sample": False, "temperature": 0.5, "share_bank": True}
    assert parse_policy_options(["recent=2", "bank=b.safetensors"], "confidence") == {"recent": 2,
                                                                                      "bank": "b.safetensors"}
    with pytest.raises(ValueError, match="unknown option 'kk'.*options: capacity"):
        parse_policy_options(["kk=1"], "confidence")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_policy_options(["k"], "confidence")
    with pytest.raises(ValueError, match="unknown option"):
        parse_policy_options(["bank=x"], "fifo")
    with pytest.raises(ValueError, match="policy option k"):
        parse_policy_options(["k=many"], "confidence")


def test_make_policy_errors():
    with pytest.raises(ValueError, match="unknown memory policy"):
        make_policy("lifo", CFG)
    with pytest.raises(ValueError, match="paper"):
        SelfSortingPolicy(CFG, rule="other")
    with pytest.raises(ValueError, match="unknown option"):
        make_policy("confidence", CFG, iou_threshold=0.3)


def test_bank_refuses_another_model(tmp_path):
    b = MemoryBank(capacity=4, grid=2)
    b.append(entry(0), feature_key(torch.randn(1, 32, 8, 8), 2)[0], 0.7)
    path = b.save(tmp_path / "b.safetensors", CFG, fingerprint="abc")
    ok = MemoryBank.load(path, CFG, fingerprint="abc")
    assert len(ok) == 1 and ok.conf == pytest.approx([0.7]) and ok.grid == 2
    torch.testing.assert_close(ok.mem_keys[0], b.mem_keys[0])
    with pytest.raises(ValueError, match="not made by this model.*config"):
        MemoryBank.load(path, get_config("test_tiny_sam20"))
    with pytest.raises(ValueError, match="fingerprint"):
        MemoryBank.load(path, CFG, fingerprint="other")
    with pytest.raises(ValueError, match="key grid"):
        MemoryBank.load(path, CFG, grid=4)
