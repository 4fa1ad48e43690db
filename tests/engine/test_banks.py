"""Bank policies inside VolumeSession: they fill, attend, tell, share, persist and refuse other models."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import medmem
from medmem.engine.volume import VolumeSession

BOX = [10, 10, 38, 34]


def run(sess, **kw):
    return list(sess.propagate(**kw))


class Recorder:
    """Wraps model.track_step to record how many memories / pointers each call got."""

    def __init__(self, model, monkeypatch):
        self.calls = []
        orig = model.track_step

        def track_step(feats, **kw):
            self.calls.append((len(kw.get("memories", ())), [m.t_pos for m in kw.get("memories", ())],
                               len(kw.get("obj_ptrs", ()))))
            return orig(feats, **kw)

        monkeypatch.setattr(model, "track_step", track_step)


@pytest.mark.parametrize("policy", ["self_sorting", "confidence"])
def test_bank_fills_with_defaults_and_every_slice_attends_to_it(tiny_model, blob_volume, policy, monkeypatch):
    rec = Recorder(tiny_model, monkeypatch)
    sess = VolumeSession(tiny_model, blob_volume, policy=policy, policy_options=dict(k=2))
    sess.add_prompt(10, 1, box=BOX)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bank is not empty: no warning
        run(sess)
    st = sess.memory_stats(1)
    assert st["bank_entries"] > 0
    rows = sess.confidence(1)
    tracked = [r for r in rows if not r["prompted"]]
    assert all("bank_entries" in r and "retrieved" in r for r in tracked)
    # going backward the bank holds the forward slices: every slice gets its k = 2 entries
    assert all(r["retrieved"] == 2 for r in rows[:10])
    bank_slots = [tp.count(0) - 1 for n, tp, _ in rec.calls[1:]]  # t_pos 0 = prompt + bank entries
    assert max(bank_slots) == 2
    assert bank_slots[-10:] == [2] * 10
    if policy == "confidence":  # recent slices + bank: on slice 19, t_pos 1..6 = slices 13..18
        n, tps, _ = rec.calls[9]
        assert sorted(t for t in tps if t > 0) == [1, 2, 3, 4, 5, 6] and tps.count(0) == 3
    else:  # self_sorting: the previous slice only (recent = 1)
        n, tps, _ = rec.calls[9]
        assert [t for t in tps if t > 0] == [6] and tps.count(0) == 3


def test_warning_when_the_bank_stays_empty(tiny_model, blob_volume):
    sess = VolumeSession(tiny_model, blob_volume, policy="confidence",
                         policy_options=dict(threshold=2.0, relative=False))
    sess.add_prompt(10, 1, box=BOX)
    with pytest.warns(UserWarning, match="bank is empty after propagation"):
        run(sess)
    assert sess.memory_stats(1)["bank_entries"] == 0
    assert sess.memory_stats(1)["rejected_confidence"] == 19


def test_self_sorting_is_deterministic_for_a_seed(tiny_model, blob_volume):
    out = []
    for seed in (3, 3):
        s = VolumeSession(tiny_model, blob_volume, policy="self_sorting", policy_options=dict(seed=seed, k=2))
        s.add_prompt(10, 1, box=BOX)
        run(s)
        out.append(torch.stack([s.logits(1, i) for i in range(20)]))
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)


def test_shared_bank_saved_loaded_and_refused_by_another_model(tiny_model, blob_volume, tmp_path):
    path = tmp_path / "bank.safetensors"
    sess = VolumeSession(tiny_model, blob_volume, policy="confidence",
                         policy_options=dict(capacity=6, share_bank=True, save_bank=str(path)))
    sess.add_prompt(10, 1, box=BOX)
    sess.add_prompt(10, 2, points=[[52, 36]], labels=[1])
    run(sess)
    p1, p2 = sess.objects[1].policy, sess.objects[2].policy
    assert p1.bank is p2.bank is sess.bank and 0 < len(sess.bank) <= 6
    assert path.exists()
    # another volume starts from the saved bank (retrieval works from its first tracked slice)
    other = VolumeSession(tiny_model, blob_volume[::-1].copy(), policy="confidence",
                          policy_options=dict(bank=str(path), frozen=True))
    other.add_prompt(5, 1, box=BOX)
    run(other, direction="forward")
    assert len(other.bank) == len(sess.bank)
    assert other.confidence(1)[6]["retrieved"] == min(4, len(sess.bank))
    torch.testing.assert_close(other.bank.entries[0].maskmem_features,
                               sess.bank.entries[0].maskmem_features.float())
    # same config, other weights: refused
    torch.manual_seed(1)
    retrained = medmem.build_model("test_tiny", device="cpu")
    with pytest.raises(ValueError, match="not made by this model"):
        VolumeSession(retrained, blob_volume, policy="confidence", policy_options=dict(bank=str(path)))
    with pytest.raises(ValueError, match="bank policy"):
        VolumeSession(tiny_model, blob_volume, policy="fifo", policy_options=dict(share_bank=True))


def test_self_sorting_on_a_video(tiny_model):
    rng = np.random.default_rng(1)
    video = (rng.random((8, 40, 52, 3)) * 60).astype(np.uint8)
    video[:, 10:30, 10:40] += 150
    sess = VolumeSession(tiny_model, video, policy="self_sorting", policy_options=dict(k=2, iou_threshold=0.0))
    sess.add_prompt(0, 1, box=[10, 10, 40, 30])
    run(sess, direction="forward")
    rows = sess.confidence(1)
    assert sess.memory_stats(1)["bank_entries"] >= 2 and rows[7]["retrieved"] == 2


def test_segment_report_carries_bank_fill_and_retrievals(tiny_model, blob_volume):
    from medmem.engine.pipeline import segment_volume
    from medmem.io.prompts import BoxPrompt, ObjectPrompts

    objs = [ObjectPrompts(id=1, prompts=[BoxPrompt(slice=10, box=tuple(BOX))])]
    res = segment_volume(tiny_model, blob_volume, objs, policy="confidence", direction="forward",
                         policy_kwargs=dict(k=2))
    rows, sess = res.confidence(1), res.session
    # slice 19 retrieves from slices 11..18, 6 of them its recent slices: the other 2 fill its k = 2 slots
    assert rows[19]["bank_entries"] == sess.confidence(1)[19]["bank_entries"] == 9 and rows[19]["retrieved"] == 2


def test_fifo_reports_no_bank(tiny_model, blob_volume):
    sess = VolumeSession(tiny_model, blob_volume)
    sess.add_prompt(10, 1, box=BOX)
    run(sess, direction="forward")
    assert "retrieved" not in sess.confidence(1)[12]
    assert sess.memory_stats(1)["policy"] == "fifo"
