"""Multi-orientation propagation: 3 axes × 2 directions, each seeded from the box, spacing-aware, fused."""
from __future__ import annotations

import numpy as np
import pytest

from medmem.engine import multi_axis
from medmem.engine.multi_axis import box3d_ranges, propagate_multi_axis, segment_multi_axis
from medmem.engine.volume import VolumeSession


def vol():
    z, y, x = np.mgrid[:12, :20, :24]
    v = np.zeros((12, 20, 24), np.float32)
    v[((z - 6) / 4.0) ** 2 + ((y - 10) / 6.0) ** 2 + ((x - 12) / 7.0) ** 2 < 1] = 1.0
    return v


RANGES = ((2, 10), (4, 16), (5, 19))


@pytest.fixture
def record(monkeypatch):
    calls = []
    orig_add, orig_prop = VolumeSession.add_prompt, VolumeSession.propagate

    def add(self, s, obj, **k):
        calls.append({"shape": (self.num_slices, *self.slice_hw), "slice": s, "prompt": k,
                      "resize": self.resize_mode})
        return orig_add(self, s, obj, **k)

    def prop(self, direction="both", **k):
        calls[-1]["direction"] = direction
        return orig_prop(self, direction, **k)

    monkeypatch.setattr(VolumeSession, "add_prompt", add)
    monkeypatch.setattr(VolumeSession, "propagate", prop)
    return calls


def test_six_runs_each_seeded_from_the_box(tiny_model, record):
    res = propagate_multi_axis(tiny_model, vol(), RANGES)
    assert sorted(res.runs) == sorted((a, d) for a in ("axial", "coronal", "sagittal")
                                      for d in ("forward", "backward"))
    assert [c["direction"] for c in record] == ["forward", "backward"] * 3
    assert all(set(c["prompt"]) == {"box"} for c in record)  # boxes from the prompt, no mask from a run
    ax, co, sa = record[0], record[2], record[4]
    assert ax["shape"] == (12, 20, 24) and ax["slice"] == 6 and ax["prompt"]["box"] == [5, 4, 19, 16]
    assert co["shape"] == (20, 12, 24) and co["slice"] == 10 and co["prompt"]["box"] == [5, 2, 19, 10]
    assert sa["shape"] == (24, 12, 20) and sa["slice"] == 12 and sa["prompt"]["box"] == [4, 2, 16, 10]
    # each run covers its side of the prompted slice; every voxel is covered by each axis
    fwd, bwd = res.runs[("axial", "forward")], res.runs[("axial", "backward")]
    assert np.isnan(fwd[:6]).all() and not np.isnan(fwd[6:]).any()
    assert np.isnan(bwd[7:]).all() and not np.isnan(bwd[:7]).any()
    stack = np.stack(list(res.runs.values()))
    np.testing.assert_allclose(res.fused, np.nanmean(stack, 0), atol=1e-6)
    assert res.fused.shape == (12, 20, 24)


def test_spacing_aware_views_have_square_pixels(tiny_model, record):
    propagate_multi_axis(tiny_model, vol(), RANGES, axes=("axial", "coronal"), directions=("forward",),
                         spacing=(4.0, 1.0, 1.0))
    ax, co = record
    assert ax["shape"] == (12, 20, 24) and ax["resize"] == "pad"      # already square pixels
    assert co["shape"] == (20, 48, 24) and co["resize"] == "pad"      # 12 slices x 4 mm -> 48 rows of 1 mm
    assert co["prompt"]["box"] == [5, 8, 19, 43]                        # the box follows the resampling


def test_axis_names_and_errors(tiny_model):
    with pytest.raises(ValueError, match="name the axes"):
        propagate_multi_axis(tiny_model, vol(), RANGES, axes=(0, 1))
    with pytest.raises(ValueError, match="outside"):
        propagate_multi_axis(tiny_model, vol(), ((0, 30), (4, 16), (5, 19)))
    assert box3d_ranges((2, 10), (5, 4, 19, 16), 0) == (((2, 10), (4, 16), (5, 19)), 0)
    assert box3d_ranges((4, 16), (5, 2, 19, 10), 1)[0] == ((2, 10), (4, 16), (5, 19))


def test_segment_multi_axis_from_prompt_objects(tiny_model):
    from medmem.io.prompts import Box3DPrompt, BoxPrompt, ObjectPrompts

    objs = [ObjectPrompts(id=3, prompts=[Box3DPrompt(slice=6, z_range=(2, 10), box=(5, 4, 19, 16))], axis=0)]
    res = segment_multi_axis(tiny_model, vol(), objs, axes=("axial", "coronal"))
    labels, rep = res.labels, res.report
    assert labels.shape == (12, 20, 24) and set(np.unique(labels)) <= {0, 3}
    assert len(rep["objects"][0]["runs"]) == 4
    assert rep["objects"][0]["voxels"] == int((labels == 3).sum())
    assert res.overlay().ndim == 3
    assert not labels[:2].any() and not labels[11:].any(), "outside the box's z-range [2, 10]"
    with pytest.raises(ValueError, match="3D box"):
        segment_multi_axis(tiny_model, vol(), [ObjectPrompts(id=1, prompts=[BoxPrompt(slice=6, box=(5, 4, 19, 16))])])
    assert multi_axis.AXES == ("axial", "coronal", "sagittal")
