"""DICOM series reading (pydicom) and DICOM-SEG writing (highdicom), on series made by the tests."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from medmem.io import (
    DicomSeriesError,
    GeometryWarning,
    ImageReadError,
    read_volume,
    scan_dicom_folder,
    write_mask,
)

from io_testutils import make_dicom_series, make_plain_dicom, rotation


def test_series_values_and_geometry(tmp_path, ct_array):
    d = rotation("x", 25) @ rotation("z", -10)
    make_dicom_series(tmp_path / "ct", ct_array, spacing=(0.7, 0.9, 3.0), origin=(-10, 20, 30), direction=d)
    vol = read_volume(tmp_path / "ct")
    assert vol.kind == "volume" and vol.modality == "CT"
    assert vol.array.dtype == np.int16  # HU after the rescale intercept, integral
    np.testing.assert_array_equal(vol.array, ct_array)  # files were written shuffled
    np.testing.assert_allclose(vol.spacing, (0.7, 0.9, 3.0), atol=1e-6)
    np.testing.assert_allclose(vol.origin, (-10, 20, 30), atol=1e-6)
    np.testing.assert_allclose(vol.direction, d, atol=1e-6)
    info = vol.meta["dicom"]
    assert len(info["files"]) == 8 and len(set(info["sop_instance_uids"])) == 8
    # slice k of the array comes from files[k]: check its position tag
    import pydicom

    ds = pydicom.dcmread(info["files"][5], stop_before_pixels=True)
    np.testing.assert_allclose(vol.voxel_to_world([0, 0, 5]), [float(v) for v in ds.ImagePositionPatient], atol=1e-5)


def test_geometry_agrees_with_simpleitk_series_reader(tmp_path, ct_array):
    d = rotation("y", 20)
    make_dicom_series(tmp_path / "ct", ct_array, spacing=(0.6, 0.8, 2.5), origin=(5, -7, 11), direction=d)
    vol = read_volume(tmp_path / "ct")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    ref = reader.Execute()
    np.testing.assert_allclose(vol.spacing, ref.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(vol.origin, ref.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(vol.direction.ravel(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(ref))


def test_several_series_need_series_uid(tmp_path, ct_array):
    folder = tmp_path / "study"
    make_dicom_series(folder / "a", ct_array, series_uid="1.2.3.4.100", description="abdomen venous", series_number=3)
    make_dicom_series(folder / "b", ct_array[:5], series_uid="1.2.3.4.200", description="scout", series_number=1,
                      prefix="ZZ")
    with pytest.raises(DicomSeriesError) as err:
        read_volume(folder)
    msg = str(err.value)
    assert "2 DICOM series" in msg and "series_uid" in msg
    assert "1.2.3.4.100" in msg and "abdomen venous" in msg and "8 slices" in msg
    assert "1.2.3.4.200" in msg and "scout" in msg and "5 slices" in msg
    vol = read_volume(folder, series_uid="1.2.3.4.200")
    assert vol.shape == (5, 16, 16) and vol.meta["dicom"]["series_uid"] == "1.2.3.4.200"
    with pytest.raises(DicomSeriesError, match="not found"):
        read_volume(folder, series_uid="9.9.9")
    assert set(scan_dicom_folder(folder)) == {"1.2.3.4.100", "1.2.3.4.200"}


def test_missing_slice_is_an_error(tmp_path, ct_array):
    positions = [0, 3, 6, 9, 15, 18, 21, 24]  # one slice (at 12 mm) missing
    make_dicom_series(tmp_path / "gap", ct_array, positions=positions)
    with pytest.raises(DicomSeriesError, match=r"missing .*1 missing between positions 39\.00 and 45\.00 mm"):
        read_volume(tmp_path / "gap")


def test_slightly_uneven_slices_warn_and_use_mean_step(tmp_path, ct_array):
    positions = [0, 3, 6.1, 9, 12, 14.9, 18, 21]
    make_dicom_series(tmp_path / "uneven", ct_array, positions=positions)
    with pytest.warns(GeometryWarning, match="mean step 3"):
        vol = read_volume(tmp_path / "uneven")
    assert vol.spacing[2] == pytest.approx(3.0)


def test_strongly_uneven_slices_fail(tmp_path, ct_array):
    positions = [0, 2, 4, 6, 8.0, 10.8, 12.8, 14.8]
    make_dicom_series(tmp_path / "bad", ct_array, positions=positions)
    with pytest.raises(DicomSeriesError, match="uneven slice spacing"):
        read_volume(tmp_path / "bad")


def test_duplicate_positions_fail(tmp_path, ct_array):
    positions = [0, 3, 6, 9, 9, 12, 15, 18]
    make_dicom_series(tmp_path / "dup", ct_array, positions=positions)
    with pytest.raises(DicomSeriesError, match="duplicate slice position"):
        read_volume(tmp_path / "dup")


def test_mixed_orientations_fail(tmp_path, ct_array):
    uid = "1.2.3.4.555"
    make_dicom_series(tmp_path / "mix", ct_array[:4], series_uid=uid)
    make_dicom_series(tmp_path / "mix", ct_array[4:], series_uid=uid, direction=rotation("x", 90),
                      origin=(0, 0, 100), prefix="LOC")
    with pytest.raises(DicomSeriesError, match="different orientations"):
        read_volume(tmp_path / "mix")


def test_single_dicom_file_and_non_dicom_folder(tmp_path, ct_array):
    files = make_dicom_series(tmp_path / "ct", ct_array[:1])
    vol = read_volume(files[0])
    assert vol.kind == "image" and vol.shape == (1, 16, 16) and vol.meta["format"] == "dicom"
    np.testing.assert_array_equal(vol.array[0], ct_array[0])
    (tmp_path / "ct" / "broken.dcm").write_bytes(files[0].read_bytes()[:300])  # header cut short
    with pytest.warns(GeometryWarning, match="unreadable DICOM file.*broken.dcm"):
        read_volume(tmp_path / "ct")


def test_truncated_slice_names_the_file(tmp_path, ct_array):
    files = make_dicom_series(tmp_path / "ct", ct_array)
    files[3].write_bytes(files[3].read_bytes()[:-100])
    with pytest.raises(ImageReadError, match=f"{files[3].name}: cannot decode DICOM pixel data"):
        read_volume(tmp_path / "ct")


def test_dicom_seg_round_trip(tmp_path, ct_array):
    import highdicom as hd

    d = rotation("x", 15)
    make_dicom_series(tmp_path / "ct", ct_array, direction=d)
    vol = read_volume(tmp_path / "ct")
    labels = np.zeros(vol.shape, np.uint8)
    labels[2:6, 4:12, 5:11] = 2
    labels[6:8, 0:3, 0:3] = 5
    out = write_mask(labels, vol, tmp_path / "seg.dcm", labels={2: "liver", 5: "tumour"})
    seg = hd.seg.segread(str(out))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    assert [s.TrackingID for s in seg.SegmentSequence] == ["2", "5"]
    assert seg.FrameOfReferenceUID == vol.meta["dicom"]["frame_of_reference_uid"]
    uids = vol.meta["dicom"]["sop_instance_uids"]
    pix = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2])
    np.testing.assert_array_equal(pix[..., 0], labels == 2)
    np.testing.assert_array_equal(pix[..., 1], labels == 5)
    # a SEG saved next to the images does not disturb reading the series again
    (tmp_path / "ct" / "seg.dcm").write_bytes(out.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = read_volume(tmp_path / "ct")
    np.testing.assert_array_equal(again.array, ct_array)


def test_dicom_seg_overlapping_objects_and_errors(tmp_path, ct_array):
    import highdicom as hd

    make_dicom_series(tmp_path / "ct", ct_array)
    vol = read_volume(tmp_path / "ct")
    a = np.zeros(vol.shape, bool)
    a[1:4, 2:8, 2:8] = True
    b = np.zeros(vol.shape, bool)
    b[2:5, 5:10, 5:10] = True
    with pytest.warns(UserWarning, match="several objects"):
        write_mask({1: a, 3: b}, vol, tmp_path / "objs.dcm")
    seg = hd.seg.segread(str(tmp_path / "objs.dcm"))
    pix = seg.get_pixels_by_source_instance(source_sop_instance_uids=vol.meta["dicom"]["sop_instance_uids"])
    np.testing.assert_array_equal(pix[..., 0], a)
    np.testing.assert_array_equal(pix[..., 1], b)  # overlap kept in DICOM-SEG
    from medmem.io import ImageWriteError

    nifti = vol.with_array(vol.array)
    nifti.meta = {"source_path": str(tmp_path / "x.nii.gz")}
    with pytest.raises(ImageWriteError, match="DICOM source"):
        write_mask(a.astype(np.uint8), nifti, tmp_path / "nope.dcm")
    with pytest.raises(ImageWriteError, match="overwrite an input"):
        write_mask(a.astype(np.uint8), vol, vol.meta["dicom"]["files"][0])


def test_dicom_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError):
        read_volume(tmp_path / "empty")


def test_enhanced_multiframe_ct_matches_classic_series(tmp_path, ct_array):
    import highdicom as hd
    import pydicom

    d = rotation("z", 12)
    files = make_dicom_series(tmp_path / "ct", ct_array, direction=d)
    classic = read_volume(tmp_path / "ct")
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[pydicom.dcmread(f) for f in files],
        series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(), instance_number=1,
    )
    (tmp_path / "mf").mkdir()
    enhanced.save_as(str(tmp_path / "mf" / "ct.dcm"))
    vol = read_volume(tmp_path / "mf" / "ct.dcm")
    assert vol.kind == "volume" and vol.meta["dicom"]["multiframe"]
    np.testing.assert_array_equal(vol.array, classic.array)
    np.testing.assert_allclose(vol.spacing, classic.spacing, atol=1e-6)
    np.testing.assert_allclose(vol.origin, classic.origin, atol=1e-5)
    np.testing.assert_allclose(vol.direction, classic.direction, atol=1e-6)
    # DICOM-SEG on a multi-frame source references its frames
    lab = np.zeros(vol.shape, np.uint8)
    lab[3:6, 2:9, 4:12] = 1
    seg = hd.seg.segread(str(write_mask(lab, vol, tmp_path / "seg.dcm")))
    assert seg.number_of_segments == 1


def test_ultrasound_cine_is_a_video(tmp_path):
    frames = np.zeros((4, 12, 16), np.uint8)
    for t in range(4):
        frames[t, 3:6, 2 + 2 * t : 6 + 2 * t] = 200
    path = make_plain_dicom(tmp_path / "us.dcm", frames, sop_class="1.2.840.10008.5.1.4.1.1.3.1",
                            modality="US", extra={"FrameTime": "50"})
    vol = read_volume(path)
    assert vol.kind == "video" and vol.modality == "US" and vol.meta["fps"] == pytest.approx(20.0)
    np.testing.assert_array_equal(vol.array, frames)


def test_monochrome1_radiograph_is_inverted(tmp_path):
    xr = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16)
    path = make_plain_dicom(tmp_path / "cr.dcm", xr, sop_class="1.2.840.10008.5.1.4.1.1.1", modality="CR",
                            photometric="MONOCHROME1", extra={"ImagerPixelSpacing": ["0.15", "0.2"]})
    vol = read_volume(path)
    assert vol.kind == "image" and vol.modality == "XR" and vol.meta["inverted_monochrome1"]
    np.testing.assert_array_equal(vol.array[0], xr.max() + xr.min() - xr)
    np.testing.assert_allclose(vol.spacing[:2], (0.2, 0.15))  # (column, row) spacing


def test_gantry_tilt_warns(tmp_path, ct_array):
    make_dicom_series(tmp_path / "tilt", ct_array, spacing=(0.7, 0.9, 3.0), drift=(0.0, 0.5, 0.0))
    with pytest.warns(GeometryWarning, match="gantry tilt ~9.5 deg"):
        vol = read_volume(tmp_path / "tilt")
    assert vol.spacing[2] == pytest.approx(3.0)


def test_rgb_endoscopy_frame(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    path = make_plain_dicom(tmp_path / "es.dcm", rgb, sop_class="1.2.840.10008.5.1.4.1.1.77.1.1", modality="ES",
                            photometric="RGB")
    vol = read_volume(path)
    assert vol.kind == "image" and vol.modality == "endoscopy" and vol.array.shape == (1, 10, 12, 3)
    np.testing.assert_array_equal(vol.array[0], rgb)
