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
    res = dict(sess.segment())
    assert sorted(res) == list(range(5))
    for i, m in res.items():
        assert m[1].shape == ims[i].shape
    assert 1 <= len(sess.policies[1].bank.entries) <= 3
    assert [r["prompted"] for r in sess.scores(1)] == [True, False, False, False, False]


def test_order_does_not_matter_without_bank_updates(tiny_model):
    ims = images()
    a = ImageSetSession(tiny_model, ims, update_bank=False)
    a.add_prompt(0, 1, box=[12, 10, 40, 30])
    ra = dict(a.segment([1, 2, 3, 4]))
    b = ImageSetSession(tiny_model, ims, update_bank=False)
    b.add_prompt(0, 1, box=[12, 10, 40, 30])
    rb = dict(b.segment([4, 3, 2, 1]))
    for i in (1, 2, 3, 4):
        np.testing.assert_array_equal(ra[i][1], rb[i][1])


def test_image_set_errors(tiny_model):
    with pytest.raises(ValueError, match="no order"):
        ImageSetSession(tiny_model, images(), policy="fifo")
    with pytest.raises(ValueError, match="empty"):
        ImageSetSession(tiny_model, [])
    s = ImageSetSession(tiny_model, images())
    with pytest.raises(RuntimeError, match="prompt"):
        list(s.segment())
    with pytest.raises(ValueError, match="outside the set"):
        s.add_prompt(9, 1, box=[0, 0, 5, 5])
