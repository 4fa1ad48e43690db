"""One-Prompt Segmentation over an unordered image set."""
from __future__ import annotations

import numpy as np
import pytest

from medmem.engine.image_set import ImageSetSession


def images(n=5):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        h, w = 40 + 4 * i, 56 - 2 * i
        im = (rng.random((h, w)) * 40).astype(np.uint8)
        im[10:30, 12:40] += 150
        out.append(im)
    return out


@pytest.mark.parametrize("policy", ["self_sorting", "confidence"])
def test_one_prompt_segments_every_image(tiny_model, policy):
    kw = dict(capacity=3, iou_threshold=0.0) if policy == "self_sorting" else dict(capacity=3, threshold=0.0)
    ims = images()
    sess = ImageSetSession(tiny_model, ims, policy=policy, policy_kwargs=kw)
    sess.add_prompt(0, 1, box=[12, 10, 40, 30])
    res = dict(sess.propagate())
    assert sorted(res) == list(range(5))
    for i, m in res.items():
        assert m[1].shape == ims[i].shape
    assert 1 <= len(sess.policies[1].bank.entries) <= 3
    assert [r["prompted"] for r in sess.confidence(1)] == [True, False, False, False, False]


@pytest.mark.parametrize("policy", ["self_sorting", "confidence"])
def test_results_do_not_depend_on_the_order_asked(tiny_model, policy):
    """Bank updates and (self_sorting) sampled retrieval on: still the same result for any order."""
    ims = images(6)
    kw = dict(capacity=2, k=1, seed=7) if policy == "self_sorting" else dict(capacity=2, k=1)
    res = []
    for order in ([0, 1, 3, 4, 5], [5, 3, 1, 0, 4]):
        s = ImageSetSession(tiny_model, ims, policy=policy, policy_options=kw)
        s.add_prompt(2, 1, box=[12, 10, 40, 30])
        out = dict(s.propagate(order))
        assert [i for i, _ in s.propagate(order[:0])] == []
        res.append({i: s.logits(1, i) for i in order})
        assert len(s.policies[1].bank) == 2  # the bank was used
    for i in res[0]:
        assert (res[0][i] == res[1][i]).all(), i


def test_every_prompt_pointer_reaches_every_image(tiny_model, monkeypatch):
    """Prompts on images 2 and 4: image 0 (before both) attends to both prompts' memories and pointers."""
    seen = []
    orig = tiny_model.track_step

    def track_step(feats, **kw):
        seen.append((len(kw.get("memories", ())), [p.t_diff for p in kw.get("obj_ptrs", ())]))
        return orig(feats, **kw)

    monkeypatch.setattr(tiny_model, "track_step", track_step)
    s = ImageSetSession(tiny_model, images(), update_bank=False)
    s.add_prompt(2, 1, box=[12, 10, 40, 30])
    s.add_prompt(4, 1, box=[12, 10, 40, 30])
    seen.clear()
    list(s.propagate([0]))
    assert seen == [(2, [0, 0])]


def test_order_does_not_matter_without_bank_updates(tiny_model):
    ims = images()
    a = ImageSetSession(tiny_model, ims, update_bank=False)
    a.add_prompt(0, 1, box=[12, 10, 40, 30])
    ra = dict(a.propagate([1, 2, 3, 4]))
    b = ImageSetSession(tiny_model, ims, update_bank=False)
    b.add_prompt(0, 1, box=[12, 10, 40, 30])
    rb = dict(b.propagate([4, 3, 2, 1]))
    for i in (1, 2, 3, 4):
        np.testing.assert_array_equal(ra[i][1], rb[i][1])


def test_image_set_errors(tiny_model):
    with pytest.raises(ValueError, match="no order"):
        ImageSetSession(tiny_model, images(), policy="fifo")
    with pytest.raises(ValueError, match="empty"):
        ImageSetSession(tiny_model, [])
    s = ImageSetSession(tiny_model, images())
    with pytest.raises(RuntimeError, match="prompt"):
        list(s.propagate())
    with pytest.raises(ValueError, match="outside the set"):
        s.add_prompt(9, 1, box=[0, 0, 5, 5])
