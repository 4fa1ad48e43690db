"""read_volume on every supported input, and its errors on bad input."""
from __future__ import annotations

import gzip
import shutil
import warnings

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medmem.io import GeometryWarning, ImageReadError, NonFiniteWarning, Volume, read_volume, write_volume

from io_testutils import rotation

ANISO = (0.7, 0.9, 3.0)


def _sitk_image(arr, spacing=ANISO, origin=(-3.0, 4.5, 12.0), direction=None):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(tuple(np.asarray(direction if direction is not None else np.eye(3)).ravel()))
    return img


# --------------------------------------------------------------------------- ITK formats
@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_itk_formats_keep_geometry_and_dtype(tmp_path, ext, ct_array):
    d = rotation("x", 25) @ rotation("z", 10)
    path = tmp_path / f"ct{ext}"
    sitk.WriteImage(_sitk_image(ct_array, direction=d), str(path))
    vol = read_volume(path)
    assert vol.kind == "volume" and vol.array.shape == (8, 16, 16) and vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, ct_array)
    np.testing.assert_allclose(vol.spacing, ANISO, rtol=1e-6)
    np.testing.assert_allclose(vol.origin, (-3.0, 4.5, 12.0), atol=1e-4)
    np.testing.assert_allclose(vol.direction, d, atol=1e-5)
    assert vol.modality == "CT"  # air at -1000 HU
    assert vol.meta["format"] in ("nifti", "nrrd", "metaimage")
    assert vol.meta["source_files"] == [str(path.resolve())]


def test_nifti_world_coordinates_match_nibabel_affine(tmp_path):
    # independent check of the convention: nibabel maps voxels to RAS, medmem to LPS
    aff = np.array([[-0.8, 0.0, 0.0, 40.0], [0.0, 0.9, 0.1, -20.0], [0.0, -0.05, 2.9, 5.0], [0, 0, 0, 1]])
    aff[:3, :3] = aff[:3, :3] @ np.diag(1 / np.linalg.norm(aff[:3, :3], axis=0)) @ np.diag([0.8, 0.9, 3.0])
    rot = np.linalg.svd(aff[:3, :3] @ np.diag([1 / 0.8, 1 / 0.9, 1 / 3.0]))
    aff[:3, :3] = (rot[0] @ rot[2]) @ np.diag([0.8, 0.9, 3.0])  # exact rotation * scaling
    data = np.random.default_rng(0).normal(size=(6, 7, 5)).astype(np.float32)  # (i, j, k)
    path = tmp_path / "ras.nii.gz"
    nib.save(nib.Nifti1Image(data, aff), str(path))
    vol = read_volume(path)
    assert vol.array.shape == (5, 7, 6)  # (Z, Y, X)
    ijk = np.array([[0, 0, 0], [5, 6, 4], [2, 3, 1]])
    ras = (aff[:3, :3] @ ijk.T).T + aff[:3, 3]
    lps = ras * [-1, -1, 1]
    np.testing.assert_allclose(vol.voxel_to_world(ijk), lps, atol=1e-4)
    i, j, k = ijk[2]
    assert vol.array[k, j, i] == data[i, j, k]
    assert vol.modality == "MR"


def test_4d_needs_timepoint_and_5d_needs_channel(tmp_path):
    data4 = np.zeros((4, 5, 6, 3), np.float32)
    for t in range(3):
        data4[..., t] = t + 1
    p4 = tmp_path / "t4.nii.gz"
    nib.save(nib.Nifti1Image(data4, np.diag([1.0, 2.0, 3.0, 1.0])), str(p4))
    with pytest.raises(ImageReadError, match=r"timepoint=0\.\.2"):
        read_volume(p4)
    vol = read_volume(p4, timepoint=1)
    assert vol.array.shape == (6, 5, 4) and np.all(vol.array == 2)
    np.testing.assert_allclose(vol.spacing, (1.0, 2.0, 3.0))
    with pytest.raises(ImageReadError, match="out of range"):
        read_volume(p4, timepoint=3)

    data5 = np.zeros((4, 5, 6, 1, 2), np.float32)
    data5[..., 1] = 7
    p5 = tmp_path / "t5.nii.gz"
    nib.save(nib.Nifti1Image(data5, np.eye(4)), str(p5))
    with pytest.raises(ImageReadError, match=r"channel=0\.\.1"):
        read_volume(p5)
    assert np.all(read_volume(p5, channel=1).array == 7)

    # a single time point is squeezed silently
    p41 = tmp_path / "t41.nii.gz"
    nib.save(nib.Nifti1Image(data4[..., :1], np.eye(4)), str(p41))
    assert read_volume(p41).array.shape == (6, 5, 4)


def test_vector_volume_needs_channel(tmp_path):
    arr = np.random.default_rng(0).normal(size=(3, 4, 5, 2)).astype(np.float32)
    path = tmp_path / "vec.mha"
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=True), str(path))
    with pytest.raises(ImageReadError, match=r"2 components; choose one with channel=0\.\.1"):
        read_volume(path)
    np.testing.assert_array_equal(read_volume(path, channel=1).array, arr[..., 1])


# --------------------------------------------------------------------------- 2D images
def test_png_8_and_16_bit_grey_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    g8 = rng.integers(0, 256, (12, 20), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (12, 20), dtype=np.uint16)
    rgb = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (12, 20, 3), dtype=np.uint16)
    for name, arr in [("g8", g8), ("g16", g16), ("rgb", rgb), ("rgb16", rgb16)]:
        sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=arr.ndim == 3), str(tmp_path / f"{name}.png"))
        vol = read_volume(tmp_path / f"{name}.png")
        assert vol.kind == "image" and vol.array.shape == (1, *arr.shape)
        assert vol.array.dtype == arr.dtype
        np.testing.assert_array_equal(vol.array[0], arr)
    assert read_volume(tmp_path / "g16.png").modality == "XR"
    assert read_volume(tmp_path / "rgb.png").modality is None


def test_pillow_formats_rgba_palette_jpeg_bmp(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (10, 14, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    vol = read_volume(tmp_path / "a.png")
    np.testing.assert_array_equal(vol.array[0], rgba[..., :3])  # alpha dropped
    grey = rng.integers(0, 256, (10, 14), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.bmp")
    np.testing.assert_array_equal(read_volume(tmp_path / "g.bmp").array[0], grey)
    smooth = np.tile(np.linspace(0, 255, 14, dtype=np.uint8), (10, 1))
    Image.fromarray(np.stack([smooth] * 3, -1)).save(tmp_path / "c.jpg", quality=95)
    jpg = read_volume(tmp_path / "c.jpg")
    assert jpg.array.shape == (1, 10, 14, 3) and np.abs(jpg.array[0, ..., 0].astype(int) - smooth).max() < 12
    pal = Image.fromarray(grey % 4).convert("P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    pal.save(tmp_path / "p.png")
    pv = read_volume(tmp_path / "p.png")
    assert pv.array.shape == (1, 10, 14, 3)  # palette expanded to colours


def test_tiff_16bit_rgb_and_stack(tmp_path):
    import tifffile

    rng = np.random.default_rng(2)
    g16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "g.tif", g16)
    vol = read_volume(tmp_path / "g.tif")
    assert vol.kind == "image" and vol.array.dtype == np.uint16
    np.testing.assert_array_equal(vol.array[0], g16)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tiff", rgb, photometric="rgb")
    np.testing.assert_array_equal(read_volume(tmp_path / "rgb.tiff").array[0], rgb)
    stack = rng.integers(0, 1000, (5, 9, 11), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    sv = read_volume(tmp_path / "stack.tif")
    assert sv.kind == "volume" and sv.array.shape == (5, 9, 11)
    np.testing.assert_array_equal(sv.array, stack)


# --------------------------------------------------------------------------- video and frames
def _moving_square(n=6, h=32, w=48, colour=True):
    frames = np.zeros((n, h, w, 3), np.uint8)
    for t in range(n):
        frames[t, 8:20, 4 + 4 * t : 16 + 4 * t] = (200, 60, 30) if colour else (180, 180, 180)
    return frames


@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_video_read(tmp_path, ext):
    import imageio.v2 as iio

    frames = _moving_square()
    path = tmp_path / f"clip{ext}"
    with iio.get_writer(str(path), format="FFMPEG", fps=5, macro_block_size=1,
                        **({"codec": "mjpeg", "quality": 10} if ext == ".avi" else {})) as w:
        for f in frames:
            w.append_data(f)
    vol = read_volume(path)
    assert vol.kind == "video" and vol.array.shape == (6, 32, 48, 3)
    assert vol.meta["fps"] == pytest.approx(5, rel=0.01)
    assert vol.modality == "endoscopy"
    # the square moves: its centre column grows by ~4 px per frame (lossy codec: loose check)
    cols = [np.nonzero(vol.array[t, 14, :, 0] > 100)[0].mean() for t in range(6)]
    np.testing.assert_allclose(np.diff(cols), 4, atol=1.0)


def test_grey_video_becomes_single_channel(tmp_path):
    import imageio.v2 as iio

    path = tmp_path / "us.mp4"
    with iio.get_writer(str(path), format="FFMPEG", fps=10, macro_block_size=1) as w:
        for f in _moving_square(colour=False):
            w.append_data(f)
    vol = read_volume(path)
    assert vol.array.shape == (6, 32, 48) and vol.modality == "US"


def test_frame_folder_sorted_naturally(tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10, 3):
        Image.fromarray(np.full((6, 8), i * 10, np.uint8)).save(folder / f"frame{i}.png")
    (folder / ".DS_Store").write_bytes(b"junk")
    vol = read_volume(folder)
    assert vol.kind == "video" and vol.array.shape == (4, 6, 8)
    assert vol.array[:, 0, 0].tolist() == [10, 20, 30, 100]
    assert vol.meta["frame_files"] == ["frame1.png", "frame2.png", "frame3.png", "frame10.png"]


def test_frame_folder_with_different_sizes_fails(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "a1.png")
    Image.fromarray(np.zeros((6, 9), np.uint8)).save(tmp_path / "a2.png")
    with pytest.raises(ImageReadError, match="different sizes"):
        read_volume(tmp_path)


# --------------------------------------------------------------------------- bad input
def test_missing_path(tmp_path):
    with pytest.raises(ImageReadError, match="no such file or folder"):
        read_volume(tmp_path / "nope.nii.gz")


def _nifti_bytes(tmp_path):
    data = np.random.default_rng(0).normal(size=(20, 30, 40)).astype(np.float32)
    path = tmp_path / "full.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path.read_bytes()


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_truncated_nii_gz(tmp_path, cut):
    raw = _nifti_bytes(tmp_path)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(raw[: int(len(raw) * cut)])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_volume(bad)


def test_truncated_uncompressed_nii(tmp_path):
    raw = gzip.decompress(_nifti_bytes(tmp_path))
    bad = tmp_path / "bad.nii"
    bad.write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(ImageReadError, match="truncated"):
        read_volume(bad)


def test_truncated_mha(tmp_path, ct_array):
    path = tmp_path / "ct.mha"
    sitk.WriteImage(_sitk_image(ct_array), str(path))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(ImageReadError, match="ct.mha"):
        read_volume(path)


def test_garbage_and_non_image_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match="unrecognised file type"):
        read_volume(tmp_path / "notes.txt")
    (tmp_path / "fake.nii.gz").write_bytes(b"this is not gzip at all" * 20)
    with pytest.raises(ImageReadError, match="fake.nii.gz"):
        read_volume(tmp_path / "fake.nii.gz")
    (tmp_path / "fake.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(ImageReadError, match="fake.png"):
        read_volume(tmp_path / "fake.png")
    (tmp_path / "fake.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(ImageReadError, match="fake.mp4"):
        read_volume(tmp_path / "fake.mp4")
    (tmp_path / "empty.nrrd").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_volume(tmp_path / "empty.nrrd")


def test_zero_size_image(tmp_path):
    # ITK would silently read this as a 4x1x3 image of zeros
    path = tmp_path / "zero.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 0, 3), np.uint8), np.eye(4)), str(path))
    with pytest.raises(ImageReadError, match="zero size"):
        read_volume(path)
    nrrd = tmp_path / "zero.nrrd"
    nrrd.write_bytes(b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 0 3\nencoding: raw\n\n")
    with pytest.raises(ImageReadError, match="zero.nrrd: cannot read image header"):
        read_volume(nrrd)


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(ImageReadError, match="no DICOM series and no image frames"):
        read_volume(tmp_path)


@pytest.mark.parametrize("ext", [".nrrd", ".nii.gz"])  # ITK's NIfTI reader turns NaN into 0 unless medmem checks
def test_nan_inf_warn_by_default_error_and_replace(tmp_path, ext):
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    arr[0, 0, 0], arr[1, 1, 1], arr[1, 2, 3] = np.nan, np.inf, -np.inf
    path = tmp_path / f"nan{ext}"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    with pytest.raises(ImageReadError, match=r"3 voxel\(s\) are not finite \(1 NaN, 2 inf\)"):
        read_volume(path, nonfinite="error")
    with pytest.warns(NonFiniteWarning, match=r"3 of 24 voxel\(s\) are not finite \(1 NaN, 2 inf\); NaN read as 1 "):
        default = read_volume(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vol = read_volume(path, nonfinite="replace")
    np.testing.assert_array_equal(default.array, vol.array)
    assert np.all(np.isfinite(vol.array))
    finite = arr[np.isfinite(arr)]
    assert vol.array[0, 0, 0] == finite.min() and vol.array[1, 1, 1] == finite.max()
    assert vol.array[1, 2, 3] == finite.min() and vol.meta["nonfinite_replaced"] == 3
    assert read_volume(path, nonfinite="replace", fill_value=-5).array[0, 0, 0] == -5


def test_non_orthonormal_direction(tmp_path):
    sheared = np.array([[1.0, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]])
    path = tmp_path / "shear.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), sheared), str(path))
    with pytest.raises(ImageReadError, match="not orthonormal"):
        read_volume(path)


def test_nearly_orthonormal_direction_is_repaired_with_warning(tmp_path):
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    aff[0, 1] = 0.002  # a tiny shear, as left by some converters
    path = tmp_path / "almost.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), aff), str(path))
    with pytest.warns(GeometryWarning, match="snapped"):
        vol = read_volume(path)
    np.testing.assert_allclose(vol.direction.T @ vol.direction, np.eye(3), atol=1e-9)


def test_write_volume_round_trip_rgb_and_png(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (1, 7, 9, 3), dtype=np.uint8)
    vol = Volume(rgb, kind="image")
    write_volume(vol, tmp_path / "x.png")
    np.testing.assert_array_equal(read_volume(tmp_path / "x.png").array, rgb)
    g16 = Volume(np.arange(63, dtype=np.uint16).reshape(1, 7, 9) * 1000, kind="image")
    write_volume(g16, tmp_path / "g.tif")
    back = read_volume(tmp_path / "g.tif")
    assert back.array.dtype == np.uint16
    np.testing.assert_array_equal(back.array, g16.array)


def test_reader_does_not_warn_on_clean_input(tmp_path, ct_array):
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(_sitk_image(ct_array), str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_volume(path)


def test_mhd_companion_listed_as_source(tmp_path, ct_array):
    path = tmp_path / "ct.mhd"
    sitk.WriteImage(_sitk_image(ct_array), str(path))
    vol = read_volume(path)
    assert any(f.endswith(".raw") or f.endswith(".zraw") for f in vol.meta["source_files"])
    shutil.copy(path, tmp_path / "copy.mhd")  # header copy still points at the same data
