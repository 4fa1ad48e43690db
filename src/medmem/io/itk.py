"""SimpleITK bridge: reading ITK-supported files (NIfTI, NRRD, MHA/MHD, ...) and building ITK images.

NIfTI-2 and FreeSurfer MGH/MGZ, which ITK cannot read, go through :mod:`medmem.io.nib`
and then the same axis handling (time points, channels) as the ITK formats.

Internal module; the public entry points are :func:`medmem.io.read_volume`,
:func:`medmem.io.write_mask` and :func:`medmem.io.write_volume`.
"""
from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .errors import ImageReadError
from .geometry import Geometry, repair_direction
from .native import native_stderr


def itk_error_message(exc: BaseException) -> str:
    """The informative line(s) of a SimpleITK exception, without C++ file names and line numbers."""
    text = str(exc)
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("Exception thrown in SimpleITK"):
            continue
        line = re.sub(r"^/\S+\.(cxx|h|hxx|cpp):\d+:\s*", "", line)
        line = re.sub(r"^(sitk::ERROR|itk::ERROR|ITK ERROR):\s*", "", line, flags=re.I)
        line = re.sub(r"^\w+\(0x[0-9a-f]+\):\s*", "", line)
        if line:
            lines.append(line)
    msg = " ".join(lines)
    # ITK appends errno text that is misleading for files that exist but are corrupt
    msg = msg.replace(" Reason: No such file or directory", "")
    if "Unable to determine ImageIO reader" in msg:
        msg = "ITK recognises no image format in this file (wrong extension, or not an image)"
    return msg[:500] or type(exc).__name__


# --------------------------------------------------------------------------- integrity
def _nifti_expected_bytes(header_bytes: bytes) -> Optional[int]:
    """Bytes a NIfTI-1/2 file must hold (vox_offset + data), from its header; None if not parseable."""
    import nibabel as nib

    sizes = {int(np.frombuffer(header_bytes[:4], f"{o}i4")[0]) for o in "<>"} if len(header_bytes) >= 4 else set()
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        need = klass.sizeof_hdr
        if len(header_bytes) < need or need not in sizes:  # the wrong class would log a "fix" to stderr
            continue
        try:
            hdr = klass.from_fileobj(_BytesReader(header_bytes))
        except Exception:
            continue
        shape = hdr.get_data_shape()
        if 0 in shape:
            return -1  # signals a zero-size image
        itemsize = np.dtype(hdr.get_data_dtype()).itemsize
        n = int(np.prod(shape, dtype=np.int64)) * itemsize
        return int(hdr.get_data_offset()) + n
    return None


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = len(self._data) - self._pos
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else (self._pos + pos if whence == 1 else len(self._data) + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos


def check_nifti_complete(path: Path) -> None:
    """Raise :class:`ImageReadError` if a .nii / .nii.gz is truncated or its gzip stream is corrupt.

    ITK silently zero-fills missing data in truncated NIfTI files, so medmem
    checks the byte count (and, for .gz, the whole gzip stream with its CRC).
    """
    name = path.name.lower()
    try:
        if name.endswith(".gz"):
            total, head = 0, b""
            with gzip.open(path, "rb") as f:
                while True:
                    chunk = f.read(1 << 22)
                    if not chunk:
                        break
                    if len(head) < 1024:
                        head += chunk[: 1024 - len(head)]
                    total += len(chunk)
        else:
            total = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(1024)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise ImageReadError(
            f"{path}: the gzip stream is truncated or corrupt ({exc}); the file is incomplete — "
            "re-download or re-export it"
        ) from exc
    expected = _nifti_expected_bytes(head)
    if expected is None:
        raise ImageReadError(f"{path}: not a NIfTI file (no valid NIfTI-1/2 header)")
    if expected < 0:
        raise ImageReadError(f"{path}: image has zero size (a dimension of length 0 in the NIfTI header)")
    if total < expected:
        raise ImageReadError(
            f"{path}: NIfTI file is truncated: header promises {expected} bytes, file holds {total} "
            f"({100.0 * total / max(expected, 1):.1f}%) — re-download or re-export it"
        )


# --------------------------------------------------------------------------- reading
def _file_modality(value: str) -> Optional[str]:
    """Modality stored in a file header (MetaImage "MET_MOD_CT", NRRD key "modality"), or None."""
    v = str(value).strip().upper()
    if v.startswith("MET_MOD_"):
        v = v[len("MET_MOD_"):]
    if v in ("", "UNKNOWN", "OTHER"):
        return None
    return {"MRI": "MR"}.get(v, v)


def _read_info(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with native_stderr():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        msg = itk_error_message(exc)
        if "orthonormal" in msg.lower():
            raise _NonOrthonormal(msg) from exc
        raise ImageReadError(f"{path}: cannot read image header: {msg}") from exc
    return reader


class _NonOrthonormal(Exception):
    pass


class _ReadByNibabel(Exception):
    """Internal signal: the file was read with nibabel (NIfTI-2, MGH/MGZ)."""


def _restore_nonfinite(arr: np.ndarray, path: Path) -> np.ndarray:
    """Put back the NaN/inf voxels that ITK's NIfTI reader silently turns into 0 (float files only)."""
    import nibabel as nib

    if not np.issubdtype(arr.dtype, np.floating):
        return arr
    try:
        raw = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception:  # ITK read it; nibabel's view is only a cross-check
        return arr
    bad = ~np.isfinite(raw)
    if not bad.any():
        return arr
    raw = np.transpose(raw, tuple(range(raw.ndim - 1, -1, -1)))
    bad = np.transpose(bad, tuple(range(bad.ndim - 1, -1, -1)))
    if raw.shape != arr.shape:
        raise ImageReadError(f"{path}: {int(bad.sum())} voxel(s) are not finite (NaN or inf)")
    arr = arr.copy()
    arr[bad] = raw[bad]
    return arr


def read_itk(
    path: Path,
    *,
    channel: Optional[int] = None,
    timepoint: Optional[int] = None,
    fmt: str = "itk",
) -> Tuple[np.ndarray, Geometry, Dict[str, Any]]:
    """Read an ITK-supported file.

    Returns ``(array, geometry, meta)`` with ``array`` shaped ``(Z, Y, X)`` or
    ``(Z, Y, X, C)`` (C = 3 for colour pixels kept as RGB).  4D (time) files
    need ``timepoint`` and multi-component files ``channel``, unless the
    extra axis has length 1.
    """
    from .nib import nifti_version, read_nibabel

    is_nifti = fmt == "nifti"
    if is_nifti:
        check_nifti_complete(path)
    meta: Dict[str, Any] = {}
    try:
        if fmt == "mgh" or (is_nifti and nifti_version(path) == 2):  # ITK reads neither
            arr, sp3, or3, dir3, meta = read_nibabel(path)
            raise _ReadByNibabel
        reader = _read_info(path)
        dim = reader.GetDimension()
        size = tuple(int(s) for s in reader.GetSize())
        ncomp = int(reader.GetNumberOfComponents())
        if 0 in size:
            raise ImageReadError(f"{path}: image has zero size {size}")
        try:
            with native_stderr():
                img = reader.Execute()
        except RuntimeError as exc:
            if "orthonormal" in itk_error_message(exc).lower():
                raise _NonOrthonormal(str(exc)) from exc
            raise ImageReadError(
                f"{path}: cannot read pixel data (file truncated or corrupt?): {itk_error_message(exc)}"
            ) from exc
        arr = sitk.GetArrayFromImage(img)  # reversed axes: (.., z, y, x[, c])
        meta["original_dtype"] = str(arr.dtype)
        if is_nifti and ncomp == 1:
            arr = _restore_nonfinite(arr, path)
        spacing = np.array(img.GetSpacing(), dtype=float)
        origin = np.array(img.GetOrigin(), dtype=float)
        direction = np.array(img.GetDirection(), dtype=float).reshape(dim, dim)
        for key in img.GetMetaDataKeys():
            if key.lower() in ("modality", "dicom_modality"):
                mod = _file_modality(img.GetMetaData(key))
                if mod:
                    meta["file_modality"] = mod
    except _ReadByNibabel:
        ncomp = 1
        spacing, origin, direction = np.array(sp3), np.array(or3), dir3
    except _NonOrthonormal:
        if not is_nifti:
            raise ImageReadError(f"{path}: direction matrix is not orthonormal; cannot read") from None
        arr, sp3, or3, dir3, meta = read_nibabel(path)
        ncomp = 1
        spacing, origin, direction = np.array(sp3), np.array(or3), dir3
        meta["geometry_source"] = "nibabel (ITK rejected the affine)"

    # ---- bring to (Z, Y, X[, C]) with 3D geometry
    if ncomp > 1:
        comp = arr.shape[-1]
        spatial = arr.shape[:-1]
    else:
        comp = 1
        spatial = arr.shape
    ndim_sp = len(spatial)
    if ndim_sp == 2:
        arr = arr[None]
        sp3 = np.array([spacing[0], spacing[1], 1.0])
        or3 = np.array([origin[0], origin[1], 0.0])
        d3 = np.eye(3)
        d3[:2, :2] = direction[:2, :2]
        spacing, origin, direction = sp3, or3, d3
    elif ndim_sp > 5:
        raise ImageReadError(f"{path}: images with {ndim_sp} dimensions are not supported (at most 5)")
    elif ndim_sp >= 4:
        extra = spatial[: ndim_sp - 3]  # numpy order, outermost first: (T,) or (C, T)
        # ITK/NIfTI: the 4th dimension is time, the 5th holds channels (vector components)
        names = ["timepoint", "channel"][: len(extra)][::-1]
        picks = {"timepoint": timepoint, "channel": channel}
        missing = [
            f"{name}=0..{n - 1}" for name, n in zip(names, extra, strict=True) if picks.get(name) is None and n > 1
        ]
        if missing:
            raise ImageReadError(
                f"{path}: image has {ndim_sp} dimensions (numpy shape {tuple(spatial)}, last three Z, Y, X); "
                f"choose with {' and '.join(missing)}"
            )
        index = []
        for name, n in zip(names, extra, strict=True):
            want = 0 if picks.get(name) is None else int(picks[name])  # type: ignore[arg-type]
            if not 0 <= want < n:
                raise ImageReadError(f"{path}: {name}={want} out of range 0..{n - 1}")
            index.append(want)
            if picks.get(name) is not None:
                meta[name] = want
        arr = arr[tuple(index)]
        spacing, origin, direction = spacing[:3], origin[:3], direction[:3, :3]
        if "channel" in names:
            channel = None
        if "timepoint" in names:
            timepoint = None
    if timepoint not in (None, 0):
        raise ImageReadError(f"{path}: timepoint={timepoint} given but the image has no time axis")

    if comp > 1:
        if channel is not None:
            if not 0 <= int(channel) < comp:
                raise ImageReadError(f"{path}: channel={channel} out of range 0..{comp - 1}")
            arr = arr[..., int(channel)]
            meta["channel"] = int(channel)
        elif comp in (3, 4) and arr.dtype in (np.uint8, np.uint16):
            arr = arr[..., :3]  # colour (alpha dropped)
        else:
            raise ImageReadError(
                f"{path}: pixels have {comp} components; choose one with channel=0..{comp - 1}"
            )
    elif channel not in (None, 0):
        raise ImageReadError(f"{path}: channel={channel} given but the image has a single channel")

    direction = repair_direction(np.asarray(direction, dtype=float).reshape(3, 3), path)
    geom = Geometry(arr.shape[:3], tuple(spacing), tuple(origin), direction)
    return np.ascontiguousarray(arr), geom, meta


# --------------------------------------------------------------------------- writing
def to_sitk(array: np.ndarray, geom: Geometry) -> sitk.Image:
    """numpy ``(Z, Y, X)`` or ``(Z, Y, X, C)`` + geometry -> 3D SimpleITK image."""
    arr = np.ascontiguousarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    img = sitk.GetImageFromArray(arr, isVector=arr.ndim == 4)
    img.SetSpacing(tuple(float(s) for s in geom.spacing))
    img.SetOrigin(tuple(float(o) for o in geom.origin))
    img.SetDirection(tuple(float(v) for v in np.asarray(geom.direction).reshape(-1)))
    return img
