"""Sessions of one shape: volumes, videos and image sets share verbs, result rows and defaults."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from medmem.engine.image_set import ImageSetSession
from medmem.engine.volume import VolumeSession
from medmem.io import Volume
from medmem.memory.entry import FrameMemory

BOX = [10, 11, 37, 33]


def test_both_directions_yield_every_slice_exactly_once(tiny_model, blob_volume):
    sess = VolumeSession(tiny_model, blob_volume)
    sess.add_prompt(10, 1, box=BOX)
    got = [s for s, _ in sess.propagate("both")]
    assert sorted(got) == list(range(20)), got          # each slice once, the prompted one included
    assert got[0] == 10
    # two objects prompted on different slices: a slice comes again only with a result it did not have
    sess = VolumeSession(tiny_model, blob_volume)
    sess.add_prompt(10, 1, box=BOX)
    sess.add_prompt(12, 2, box=[46, 30, 58, 42])
    pairs = [(s, o) for s, masks in sess.propagate("both") for o in masks]
    assert (12, 2) in pairs and pairs.count((10, 1)) == 1 and pairs.count((12, 2)) == 1
    assert sorted({s for s, _ in pairs}) == list(range(20))


def test_volume_and_image_set_have_the_same_verbs_and_rows(tiny_model, blob_volume):
    img = (blob_volume[10] * 200).astype(np.float32)
    vs = VolumeSession(tiny_model, blob_volume, policy="self_sorting", policy_options=dict(iou_threshold=0.0))
    iset = ImageSetSession(tiny_model, [img, img[::-1].copy()], policy_options=dict(iou_threshold=0.0))
    for name in ("add_prompt", "propagate", "mask", "logits", "confidence", "memory_stats"):
        assert callable(getattr(vs, name)) and callable(getattr(iset, name)), name
    for s in (vs, iset):  # obj_id defaults to 1 in both
        assert inspect.signature(s.add_prompt).parameters["obj_id"].default == 1
        s.add_prompt(0 if s is iset else 10, box=BOX)
        list(s.propagate())
    vrow = next(r for r in vs.confidence(1) if r["slice"] == 11)
    irow = iset.confidence(1)[1]
    assert set(vrow) - {"slice"} == set(irow) - {"image"}, (vrow, irow)
    assert iset.confidence(1)[0]["prompted"] and not irow["prompted"]


def test_a_named_axis_is_honoured_for_a_plain_array(tiny_model, blob_volume):
    arr = blob_volume
    a = VolumeSession(tiny_model, arr, axis="coronal")
    b = VolumeSession(tiny_model, Volume(arr), axis="coronal")
    assert a.num_slices == arr.shape[1] == b.num_slices and a.slice_hw == b.slice_hw
    with pytest.raises(ValueError, match="axis"):
        VolumeSession(tiny_model, np.zeros((4, 8, 8, 3), np.uint8), axis="coronal")


def test_frame_memory_from_step_keeps_the_kept_masks_iou(tiny_model, blob_volume):
    sess = VolumeSession(tiny_model, blob_volume)
    sess.add_prompt(10, 1, box=BOX)
    e = sess.objects[1].pending[10]
    assert isinstance(e, FrameMemory) and e.is_cond and e.frame_idx == 10
    assert float(e.iou) == pytest.approx(sess.objects[1].results[10].iou, abs=1e-3)


def test_an_empty_mask_is_never_reported_present():
    import torch

    from medmem.engine.volume import SliceResult

    empty = SliceResult(torch.full((1, 1, 8, 8), -5.0, dtype=torch.float16), iou=0.9, object_score=3.0)
    assert not empty.row()["present"] and not empty.row()["review"]
    lit = torch.full((1, 1, 8, 8), -5.0, dtype=torch.float16)
    lit[..., 2, 3] = 4.0
    assert SliceResult(lit, iou=0.2, object_score=3.0).row()["present"]
    assert not SliceResult(lit, iou=0.2, object_score=-1.0).row()["present"]
