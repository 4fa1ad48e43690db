"""The bundled MNI152 sample: present, readable, consistent, licensed."""
from __future__ import annotations

import numpy as np
import pytest

from medmem.io import list_samples, read_volume, sample_path


def test_sample_files_exist_and_are_small():
    assert {"mni152_t1", "mni152_brain_mask", "mni152_license"} <= set(list_samples())
    total = sum(sample_path(n).stat().st_size for n in ("mni152_t1", "mni152_brain_mask"))
    assert total < 2_500_000
    with pytest.raises(KeyError, match="available"):
        sample_path("nope")


def test_t1_and_mask_share_geometry_and_make_sense():
    t1 = read_volume(sample_path("mni152_t1"))
    mask = read_volume(sample_path("mni152_brain_mask"))
    assert t1.shape == mask.shape == (94, 116, 98)
    np.testing.assert_allclose(t1.spacing, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(mask.origin, t1.origin)
    np.testing.assert_allclose(mask.direction, t1.direction)
    assert t1.orientation == "RAS" and t1.modality == "MR"
    assert set(np.unique(mask.array).tolist()) == {0, 1}
    brain = mask.array.astype(bool)
    ml = brain.sum() * 8 / 1000.0  # 2 mm voxels
    assert 1400 < ml < 2100  # MNI space brains are larger than native ones
    # the template is skull-stripped: bright inside the mask, dark outside
    assert t1.array[brain].mean() > 150 and (t1.array[~brain] > 20).mean() < 0.05
    # world origin (0, 0, 0) of MNI space (near the anterior commissure) lies inside the brain
    x, y, z = np.round(t1.world_to_voxel([0.0, 0.0, 0.0])).astype(int)
    assert brain[z, y, x]
    # axial slices are array axis 0 for this RAS-stored file
    assert t1.anatomical_axes()["axial"] == 0


def test_license_notice_is_bundled():
    text = " ".join(sample_path("mni152_license").read_text().split())
    assert "McConnell Brain Imaging Centre" in text and "Permission to use, copy, modify" in text
