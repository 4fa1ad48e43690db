"""The one rule of a 3D box prompt: its object lies within the box's slice range (shared by segment_volume,
the CVPR 2025 protocol driver and multi-orientation)."""
import numpy as np

from medmem.engine.prompts import keep_within_slices


def test_label_map_clears_only_that_object_outside_the_range():
    lm = np.full((6, 2, 2), 3, np.uint16)
    lm[:, 0, 0] = 5
    out = keep_within_slices(lm, 2, 3, label=3)
    assert out is lm                                             # in place
    assert (lm[2:4] != 0).all()                                  # inside: kept
    assert (lm[[0, 1, 4, 5], 0, 0] == 5).all()                   # another object outside: kept
    assert (lm[[0, 1, 4, 5]][:, 1:, :] == 0).all() and (lm[[0, 1, 4, 5], 0, 1] == 0).all()


def test_probability_map_along_another_axis_and_clipped_low_end():
    p = np.ones((3, 5, 4), np.float32)
    keep_within_slices(p, -2, 1, axis=1)                         # a range starting before slice 0
    assert p[:, :2].min() == 1.0 and p[:, 2:].max() == 0.0
