"""The model-free baseline (Otsu in the box, extruded) against hand-made cases."""
import numpy as np
import pytest

from medmem.eval.baseline import otsu_threshold, threshold_box_2d, threshold_box_3d
from medmem.data.prompt_sim import mask_to_box


def test_otsu_separates_two_levels():
    v = np.r_[np.full(300, 10.0), np.full(100, 200.0)]
    t = otsu_threshold(v)
    assert 10 < t < 200
    assert otsu_threshold(np.full(5, 3.0)) == 3.0


def test_box_2d_takes_the_class_under_the_centre():
    img = np.zeros((40, 40))
    img[10:30, 10:30] = 100.0          # bright square
    img[2:6, 2:6] = 100.0              # another bright blob, outside the chosen component
    m = threshold_box_2d(img, [8, 8, 32, 32])
    assert m.sum() == 400 and m[10:30, 10:30].all()
    dark = 100.0 - img                 # a dark object on a bright background: the centre's class wins
    m = threshold_box_2d(dark, [8, 8, 32, 32])
    assert m[10:30, 10:30].all() and not m[8, 8]


def test_box_3d_extrudes_and_keeps_the_connected_object():
    vol = np.zeros((10, 30, 30))
    vol[2:7, 10:20, 10:20] = 50.0      # the object, slices 2..6
    vol[8:10, 10:20, 10:20] = 50.0     # same intensity, not connected (slice 7 is empty)
    m = threshold_box_3d(vol, 4, [8, 8, 22, 22])
    assert m[2:7, 10:20, 10:20].all()
    assert m.sum() == 5 * 100          # the disconnected part is dropped


def test_boxes_are_inclusive_pixels():
    m = np.zeros((10, 10), bool)
    m[2:5, 3:7] = True
    assert mask_to_box(m) == (3, 2, 6, 4)
    with pytest.raises(ValueError):
        mask_to_box(np.zeros((3, 3), bool))
    img = np.zeros((10, 10))
    img[2:5, 3:7] = 9.0   # the object ends on the box's last row and column: both are inside the box
    assert (threshold_box_2d(img, (2, 1, 6, 4)) == m).all()
