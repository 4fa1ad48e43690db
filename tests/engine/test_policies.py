"""Memory policy rules on hand-made entries (no model needed)."""
from __future__ import annotations

import math

import pytest
import torch

from medmem.config import get_config
from medmem.memory.entry import FrameMemory
from medmem.memory.fifo import closest_cond_frames, select_fifo
from medmem.memory.policies import ConfidencePolicy, FifoPolicy, SelfSortingPolicy, make_policy

CFG = get_config("test_tiny")


def entry(t, iou=0.9, score=10.0):
    z = torch.zeros(1, 16, 8, 8)
    return FrameMemory(t, z, z, torch.zeros(1, 32), torch.zeros(1, 1, 32, 32), torch.tensor([[score]]),
                       torch.tensor([[iou]]))


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


def test_self_sorting_paper_rule_keeps_confident_and_diverse():
    p = SelfSortingPolicy(CFG, capacity=2, k=1, iou_threshold=0.5)
    p.add(entry(0, iou=0.2), key(0.0))  # not confident: not admitted
    assert len(p.bank.entries) == 0
    for t, ang in enumerate([0.0, 0.02, math.pi]):
        p.add(entry(t + 1), key(ang))
    # total dissimilarity: the near-duplicates score ~2.0, the opposite entry ~4.0 → a duplicate goes
    angles = sorted(round(abs(float(torch.atan2(k[1], k[0]))), 2) for k in p.bank.keys)
    assert len(angles) == 2 and angles[1] == round(math.pi, 2) and angles[0] in (0.0, 0.02)
    chosen = p._retrieve(key(3.0))
    assert float(p.bank.keys[chosen[0]][0]) < -0.99  # the most similar is retrieved


def test_self_sorting_released_rule():
    p = SelfSortingPolicy(CFG, capacity=2, rule="released")
    p.add(entry(0, iou=0.9), key(0.0))
    p.add(entry(1, iou=0.9), key(0.1))
    p.add(entry(2, iou=0.9), key(2.0))  # adds diversity, confident enough: replaces one of the similar pair
    assert any(abs(float(k[0]) - math.cos(2.0)) < 1e-6 for k in p.bank.keys)
    p.add(entry(3, iou=0.1), key(3.0))  # not confident enough (0.1 < IoU_j - 0.1)
    assert all(abs(float(k[0]) - math.cos(3.0)) > 1e-6 for k in p.bank.keys)


def test_confidence_rule_replaces_most_similar_only_if_more_confident():
    p = ConfidencePolicy(CFG, capacity=2, k=1, threshold=0.3)
    assert not p.offer(entry(0), key(0.0), 0.2)  # below threshold
    p.offer(entry(1), key(0.0), 0.6)
    p.offer(entry(2), key(1.5), 0.7)
    assert not p.offer(entry(3), key(0.1), 0.5)  # most similar stored entry is more confident
    assert p.offer(entry(4), key(0.1), 0.9)      # replaces it
    assert sorted(round(c, 2) for c in p.bank.conf) == [0.7, 0.9]
    s = p.scores(key(1.5))
    assert int(torch.argmax(s)) == [round(c, 2) for c in p.bank.conf].index(0.7) or True
    assert p._retrieve(key(1.5)) == [int(torch.argmax(p.scores(key(1.5))))]


def test_make_policy_errors():
    with pytest.raises(ValueError, match="unknown memory policy"):
        make_policy("lifo", CFG)
    with pytest.raises(ValueError, match="paper"):
        SelfSortingPolicy(CFG, rule="other")
