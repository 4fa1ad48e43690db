"""VolumeSession behaviour: directions, policies, corrections, objects, bounded memory, results."""
from __future__ import annotations

import numpy as np
import pytest

from medmem.engine.volume import VolumeSession

BOX = [10, 10, 38, 34]


def run(sess, **kw):
    return list(sess.propagate(**kw))


@pytest.mark.parametrize("policy", ["fifo", "self_sorting", "confidence"])
def test_policies_segment_every_slice_both_directions(tiny_model, blob_volume, policy):
    sess = VolumeSession(tiny_model, blob_volume, policy=policy,
                         policy_kwargs={} if policy == "fifo" else dict(capacity=4, **({"threshold": 0.0} if policy == "confidence" else {"iou_threshold": 0.0})))
    sess.add_prompt(10, 1, box=BOX)
    out = run(sess)
    fwd = [s for s, _ in out][: 20 - 10]
    bwd = [s for s, _ in out][20 - 10:]
    assert fwd == list(range(10, 20)) and bwd == list(range(9, -1, -1))  # the prompted slice once
    assert all(sess.objects[1].results.get(s) is not None for s in range(20))
    assert sess.masks(1).shape == (20, 48, 64)


@pytest.mark.parametrize("direction,expected", [("forward", list(range(7, 20))), ("backward", list(range(7, -1, -1)))])
def test_single_direction(tiny_model, blob_volume, direction, expected):
    sess = VolumeSession(tiny_model, blob_volume)
    sess.add_prompt(7, 1, box=BOX)
    assert [s for s, _ in run(sess, direction=direction)] == expected
    untouched = set(range(20)) - set(expected)
    assert all(sess.objects[1].results.get(s) is None for s in untouched)


def test_correction_reruns_only_the_affected_range(tiny_model, blob_volume):
    sess = VolumeSession(tiny_model, blob_volume)
    sess.add_prompt(4, 1, box=BOX)
    sess.add_prompt(14, 1, box=BOX)
    run(sess)
    before = {s: sess.logits(1, s).clone() for s in range(20)}
    encoded = sess.features.encoded
    sess.add_prompt(9, 1, points=[[24, 22]], labels=[0])  # a correction between two prompted slices
    rerun = [s for s, _ in run(sess)]
    assert sorted(set(rerun)) == list(range(5, 14))  # between the neighbouring prompted slices only
    for s in list(range(0, 5)) + list(range(14, 20)):
        assert (sess.logits(1, s) == before[s]).all()
    assert sess.features.encoded - encoded <= 9 + sess.features.chunk  # no re-encoding of the whole volume
    assert sess.objects[1].results[9].prompted


def test_objects_are_independent_and_can_be_added_later(tiny_model, blob_volume):
    sess = VolumeSession(tiny_model, blob_volume)
    sess.add_prompt(10, 1, box=BOX)
    run(sess)
    first = sess.logits(1, 12).clone()
    sess.add_prompt(10, 2, points=[[52, 36]], labels=[1])  # after propagation started
    out = run(sess)
    assert all(set(m) == {2} for _, m in out)  # only the new object is propagated
    assert (sess.logits(1, 12) == first).all()
    assert all(sess.objects[2].results.get(s) is not None for s in range(20))
    lm = sess.label_map()
    assert lm.dtype == np.uint16 and set(np.unique(lm)) <= {0, 1, 2}
    # overlap resolution: each voxel goes to the object with the larger logit
    l1, l2 = sess.logits(1, 12).numpy(), sess.logits(2, 12).numpy()
    both = (l1 > 0) & (l2 > 0)
    if both.any():
        assert ((lm[12][both] == 1) == (l1[both] >= l2[both])).all()
    sess.remove_object(2)
    assert sess.obj_ids == [1]


def test_confidence_track_and_review_flags(tiny_model, blob_volume):
    sess = VolumeSession(tiny_model, blob_volume)
    sess.add_prompt(10, 1, box=BOX)
    run(sess)
    rows = sess.confidence(1, iou_threshold=1.01)  # every present slice is below an impossible threshold
    assert len(rows) == 20 and all(r["segmented"] for r in rows)
    assert all(r["review"] == r["present"] for r in rows)
    assert rows[10]["prompted"] and not rows[11]["prompted"]


def test_bounded_memory(tiny_model):
    """Cached features and kept memories do not grow with the number of slices."""
    rng = np.random.default_rng(0)
    sizes = {}
    for n in (30, 120):
        vol = rng.random((n, 32, 32)).astype(np.float32)
        sess = VolumeSession(tiny_model, vol, chunk=4)
        sess.add_prompt(0, 1, box=[4, 4, 28, 28])
        peak_cache = peak_mem = 0
        for _ in sess.propagate("forward"):
            peak_cache = max(peak_cache, len(sess.features))
            peak_mem = max(peak_mem, sess.objects[1].policy.num_entries())
        sizes[n] = (peak_cache, peak_mem)
    assert sizes[30] == sizes[120], sizes
    assert sizes[120][1] <= tiny_model.cfg.max_obj_ptrs_in_encoder + 3


@pytest.mark.parametrize("kwargs,match", [
    (dict(slice_idx=25, box=BOX), "outside the volume"),
    (dict(slice_idx=-1, box=BOX), "outside the volume"),
    (dict(slice_idx=3, box=[30, 10, 10, 30]), "< x0"),
    (dict(slice_idx=3, box=[100, 100, 120, 120]), "wholly outside"),
    (dict(slice_idx=3, points=[[1, 1], [2, 2]], labels=[1]), r"2 point\(s\) but 1 label\(s\)"),
    (dict(slice_idx=3, points=[[100, 1]], labels=[1]), "outside"),
    (dict(slice_idx=3), "empty prompt"),
    (dict(slice_idx=3, mask=np.zeros((48, 64), bool)), "empty"),
    (dict(slice_idx=3, mask=np.ones((10, 10), bool)), "slice shape"),
])
def test_bad_prompts(tiny_model, blob_volume, kwargs, match):
    sess = VolumeSession(tiny_model, blob_volume)
    s = kwargs.pop("slice_idx")
    with pytest.raises(ValueError, match=match):
        sess.add_prompt(s, 1, **kwargs)


def test_bad_volumes(tiny_model):
    with pytest.raises(ValueError, match="NaN"):
        VolumeSession(tiny_model, np.full((4, 8, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="empty"):
        VolumeSession(tiny_model, np.zeros((0, 8, 8), np.float32))
    with pytest.raises(ValueError, match="expected slices"):
        VolumeSession(tiny_model, np.zeros((8, 8), np.float32))


def test_propagate_needs_a_prompt(tiny_model, blob_volume):
    with pytest.raises(RuntimeError, match="add a prompt"):
        run(VolumeSession(tiny_model, blob_volume))


def test_mask_prompt_and_rgb_video(tiny_model):
    rng = np.random.default_rng(1)
    video = (rng.random((6, 40, 52, 3)) * 255).astype(np.uint8)
    sess = VolumeSession(tiny_model, video)
    m = np.zeros((40, 52), bool)
    m[10:30, 10:40] = True
    sess.add_prompt(0, 1, mask=m)
    assert [s for s, _ in run(sess)] == list(range(6))  # forward 0..5; the prompted slice is not yielded again


def test_confidence_bank_persists(tiny_model, blob_volume, tmp_path):
    from medmem.memory.policies import ConfidencePolicy

    sess = VolumeSession(tiny_model, blob_volume, policy="confidence", policy_kwargs=dict(capacity=5, threshold=0.0))
    sess.add_prompt(10, 1, box=BOX)
    run(sess)
    bank = sess.objects[1].policy
    assert len(bank.bank.entries) == 5
    path = bank.save(tmp_path / "bank.safetensors")
    loaded = ConfidencePolicy(tiny_model.cfg, capacity=5, frozen=True)
    loaded.load(path)
    assert len(loaded.bank.entries) == 5 and loaded.bank.conf == pytest.approx(bank.bank.conf)
    import torch

    q = bank.bank.keys[0]
    assert bank.retrieve(q) == loaded.retrieve(q)
    torch.testing.assert_close(loaded.bank.entries[0].maskmem_features, bank.bank.entries[0].maskmem_features.float())
