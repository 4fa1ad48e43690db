"""Coordinates, anatomical axes and slicing."""
from __future__ import annotations

import numpy as np
import pytest

from medmem.io import ImageReadError, Volume, anatomical_axes, orientation_code, voxel_to_world, world_to_voxel
from medmem.io.geometry import check_direction, itk_axis_for, orthonormalize

from io_testutils import rotation


def test_voxel_world_known_values_identity():
    spacing, origin = (0.7, 0.9, 3.0), (10.0, -5.0, 2.0)
    pts = voxel_to_world([[0, 0, 0], [1, 2, 3]], spacing, origin, np.eye(3))
    np.testing.assert_allclose(pts, [[10.0, -5.0, 2.0], [10.7, -3.2, 11.0]])


def test_voxel_world_round_trip_oblique():
    d = rotation("z", 30) @ rotation("x", 20)
    spacing, origin = (0.7, 0.9, 3.0), (-12.5, 40.0, 7.0)
    idx = np.random.default_rng(1).uniform(-2, 30, size=(50, 3))
    world = voxel_to_world(idx, spacing, origin, d)
    np.testing.assert_allclose(world_to_voxel(world, spacing, origin, d), idx, atol=1e-9)
    # step of one voxel along index axis k moves spacing[k] mm along column k of the direction
    step = voxel_to_world([0, 0, 1], spacing, origin, d) - voxel_to_world([0, 0, 0], spacing, origin, d)
    np.testing.assert_allclose(step, 3.0 * d[:, 2])


def test_single_point_shape_kept():
    assert voxel_to_world([1, 1, 1], (1, 1, 1), (0, 0, 0), np.eye(3)).shape == (3,)
    with pytest.raises(ValueError):
        voxel_to_world([[1, 1]], (1, 1, 1), (0, 0, 0), np.eye(3))


def test_anatomical_axes_identity_and_permuted():
    assert anatomical_axes(np.eye(3)) == {"axial": 0, "coronal": 1, "sagittal": 2}
    # a sagittally acquired stack: index x runs anterior->posterior (world y), index y runs
    # superior->inferior (-world z), slices (index z) run left-right (world x)
    d = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)
    axes = anatomical_axes(d)
    assert axes == {"sagittal": 0, "axial": 1, "coronal": 2}
    assert itk_axis_for("transverse", d) == 1  # alias of axial


def test_anatomical_axes_oblique_and_flips():
    # RAS-stored NIfTI read by ITK: flips do not change which axis is which
    assert anatomical_axes(np.diag([-1.0, -1.0, 1.0])) == {"axial": 0, "coronal": 1, "sagittal": 2}
    # 30 degrees about x keeps z closest to world z
    assert anatomical_axes(rotation("x", 30))["axial"] == 0
    # 45 degrees exactly: still three distinct axes
    assert sorted(anatomical_axes(rotation("x", 45)).values()) == [0, 1, 2]


def test_orientation_code():
    assert orientation_code(np.eye(3)) == "LPS"
    assert orientation_code(np.diag([-1.0, -1.0, 1.0])) == "RAS"
    assert orientation_code(np.diag([1.0, -1.0, -1.0])) == "LAI"


def test_check_direction_rejects_shear_and_orthonormalize_fixes_it():
    sheared = np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ImageReadError, match="not orthonormal"):
        check_direction(sheared)
    fixed = orthonormalize(sheared)
    np.testing.assert_allclose(fixed.T @ fixed, np.eye(3), atol=1e-12)
    assert np.linalg.det(fixed) > 0


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal", 0, 1, 2])
def test_slices_round_trip_and_indexing(axis):
    arr = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    vol = Volume(arr, spacing=(0.7, 0.9, 3.0))
    view = vol.slices(axis)
    assert view.to_volume(view.array).tolist() == arr.tolist()
    np.testing.assert_array_equal(vol.from_slices(view.array, view), arr)
    # (slice, row, col) of the view addresses the same voxel as slice_to_voxel says
    s, r, c = 2, 1, 3
    x, y, z = (int(v) for v in view.slice_to_voxel(s, r, c))
    assert view.array[s, r, c] == arr[z, y, x]
    assert view.voxel_to_slice((x, y, z)) == (s, r, c)


def test_slices_shapes_and_spacing():
    vol = Volume(np.zeros((4, 5, 6), np.uint8), spacing=(0.7, 0.9, 3.0))
    ax, co, sa = vol.slices("axial"), vol.slices("coronal"), vol.slices("sagittal")
    assert ax.array.shape == (4, 5, 6) and ax.pixel_spacing == (0.9, 0.7) and ax.slice_spacing == 3.0
    assert co.array.shape == (5, 4, 6) and co.pixel_spacing == (3.0, 0.7) and co.slice_spacing == 0.9
    assert sa.array.shape == (6, 4, 5) and sa.pixel_spacing == (3.0, 0.9) and sa.slice_spacing == 0.7


def test_slices_follow_direction_matrix_and_keep_channels():
    # sagittal acquisition: "axial" must be array axis 1 (index y)
    d = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)
    rgb = np.random.default_rng(0).integers(0, 255, size=(3, 4, 5, 3), dtype=np.uint8)
    vol = Volume(rgb, direction=d)
    view = vol.slices("axial")
    assert view.array_axis == 1 and view.array.shape == (4, 3, 5, 3)
    np.testing.assert_array_equal(view.to_volume(view.array), rgb)
    # per-slice results with extra trailing dims go back too
    probs = np.zeros(view.array.shape[:3] + (2,))
    assert view.to_volume(probs).shape == (3, 4, 5, 2)
    with pytest.raises(ValueError):
        view.to_volume(np.zeros((3, 4, 5)))


def test_volume_validation():
    with pytest.raises(ValueError, match="empty"):
        Volume(np.zeros((0, 4, 4)))
    with pytest.raises(ValueError, match="spacing"):
        Volume(np.zeros((2, 4, 4)), spacing=(1, 0, 1))
    with pytest.raises(ValueError, match="orthonormal"):
        Volume(np.zeros((2, 4, 4)), direction=np.diag([1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="kind"):
        Volume(np.zeros((2, 4, 4)), kind="movie")
    assert Volume(np.zeros((4, 4))).shape == (1, 4, 4)  # 2D image -> Z = 1


def test_world_to_voxel_on_volume_matches_array_indexing():
    d = rotation("y", 15)
    vol = Volume(np.zeros((6, 7, 8)), spacing=(0.5, 0.6, 2.0), origin=(1.0, 2.0, 3.0), direction=d)
    world = vol.voxel_to_world([3, 4, 5])
    np.testing.assert_allclose(vol.world_to_voxel(world), [3, 4, 5], atol=1e-9)
    assert vol.geometry.contains_index([[7, 6, 5], [8, 0, 0]]).tolist() == [True, False]
