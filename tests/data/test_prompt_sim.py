import numpy as np
import pytest

from medmem.data import prompt_sim as P


def rect(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def test_mask_to_box_is_inclusive_xy():
    m = rect((20, 30), 3, 8, 5, 17)  # rows 3..7, cols 5..16
    assert P.mask_to_box(m) == (5, 3, 16, 7)
    with pytest.raises(ValueError):
        P.mask_to_box(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="binary"):
        P.mask_to_box(np.full((4, 4), 2))


def test_jitter_bounds_seed_and_clipping():
    box = (10, 20, 29, 59)  # width 20, height 40
    seen = set()
    for s in range(300):
        x0, y0, x1, y1 = P.jitter_box(box, (100, 100), 0.1, rng=s)
        assert abs(x0 - 10) <= 2 and abs(x1 - 29) <= 2  # floor(0.1 * 20)
        assert abs(y0 - 20) <= 4 and abs(y1 - 59) <= 4  # floor(0.1 * 40)
        seen.add((x0, y0, x1, y1))
    assert len(seen) > 50  # really random
    assert P.jitter_box(box, (100, 100), 0.1, rng=7) == P.jitter_box(box, (100, 100), 0.1, rng=7)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert P.jitter_box(box, (100, 100), 0.3, g1) == P.jitter_box(box, (100, 100), 0.3, g2)
    # clipping at the image border
    for s in range(50):
        x0, y0, x1, y1 = P.jitter_box((0, 0, 9, 9), (10, 10), 0.5, rng=s)
        assert 0 <= x0 <= x1 <= 9 and 0 <= y0 <= y1 <= 9
    assert P.jitter_box(box, (100, 100), 0.0, rng=1) == box
    with pytest.raises(ValueError):
        P.jitter_box((5, 5, 200, 6), (100, 100))


def test_simulate_box():
    m = rect((50, 50), 10, 20, 30, 45)
    assert P.simulate_box(m) == (30, 10, 44, 19)
    b = P.simulate_box(m, 0.2, rng=0)
    assert b != (30, 10, 44, 19) or P.simulate_box(m, 0.2, rng=1) != (30, 10, 44, 19)


def test_interior_click_center_is_farthest_from_boundary():
    m = rect((30, 40), 5, 16, 10, 31)  # rows 5..15, cols 10..30
    c = P.interior_click(m)
    # max distance 6 (row 10, to rows 4 and 16) on the plateau cols 15..25; ties: first in C order
    assert c.point == (15, 10) and c.positive and c.label == 1
    for s in range(10):
        x, y = P.interior_click(m, rng=s).point  # random tie-breaking stays on the plateau
        assert y == 10 and 15 <= x <= 25
    # an L-shape: the centre lies in the thick part
    L = rect((40, 40), 0, 40, 0, 8) | rect((40, 40), 20, 40, 0, 40)
    x, y = P.interior_click(L).point
    assert L[y, x] and 20 <= y < 40
    # image border counts as boundary: a mask filling the image clicks the middle
    assert P.interior_click(np.ones((9, 9), bool)).point == (4, 4)


def test_interior_click_random_and_3d():
    m = rect((30, 40), 5, 16, 10, 31)
    for s in range(20):
        x, y = P.interior_click(m, "random", rng=s).point
        assert m[y, x]
    v = np.zeros((9, 20, 20), bool)
    v[2:7, 5:15, 8:12] = True
    # x extent 8..11 limits the distance to 2: x in {9, 10}, z in 3..5, y in 6..13; first in C order
    assert P.interior_click(v).point == (9, 6, 3)
    # anisotropic spacing (mm, array order): with x spacing 3 mm the in-plane x limit vanishes,
    # the thinnest direction becomes z (spacing 1): distance 3 at z = 4 only
    x, y, z = P.interior_click(v, spacing=(1.0, 1.0, 3.0)).point
    assert z == 4
    with pytest.raises(ValueError):
        P.interior_click(np.zeros((5, 5)))


def test_corrective_click_false_negative_and_false_positive():
    gt = rect((40, 40), 10, 30, 10, 30)
    pred = rect((40, 40), 10, 30, 10, 20)  # misses the right half: FN region cols 20..29
    c = P.corrective_click(pred, gt)
    x, y = c.point
    assert c.positive and gt[y, x] and not pred[y, x]
    # FN region rows 10..29, cols 20..29: distance 5 at cols 24/25, rows 14..25 -> first (24, 14)
    assert (x, y) == (24, 14)
    pred2 = gt | rect((40, 40), 0, 40, 32, 40)  # extra FP strip cols 32..39
    c2 = P.corrective_click(pred2, gt)
    x, y = c2.point
    assert not c2.positive and pred2[y, x] and not gt[y, x]
    assert P.corrective_click(gt, gt) is None


def test_corrective_click_picks_largest_region():
    gt = rect((50, 50), 5, 45, 5, 45)
    pred = gt.copy()
    pred[5:10, 5:10] = False  # FN 25 px
    pred[0:3, 20:40] = True  # FP 60 px -> larger
    c = P.corrective_click(pred, gt)
    assert not c.positive and c.point[1] in (0, 1, 2)


def test_corrective_click_xor_rule_and_3d():
    gt = np.zeros((10, 20, 20), bool)
    gt[2:8, 5:15, 5:15] = True
    pred = gt.copy()
    pred[2:8, 5:15, 5:8] = False  # FN slab
    c = P.corrective_click(pred, gt, regions="xor")
    x, y, z = c.point
    assert c.positive and gt[z, y, x] and not pred[z, y, x]
    with pytest.raises(ValueError):
        P.corrective_click(pred, gt[:5])


def test_box_3d_cvpr_fields():
    m = np.zeros((12, 20, 20), bool)
    m[2:5, 4:8, 6:9] = True  # slices 2..4
    m[8, 10:15, 1:3] = True  # object re-appears on slice 8; slices 5..7 empty
    b = P.box_3d(m)
    assert (b.z_min, b.z_max) == (2, 8)
    zs = [2, 3, 4, 8]
    assert b.z_mid == zs[len(zs) // 2] == 4  # median of non-empty slices, never an empty one
    assert b.box_2d == (6, 4, 8, 7)
    assert b.as_dict()["z_mid_x_max"] == 8
    with pytest.raises(ValueError):
        P.box_3d(np.zeros((3, 3, 3)))
