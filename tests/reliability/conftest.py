"""Fixtures for the bad-input suite: one small valid file per format, tiny model weights."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "io"))  # io_testutils


def _ct() -> np.ndarray:
    z, y, x = np.mgrid[:6, :20, :24]
    return (-1000 + 30 * z + 5 * y + 3 * x).astype(np.int16)


def _write_samples(d: Path) -> dict[str, Path]:
    """One valid file (or DICOM folder) per reader, named by what it exercises."""
    import imageio.v2 as iio
    import nibabel as nib
    import SimpleITK as sitk
    import tifffile
    from PIL import Image

    from io_testutils import make_dicom_series, make_plain_dicom

    ct = _ct()
    img = sitk.GetImageFromArray(ct)
    img.SetSpacing((0.8, 0.9, 2.5))
    out: dict[str, Path] = {}
    for name, compress in (("nifti.nii", False), ("nifti_gz.nii.gz", True), ("nrrd_raw.nrrd", False),
                           ("nrrd_gz.nrrd", True), ("mha_raw.mha", False), ("mha_zlib.mha", True)):
        sitk.WriteImage(img, str(d / name), compress)
        out[name] = d / name
    aff = np.diag([0.8, 0.9, 2.5, 1.0])
    for name in ("nifti2.nii", "nifti2_gz.nii.gz"):
        nib.save(nib.Nifti2Image(ct.transpose(2, 1, 0), aff), str(d / name))
        out[name] = d / name
    for name in ("freesurfer.mgz", "freesurfer.mgh"):
        nib.save(nib.MGHImage(ct.transpose(2, 1, 0), aff), str(d / name))
        out[name] = d / name
    grey = (np.arange(40 * 50).reshape(40, 50) % 251).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(d / "grey8.png"))
    sitk.WriteImage(sitk.GetImageFromArray(grey.astype(np.uint16) * 200), str(d / "grey16.png"))
    tifffile.imwrite(str(d / "image.tif"), grey.astype(np.uint16) * 200)
    tifffile.imwrite(str(d / "stack.tif"), (ct + 1000).astype(np.uint16))
    Image.fromarray(grey).save(d / "photo.jpg", quality=95)
    Image.fromarray(grey).save(d / "image.bmp")
    for name in ("grey8.png", "grey16.png", "image.tif", "stack.tif", "photo.jpg", "image.bmp"):
        out[name] = d / name
    frames = np.zeros((12, 32, 48, 3), np.uint8)
    frames[:, 8:24, 10:30] = 200
    for i in range(12):
        frames[i, :, i * 3:i * 3 + 3] = 90
    for name, params in (("video.mp4", None), ("video_faststart.mp4", ["-movflags", "+faststart"])):
        with iio.get_writer(str(d / name), format="FFMPEG", fps=5, macro_block_size=1, ffmpeg_params=params) as w:
            for f in frames:
                w.append_data(f)
        out[name] = d / name
    make_plain_dicom(d / "single.dcm", grey.astype(np.uint16), sop_class="1.2.840.10008.5.1.4.1.1.7", modality="OT")
    out["single.dcm"] = d / "single.dcm"
    make_dicom_series(d / "dicom_series", ct, shuffle=False)
    out["dicom_series"] = d / "dicom_series"
    return out


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> dict[str, Path]:
    """{name: path} of valid inputs, one per format (see :func:`_write_samples`)."""
    return _write_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> dict[str, Path]:
    """The test_tiny model saved as safetensors (with its config) and as an official-layout `.pt`."""
    import torch

    import medmem
    from medmem.checkpoint import save_weights

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = medmem.build_model("test_tiny", device="cpu")
    st = save_weights(model, d / "tiny.safetensors")
    pt = d / "tiny.pt"
    torch.save({"model": model.state_dict()}, pt)
    return {"safetensors": st, "pt": pt}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These inputs are tiny: one thread is as fast, and far faster on a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
