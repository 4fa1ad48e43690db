"""nibabel bridge: NIfTI-2 and FreeSurfer MGH/MGZ, which ITK cannot read, with their geometry.

nibabel gives a voxel -> world affine in RAS+ for index order (i, j, k) = (x, y, z);
medmem keeps ITK's LPS convention (see :mod:`medmem.io.geometry`), so on reading
``LPS = diag(-1, -1, 1) @ RAS`` and the affine is split into spacing (column norms),
direction (normalised columns) and origin (translation); writing inverts this.

Internal module; the public entry points are :func:`medmem.io.read_volume`,
:func:`medmem.io.write_mask` and :func:`medmem.io.write_volume`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from .errors import ImageReadError, ImageWriteError
from .geometry import Geometry, repair_direction

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
#: on-disk types MGH can hold
_MGH_TYPES = (np.uint8, np.int16, np.int32, np.float32)


def nifti_version(path: Path) -> Optional[int]:
    """1 or 2 from a .nii / .nii.gz header's ``sizeof_hdr`` (348 / 540), None if neither."""
    import gzip

    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as f:
            head = f.read(4)
    except (OSError, EOFError):
        return None
    for order in ("<", ">"):
        if len(head) == 4:
            n = int(np.frombuffer(head, dtype=f"{order}i4")[0])
            if n in (348, 540):
                return 1 if n == 348 else 2
    return None


def affine_to_geometry(affine: np.ndarray, path: Union[Path, str] = "") -> Tuple[tuple, tuple, np.ndarray]:
    """RAS affine (4x4) -> (spacing, origin, direction) in medmem's LPS convention."""
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=float)[:3, :4]
    m, origin = lps[:, :3], lps[:, 3]
    if not np.all(np.isfinite(lps)):
        raise ImageReadError(f"{path}: the affine holds NaN or inf")
    spacing = np.linalg.norm(m, axis=0)
    if np.any(spacing <= 0):
        raise ImageReadError(f"{path}: the affine has a zero-length voxel axis")
    direction = repair_direction(m / spacing, path)
    return tuple(float(s) for s in spacing), tuple(float(o) for o in origin), direction


def geometry_to_affine(geom: Geometry) -> np.ndarray:
    """medmem geometry (LPS) -> the RAS affine nibabel stores."""
    aff = np.eye(4)
    aff[:3, :3] = _RAS_TO_LPS @ np.asarray(geom.direction, float) @ np.diag(geom.spacing)
    aff[:3, 3] = _RAS_TO_LPS @ np.asarray(geom.origin, float)
    return aff


def read_nibabel(path: Path) -> Tuple[np.ndarray, tuple, tuple, np.ndarray, Dict[str, Any]]:
    """Read NIfTI-1/2 or MGH/MGZ: (array in reversed axis order (..., z, y, x), spacing, origin, direction, meta).

    The array keeps extra axes outermost (time first), as ITK gives them, so the caller picks
    time points the same way for every format.
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ImageReadError(f"{path}: cannot read the file (truncated or corrupt?): {reason}") from exc
    if data.dtype.fields is not None:
        raise ImageReadError(f"{path}: structured (RGB) voxel type {data.dtype} is not supported here")
    spacing, origin, direction = affine_to_geometry(img.affine, path)
    if data.ndim < 3:
        data = data.reshape(data.shape + (1,) * (3 - data.ndim))
    data = np.transpose(data, tuple(range(data.ndim - 1, -1, -1)))  # (x, y, z, t) -> (t, z, y, x)
    meta: Dict[str, Any] = {"original_dtype": str(img.get_data_dtype()), "reader": "nibabel"}
    if isinstance(img, nib.Nifti2Image):
        meta["nifti_version"] = 2
    return np.ascontiguousarray(data), spacing, origin, direction, meta


def write_nibabel(arr: np.ndarray, geom: Geometry, path: Path, fmt: str) -> None:
    """Write ``(Z, Y, X)`` data with ``geom`` to ``path`` as "nifti2" or "mgh" (.mgz compressed)."""
    import nibabel as nib

    data = np.asarray(arr)
    if data.ndim != 3:
        raise ImageWriteError(f"{path}: {fmt} output takes a grey (Z, Y, X) array, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    data = np.ascontiguousarray(data.transpose(2, 1, 0))
    aff = geometry_to_affine(geom)
    if fmt == "nifti2":
        img = nib.Nifti2Image(data, aff)
        img.set_qform(aff, code=1)
        img.set_sform(aff, code=1)
    elif fmt == "mgh":
        if data.dtype not in _MGH_TYPES:
            target = np.int32 if np.issubdtype(data.dtype, np.integer) else np.float32
            if np.issubdtype(data.dtype, np.integer) and data.size and int(data.max()) > np.iinfo(np.int32).max:
                raise ImageWriteError(f"{path}: values above 2^31 do not fit an MGH file")
            data = data.astype(target)
        img = nib.MGHImage(data, aff)
    else:  # pragma: no cover - callers pass one of the two
        raise ImageWriteError(f"{path}: nibabel writer has no format {fmt!r}")
    try:
        nib.save(img, str(path))
    except Exception as exc:
        raise ImageWriteError(f"{path}: cannot write: {exc}") from exc
