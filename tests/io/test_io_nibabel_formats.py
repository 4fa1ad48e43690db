"""NIfTI-2 and FreeSurfer MGH/MGZ (files ITK refuses): read with their geometry, masks written back alike.

The geometry oracle is ITK itself: the same data and affine saved as NIfTI-1, which ITK reads, must
give the same spacing, origin and direction as the NIfTI-2 / MGZ file read through nibabel.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medmem.io import ImageReadError, NonFiniteWarning, read_volume, write_mask, write_volume

from io_testutils import rotation


def _affine(oblique: bool) -> np.ndarray:
    aff = np.eye(4)
    rot = rotation("x", 20) @ rotation("z", -35) if oblique else np.diag([-1.0, 1.0, 1.0])
    aff[:3, :3] = rot @ np.diag([0.7, 1.1, 2.5])
    aff[:3, 3] = [12.5, -40.0, 7.25]
    return aff


def _data(dtype=np.int16) -> np.ndarray:
    """(X, Y, Z) = (9, 7, 5), every voxel distinct, as nibabel stores it."""
    return (np.arange(9 * 7 * 5).reshape(9, 7, 5) - 100).astype(dtype)


def _itk_geometry(tmp_path, data: np.ndarray, aff: np.ndarray):
    ref = tmp_path / "reference_nifti1.nii"
    nib.save(nib.Nifti1Image(data, aff), str(ref))
    img = sitk.ReadImage(str(ref))
    return np.array(img.GetSpacing()), np.array(img.GetOrigin()), np.array(img.GetDirection()).reshape(3, 3)


FORMATS = [("nifti2", ".nii.gz"), ("nifti2", ".nii"), ("mgh", ".mgz"), ("mgh", ".mgh")]


def _save(kind: str, data: np.ndarray, aff: np.ndarray, path) -> None:
    img = nib.Nifti2Image(data, aff) if kind == "nifti2" else nib.MGHImage(data, aff)
    nib.save(img, str(path))


@pytest.mark.parametrize("oblique", [False, True], ids=["axis-aligned", "oblique"])
@pytest.mark.parametrize("kind,ext", FORMATS)
def test_read_keeps_geometry_and_write_back_in_the_same_format(tmp_path, kind, ext, oblique):
    data, aff = _data(), _affine(oblique)
    src = tmp_path / f"scan{ext}"
    _save(kind, data, aff, src)
    if kind == "nifti2":  # the reason for this module: ITK refuses these files
        with pytest.raises(RuntimeError):
            sitk.ReadImage(str(src))
    vol = read_volume(src)
    np.testing.assert_array_equal(vol.array, data.transpose(2, 1, 0))  # (Z, Y, X)
    spacing, origin, direction = _itk_geometry(tmp_path, data, aff)
    np.testing.assert_allclose(vol.spacing, spacing, atol=1e-5)
    np.testing.assert_allclose(vol.origin, origin, atol=1e-4)
    np.testing.assert_allclose(vol.direction, direction, atol=1e-5)
    # a world point lands on the same voxel as nibabel's affine says (RAS -> LPS flips x and y)
    ijk = np.array([3.0, 2.0, 4.0])
    ras = aff[:3, :3] @ ijk + aff[:3, 3]
    np.testing.assert_allclose(vol.voxel_to_world(ijk), ras * [-1, -1, 1], atol=1e-4)

    labels = (vol.array > 20).astype(np.uint8) + (vol.array > 150)
    out = tmp_path / f"mask{ext}"
    write_mask(labels, vol, out)
    back = nib.load(str(out))
    assert type(back) is type(nib.load(str(src)))  # NIfTI-2 stays NIfTI-2, MGH stays MGH
    np.testing.assert_allclose(back.affine, aff, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), labels.transpose(2, 1, 0))
    again = read_volume(out)
    np.testing.assert_allclose(again.spacing, vol.spacing, atol=1e-5)
    np.testing.assert_allclose(again.origin, vol.origin, atol=1e-4)
    np.testing.assert_allclose(again.direction, vol.direction, atol=1e-5)


def test_4d_nifti2_and_mgz_frames_pick_a_timepoint(tmp_path):
    data = np.stack([_data() + 1000 * t for t in range(3)], axis=-1)  # (X, Y, Z, T)
    for kind, ext in (("nifti2", ".nii.gz"), ("mgh", ".mgz")):
        path = tmp_path / f"series{ext}"
        _save(kind, data.astype(np.int32), _affine(True), path)
        with pytest.raises(ImageReadError, match="timepoint=0..2"):
            read_volume(path)
        np.testing.assert_array_equal(read_volume(path, timepoint=2).array, data[..., 2].transpose(2, 1, 0))


def test_nifti1_source_still_written_as_nifti1(tmp_path):
    src = tmp_path / "n1.nii.gz"
    nib.save(nib.Nifti1Image(_data(), _affine(True)), str(src))
    vol = read_volume(src)
    write_mask((vol.array > 0).astype(np.uint8), vol, tmp_path / "m.nii.gz")
    assert type(nib.load(str(tmp_path / "m.nii.gz"))) is nib.Nifti1Image


def test_mgz_written_from_any_source_and_write_volume(tmp_path):
    img = sitk.GetImageFromArray(_data().transpose(2, 1, 0).copy())
    img.SetSpacing((0.5, 0.6, 3.0))
    img.SetOrigin((1.0, 2.0, 3.0))
    img.SetDirection((rotation("y", 30)).ravel().tolist())
    sitk.WriteImage(img, str(tmp_path / "ct.nrrd"))
    vol = read_volume(tmp_path / "ct.nrrd")
    labels = np.zeros(vol.shape, np.uint16)
    labels[1:3] = 300  # uint16 is not an MGH type: stored as int32
    write_mask(labels, vol, tmp_path / "m.mgz")
    back = read_volume(tmp_path / "m.mgz")
    np.testing.assert_array_equal(back.array, labels)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-5)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)
    write_volume(vol, tmp_path / "ct.mgz")
    np.testing.assert_array_equal(read_volume(tmp_path / "ct.mgz").array, vol.array)


def test_sheared_mgz_is_refused_and_nan_counted(tmp_path):
    aff = _affine(False)
    aff[0, 1] = 0.8  # sheared voxel axes
    _save("mgh", _data(), aff, tmp_path / "shear.mgz")
    with pytest.raises(ImageReadError, match="shear.mgz: direction matrix is not orthonormal"):
        read_volume(tmp_path / "shear.mgz")
    data = _data(np.float32)
    data[0, 0, :3] = np.nan
    _save("mgh", data, _affine(False), tmp_path / "nan.mgz")
    with pytest.warns(NonFiniteWarning, match=r"3 of 315 voxel\(s\) are not finite \(3 NaN, 0 inf\)"):
        read_volume(tmp_path / "nan.mgz")
