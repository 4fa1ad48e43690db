"""write_mask / write_volume: source geometry kept, atomic writes, inputs never overwritten."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from medmem.io import ImageWriteError, Volume, read_volume, write_mask, write_volume

from io_testutils import rotation

ANISO = (0.7, 0.9, 3.0)


@pytest.fixture
def oblique_volume(tmp_path):
    d = rotation("z", 35) @ rotation("x", -20)
    arr = np.random.default_rng(0).normal(size=(6, 10, 12)).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(ANISO)
    img.SetOrigin((12.0, -30.5, 4.25))
    img.SetDirection(tuple(d.ravel()))
    path = tmp_path / "src.nii.gz"
    sitk.WriteImage(img, str(path))
    return read_volume(path)


def _labels(shape):
    lab = np.zeros(shape, np.uint8)
    lab[1:4, 2:6, 3:9] = 1
    lab[4:6, 5:9, 1:4] = 7
    return lab


@pytest.mark.parametrize("name", ["mask.nii.gz", "mask.nii", "mask.nrrd", "mask.mha"])
def test_label_map_keeps_geometry(tmp_path, oblique_volume, name):
    lab = _labels(oblique_volume.shape)
    out = write_mask(lab, oblique_volume, tmp_path / "out" / name)
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, lab)
    assert back.array.dtype == np.uint8
    np.testing.assert_allclose(back.spacing, ANISO, rtol=1e-6)
    np.testing.assert_allclose(back.origin, oblique_volume.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, oblique_volume.direction, atol=1e-5)
    # the same voxel lands at the same world point
    np.testing.assert_allclose(back.voxel_to_world([11, 9, 5]), oblique_volume.voxel_to_world([11, 9, 5]), atol=1e-3)
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp" in p.name]  # no temp files left


def test_object_dict_with_overlap_and_labels_sidecar(tmp_path, oblique_volume):
    a = np.zeros(oblique_volume.shape, bool)
    a[0:3, 0:5, 0:5] = True
    b = np.zeros(oblique_volume.shape, bool)
    b[2:5, 3:8, 3:8] = True
    with pytest.warns(UserWarning, match="highest id"):
        out = write_mask({2: a, 300: b}, oblique_volume, tmp_path / "objs.nrrd", labels={2: "liver", 300: "spleen"})
    back = read_volume(out)
    assert back.array.dtype == np.uint16  # id 300 does not fit uint8
    assert back.array[2, 4, 4] == 300 and back.array[0, 0, 0] == 2 and back.array[5, 9, 11] == 0
    side = json.loads((tmp_path / "objs.labels.json").read_text())
    assert side["labels"] == {"2": "liver", "300": "spleen"} and side["present"] == [2, 300]
    img = sitk.ReadImage(str(out))
    assert json.loads(img.GetMetaData("medmem_labels")) == {"2": "liver", "300": "spleen"}


def test_mask_shape_and_type_errors(tmp_path, oblique_volume):
    with pytest.raises(ImageWriteError, match=r"shape \(6, 10, 11\)"):
        write_mask(np.zeros((6, 10, 11), np.uint8), oblique_volume, tmp_path / "m.nii.gz")
    with pytest.raises(ImageWriteError, match="negative"):
        write_mask(-np.ones(oblique_volume.shape, np.int16), oblique_volume, tmp_path / "m.nii.gz")
    with pytest.raises(ImageWriteError, match="integers"):
        write_mask(np.full(oblique_volume.shape, 0.5), oblique_volume, tmp_path / "m.nii.gz")
    with pytest.raises(ImageWriteError, match="positive"):
        write_mask({0: np.zeros(oblique_volume.shape, bool)}, oblique_volume, tmp_path / "m.nii.gz")
    with pytest.raises(ImageWriteError, match="unsupported output extension"):
        write_mask(np.zeros(oblique_volume.shape, np.uint8), oblique_volume, tmp_path / "m.xyz")
    with pytest.raises(ImageWriteError, match="folder path"):
        write_mask(np.zeros(oblique_volume.shape, np.uint8), oblique_volume, tmp_path / "m.png")


def test_never_overwrites_an_input(tmp_path, oblique_volume):
    src = oblique_volume.meta["source_path"]
    before = open(src, "rb").read()
    with pytest.raises(ImageWriteError, match="refusing to overwrite an input"):
        write_mask(_labels(oblique_volume.shape), oblique_volume, src)
    # same file through another spelling of the path
    other = os.path.join(os.path.dirname(src), ".", os.path.basename(src))
    with pytest.raises(ImageWriteError, match="refusing to overwrite"):
        write_volume(oblique_volume, other)
    assert open(src, "rb").read() == before


def test_never_overwrites_frames_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((4, 5), 50 * i, np.uint8)).save(folder / f"f{i}.png")
    vid = read_volume(folder)
    with pytest.raises(ImageWriteError, match="refusing to overwrite an input folder"):
        write_mask(np.zeros(vid.shape, np.uint8), vid, folder)
    with pytest.raises(ImageWriteError, match="refusing"):
        write_mask(np.zeros(vid.shape, np.uint8), vid, folder / "f1.png")


def test_failed_write_leaves_target_untouched(tmp_path, oblique_volume, monkeypatch):
    target = tmp_path / "keep.nii.gz"
    target.write_bytes(b"previous result")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", boom)
    with pytest.raises(ImageWriteError, match="disk full"):
        write_mask(_labels(oblique_volume.shape), oblique_volume, target)
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nii.gz", "src.nii.gz"]


def test_png_mask_for_2d_image_and_slice_folder(tmp_path):
    img = Volume(np.zeros((1, 8, 10, 3), np.uint8), kind="image", meta={"source_path": str(tmp_path / "in.png")})
    lab = np.zeros((8, 10), np.uint8)
    lab[2:5, 3:7] = 4
    out = write_mask(lab, img, tmp_path / "mask.png", labels={4: "polyp"})
    back = read_volume(out)
    np.testing.assert_array_equal(back.array[0], lab)
    assert (tmp_path / "mask.labels.json").exists()

    vol = Volume(np.zeros((3, 8, 10), np.int16))
    stack = np.zeros((3, 8, 10), np.uint16)
    stack[1, 1:3, 1:3] = 1000
    folder = write_mask(stack, vol, tmp_path / "slices")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["slice_0000.png", "slice_0001.png", "slice_0002.png"]
    np.testing.assert_array_equal(read_volume(folder).array, stack)


def test_png_folder_mask_reuses_frame_names(tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10):
        Image.fromarray(np.full((4, 5), i, np.uint8)).save(folder / f"img{i}.jpg")
    vid = read_volume(folder)
    masks = np.zeros(vid.shape, np.uint8)
    masks[2] = 1
    out = write_mask(masks, vid, tmp_path / "masks")
    assert sorted(p.name for p in out.iterdir()) == ["img1.png", "img10.png", "img2.png"]
    assert read_volume(out / "img10.png").array.max() == 1


def test_write_volume_formats(tmp_path, oblique_volume):
    for name in ("v.nii.gz", "v.nrrd", "v.mha"):
        back = read_volume(write_volume(oblique_volume, tmp_path / name))
        np.testing.assert_array_equal(back.array, oblique_volume.array)
        np.testing.assert_allclose(back.direction, oblique_volume.direction, atol=1e-5)
    with pytest.raises(ImageWriteError, match="one 2D image"):
        write_volume(oblique_volume, tmp_path / "v.png")
    rgb = Volume(np.random.default_rng(0).integers(0, 255, (2, 6, 7, 3), dtype=np.uint8), spacing=(0.5, 0.5, 2))
    back = read_volume(write_volume(rgb, tmp_path / "rgb.nrrd"))
    assert back.array.shape == (2, 6, 7, 3)
    np.testing.assert_array_equal(back.array, rgb.array)


def test_write_video_round_trip(tmp_path):
    frames = np.zeros((5, 16, 24, 3), np.uint8)
    for t in range(5):
        frames[t, 4:12, 2 + 3 * t : 8 + 3 * t] = (220, 40, 40)
    vid = Volume(frames, kind="video", meta={"fps": 12.0})
    back = read_volume(write_volume(vid, tmp_path / "v.mp4"))
    assert back.array.shape == frames.shape and back.meta["fps"] == pytest.approx(12.0)
    assert np.abs(back.array.astype(int) - frames).mean() < 10
