"""Helpers for the io tests: rotations and small synthetic DICOM series written with pydicom."""
from __future__ import annotations

import datetime
from pathlib import Path
from collections.abc import Sequence

import numpy as np


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about a world axis."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def make_dicom_series(
    folder: Path,
    hu: np.ndarray,
    *,
    spacing: Sequence[float] = (0.7, 0.9, 3.0),
    origin: Sequence[float] = (-10.0, 20.0, 30.0),
    direction: np.ndarray | None = None,
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_uid: str | None = None,
    description: str = "test series",
    modality: str = "CT",
    positions: Sequence[float] | None = None,
    shuffle: bool = True,
    series_number: int = 1,
    prefix: str = "IM",
    drift: Sequence[float] = (0.0, 0.0, 0.0),
) -> list[Path]:
    """Write ``hu`` (Z, Y, X) as a classic CT/MR series (one file per slice, int16 + intercept -1024).

    ``positions`` overrides the distance of each slice along the normal (mm) to
    build gaps or uneven stacks; files are written in shuffled order with
    names that do not sort by position.  ``drift`` (mm per slice, world x, y, z)
    shifts slice k by ``k * drift``, as a tilted CT gantry does.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    sop_class = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    z, rows, cols = hu.shape
    if positions is None:
        positions = [k * spacing[2] for k in range(z)]
    order = list(range(z))
    if shuffle:
        order = list(np.random.default_rng(0).permutation(z))
    paths = []
    for n, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{prefix}{(n * 7919) % 1000:04d}_{n}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.SeriesDescription = description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.PatientName = "Test^Phantom"
        ds.PatientID = "P0001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyID = "1"
        ds.AccessionNumber = "A1"
        ds.ReferringPhysicianName = ""
        today = datetime.date(2024, 1, 1)
        ds.StudyDate = ds.SeriesDate = today.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.Manufacturer = "medmem-tests"
        pos = np.asarray(origin, dtype=float) + d[:, 2] * float(positions[k]) + k * np.asarray(drift, dtype=float)
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*d[:, 0], *d[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing, column spacing
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.PixelData = (hu[k].astype(np.int32) + 1024).astype(np.int16).tobytes()
        pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
        paths.append(path)
    return paths


def make_plain_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    sop_class: str,
    modality: str,
    photometric: str = "MONOCHROME2",
    extra: dict | None = None,
) -> Path:
    """A single DICOM file without geometry: uint8/uint16 (Y, X), (F, Y, X) multi-frame, or (Y, X, 3) for RGB."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = "P0002"
    ds.InstanceNumber = 1
    colour = photometric == "RGB"  # then pixels are (Y, X, 3), interleaved
    if pixels.ndim == 3 and not colour and pixels.shape[0] > 1:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[:2] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path
