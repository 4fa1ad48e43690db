"""Every reader, fed truncated files and random bytes, ends in one clear ImageReadError.

Allowed outcomes for a damaged file: an :class:`ImageReadError` whose one-line message names
the file, or (when the damage misses the pixel data, e.g. the last bytes of an mp4 index) the
very same array as the intact file. A shorter video must come with a warning. Never another
exception type, a hang, or a silently different array.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from medmem.io import ImageReadError, read_volume

FORMATS = ["nifti.nii", "nifti_gz.nii.gz", "nifti2.nii", "nifti2_gz.nii.gz", "nrrd_raw.nrrd", "nrrd_gz.nrrd",
           "mha_raw.mha", "mha_zlib.mha", "freesurfer.mgz", "freesurfer.mgh", "grey8.png", "grey16.png",
           "image.tif", "stack.tif", "photo.jpg", "image.bmp", "video.mp4", "video_faststart.mp4", "single.dcm",
           "dicom_series"]
DAMAGE = ["cut:1", "cut:16", "cut:64", "cut:200", "cut:348", "cut:1/3", "cut:1/2", "cut:-16", "cut:-1",
          "random", "random:64", "zeros"]


def _damaged(data: bytes, how: str, seed: int) -> bytes | None:
    n = len(data)
    rng = np.random.default_rng(seed)
    if how == "random":
        return rng.bytes(n)
    if how == "random:64":
        return rng.bytes(64)
    if how == "zeros":
        return bytes(n)
    spec = how.split(":", 1)[1]
    if "/" in spec:
        a, b = (int(v) for v in spec.split("/"))
        cut = n * a // b
    else:
        cut = int(spec) if int(spec) > 0 else n + int(spec)
    return data[:cut] if 0 < cut < n else None


@pytest.fixture(scope="module")
def originals(samples) -> dict[str, np.ndarray]:
    return {name: read_volume(samples[name]).array for name in FORMATS}


def _read_outcome(path: Path, expected: np.ndarray, name: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            vol = read_volume(path)
        except ImageReadError as e:
            msg = str(e)
            assert path.name in msg, f"the error does not name the file: {msg}"
            assert "\n" not in msg, f"the error is not one line: {msg!r}"
            return
    if vol.array.shape == expected.shape and np.array_equal(vol.array, expected):
        return  # the damage missed the data: same result as the intact file
    told = [w for w in caught if issubclass(w.category, UserWarning) and path.name in str(w.message)]
    assert name.endswith(".mp4") and told, (
        f"{path.name}: read silently as a different array {vol.array.shape} (intact: {expected.shape})")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", FORMATS)
def test_damaged_files_give_a_clear_error(tmp_path, samples, originals, name):
    src = samples[name]
    for i, how in enumerate(DAMAGE):
        if src.is_dir():  # a DICOM series: damage one slice file of a copy
            target_dir = tmp_path / f"{i}_{src.name}"
            shutil.copytree(src, target_dir)
            victim = sorted(target_dir.iterdir())[2]
            data = _damaged(victim.read_bytes(), how, i)
            if data is None:
                continue
            victim.write_bytes(data)
            _read_outcome(target_dir, originals[name], name)
            continue
        data = _damaged(src.read_bytes(), how, i)
        if data is None:
            continue
        path = tmp_path / f"{how.replace(':', '_').replace('/', 'of')}_{src.name}"
        path.write_bytes(data)
        _read_outcome(path, originals[name], name)


def test_truncated_faststart_video_warns_about_missing_frames(tmp_path):
    """ffmpeg stops quietly at the end of the data; the reader compares with the announced duration."""
    import imageio.v2 as iio

    full = tmp_path / "full.mp4"
    noise = np.random.default_rng(0).integers(0, 255, (20, 64, 64, 3), dtype=np.uint8)  # big frames
    with iio.get_writer(str(full), format="FFMPEG", fps=5, macro_block_size=1,
                        ffmpeg_params=["-movflags", "+faststart"]) as w:
        for f in noise:
            w.append_data(f)
    assert read_volume(full).shape[0] == 20
    path = tmp_path / "half.mp4"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.warns(UserWarning, match=r"half.mp4: only \d+ of the 20 frames"):
        vol = read_volume(path)
    assert 0 < vol.shape[0] < 20


def test_empty_file_and_empty_dicom_folder(tmp_path):
    for ext in (".nii.gz", ".nrrd", ".png", ".mp4", ".mgz", ".dcm"):
        p = tmp_path / f"empty{ext}"
        p.touch()
        with pytest.raises(ImageReadError, match="empty"):
            read_volume(p)
