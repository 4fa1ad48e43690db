"""Image geometry: voxel <-> world coordinates and anatomical axes, in one place.

Conventions (the same everywhere in medmem):

* **World space** is ITK/DICOM patient space, LPS: +x towards the patient's
  Left, +y Posterior, +z Superior; units are millimetres.
* **Voxel index** ``(i, j, k)`` is given in ITK order ``(x, y, z)`` = (column,
  row, slice) of the stored array, which is indexed ``array[k, j, i]``
  (numpy order ``(Z, Y, X)``).  Indices are continuous: integer values are
  voxel centres.
* ``spacing`` and ``origin`` are ``(x, y, z)`` tuples in mm; ``origin`` is the
  world position of the centre of voxel ``(0, 0, 0)``.
* ``direction`` is a 3x3 matrix whose **column i** is the world direction (a
  unit vector in x, y, z) of voxel index axis i.

So ``world = origin + direction @ (spacing * index)`` and
``index = (direction.T @ (world - origin)) / spacing`` (direction is orthonormal).
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Dict, Sequence, Tuple, Union

import numpy as np

from .errors import GeometryWarning, ImageReadError

#: anatomical slicing-axis name -> world axis (0 = x L-R, 1 = y A-P, 2 = z S-I)
AXIS_NAMES: Dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
_ALIASES = {"transverse": "axial", "transversal": "axial", "frontal": "coronal"}


def _vec3(value: Sequence[float], name: str) -> Tuple[float, float, float]:
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.shape != (3,):
        raise ValueError(f"{name} must have 3 values (x, y, z), got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {tuple(arr)}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True)
class Geometry:
    """Where an array of shape ``shape`` (Z, Y, X) lies in world space (see module docstring)."""

    shape: Tuple[int, int, int]
    spacing: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "spacing", _vec3(self.spacing, "spacing"))
        object.__setattr__(self, "origin", _vec3(self.origin, "origin"))
        d = np.array(self.direction, dtype=float).reshape(3, 3)
        object.__setattr__(self, "direction", d)
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")

    def voxel_to_world(self, idx: Union[np.ndarray, Sequence]) -> np.ndarray:
        """Continuous voxel indices (N, 3) in (x, y, z) order -> world points (N, 3) in mm."""
        return voxel_to_world(idx, self.spacing, self.origin, self.direction)

    def world_to_voxel(self, points_mm: Union[np.ndarray, Sequence]) -> np.ndarray:
        """World points (N, 3) in mm -> continuous voxel indices (N, 3) in (x, y, z) order."""
        return world_to_voxel(points_mm, self.spacing, self.origin, self.direction)

    def contains_index(self, idx: Union[np.ndarray, Sequence], tol: float = 0.5) -> np.ndarray:
        """Whether continuous indices (N, 3, x-y-z order) lie inside the grid (within ``tol`` voxels)."""
        idx = np.atleast_2d(np.asarray(idx, dtype=float))
        size_xyz = np.array(self.shape[::-1], dtype=float)
        return np.all((idx >= -tol) & (idx <= size_xyz - 1 + tol), axis=1)


def _as_points(points: Union[np.ndarray, Sequence]) -> Tuple[np.ndarray, bool]:
    arr = np.asarray(points, dtype=float)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.shape[-1] != 3:
        raise ValueError(f"points must have shape (N, 3) or (3,), got {np.shape(points)}")
    return arr, single


def voxel_to_world(
    idx: Union[np.ndarray, Sequence],
    spacing: Sequence[float],
    origin: Sequence[float],
    direction: Union[np.ndarray, Sequence],
) -> np.ndarray:
    """Voxel indices ``(N, 3)`` or ``(3,)`` in (x, y, z) order -> world mm, same shape."""
    arr, single = _as_points(idx)
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    out = np.asarray(origin, dtype=float) + (arr * np.asarray(spacing, dtype=float)) @ d.T
    return out[0] if single else out


def world_to_voxel(
    points_mm: Union[np.ndarray, Sequence],
    spacing: Sequence[float],
    origin: Sequence[float],
    direction: Union[np.ndarray, Sequence],
) -> np.ndarray:
    """World points ``(N, 3)`` or ``(3,)`` in mm -> continuous voxel indices (x, y, z order).

    Uses the inverse of ``direction`` (not its transpose) so it stays exact for
    slightly non-orthonormal matrices.
    """
    arr, single = _as_points(points_mm)
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    rel = arr - np.asarray(origin, dtype=float)
    out = np.linalg.solve(d, rel.T).T / np.asarray(spacing, dtype=float)
    return out[0] if single else out


def orthonormality_error(direction: np.ndarray) -> float:
    """Largest absolute entry of ``D.T @ D - I``."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    return float(np.max(np.abs(d.T @ d - np.eye(3))))


def orthonormalize(direction: np.ndarray) -> np.ndarray:
    """Nearest orthonormal matrix (polar decomposition), keeping the handedness."""
    u, _, vt = np.linalg.svd(np.asarray(direction, dtype=float).reshape(3, 3))
    return u @ vt


def check_direction(direction: Union[np.ndarray, Sequence], *, tol: float = 1e-4, source: str = "") -> np.ndarray:
    """Return ``direction`` as a float 3x3 array, raising :class:`ImageReadError` unless orthonormal.

    ``tol`` bounds ``max|D.T D - I|``; directions read from files in float32
    typically deviate by ~1e-7.
    """
    d = np.asarray(direction, dtype=float)
    where = f" in {source}" if source else ""
    if d.size != 9:
        raise ImageReadError(f"direction{where} must be a 3x3 matrix, got {d.size} values")
    d = d.reshape(3, 3)
    if not np.all(np.isfinite(d)):
        raise ImageReadError(f"direction{where} contains NaN or inf: {d.tolist()}")
    err = orthonormality_error(d)
    if err > tol:
        raise ImageReadError(
            f"direction matrix{where} is not orthonormal (max |D^T D - I| = {err:.3g}); "
            "sheared or scaled voxel axes are not supported. Resample the image onto an "
            f"orthogonal grid first. Matrix: {np.round(d, 5).tolist()}"
        )
    return d


def repair_direction(d: np.ndarray, path: object, *, exact_tol: float = 1e-4, repair_tol: float = 1e-2) -> np.ndarray:
    """A direction read from a file: kept if orthonormal within ``exact_tol``, snapped to the nearest
    orthonormal matrix with a :class:`GeometryWarning` up to ``repair_tol`` (float32 headers,
    converter noise), else :class:`ImageReadError` (sheared grids are not supported)."""
    err = orthonormality_error(d)
    if err <= exact_tol:
        return d
    if err <= repair_tol:
        warnings.warn(
            f"{path}: direction matrix is slightly non-orthonormal (max |D^T D - I| = {err:.2g}); "
            "snapped to the nearest orthonormal matrix",
            GeometryWarning,
            stacklevel=4,
        )
        return orthonormalize(d)
    raise ImageReadError(
        f"{path}: direction matrix is not orthonormal (max |D^T D - I| = {err:.3g}); sheared or "
        "scaled voxel axes are not supported. Resample the image onto an orthogonal grid first. "
        f"Matrix: {np.round(d, 5).tolist()}"
    )


def _assignment(direction: np.ndarray) -> Tuple[int, int, int]:
    """For each world axis (x, y, z), the index axis most aligned with it (a permutation)."""
    a = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))  # a[world, index]
    best, best_score = (0, 1, 2), -1.0
    for perm in itertools.permutations(range(3)):
        # perm[w] = index axis assigned to world axis w
        score = sum(a[w, perm[w]] for w in range(3))
        if score > best_score + 1e-12:
            best, best_score = perm, score
    return best  # type: ignore[return-value]


def _canon(name: str) -> str:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in AXIS_NAMES:
        raise ValueError(
            f"unknown slicing axis {name!r}; use 'axial', 'coronal' or 'sagittal' (or an array axis 0, 1, 2)"
        )
    return key


def itk_axis_for(name: str, direction: Union[np.ndarray, Sequence]) -> int:
    """Index axis (ITK order: 0 = x/column, 1 = y/row, 2 = z/slice) closest to an anatomical axis.

    "axial" is the index axis closest to world z (S-I), "coronal" to world y
    (A-P), "sagittal" to world x (L-R); ties in oblique volumes are broken so
    that the three names always map to three different axes.
    """
    return _assignment(np.asarray(direction))[AXIS_NAMES[_canon(name)]]


def array_axis_for(name: Union[str, int], direction: Union[np.ndarray, Sequence]) -> int:
    """Axis of the numpy array (0 = Z, 1 = Y, 2 = X) for an anatomical name or an array axis int."""
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if int(name) not in (0, 1, 2):
            raise ValueError(f"array axis must be 0, 1 or 2, got {name}")
        return int(name)
    return 2 - itk_axis_for(str(name), direction)


def anatomical_axes(direction: Union[np.ndarray, Sequence]) -> Dict[str, int]:
    """``{"axial": a, "coronal": b, "sagittal": c}`` array axes (0 = Z, 1 = Y, 2 = X)."""
    perm = _assignment(np.asarray(direction))
    return {name: 2 - perm[w] for name, w in AXIS_NAMES.items()}


def orientation_code(direction: Union[np.ndarray, Sequence]) -> str:
    """Three letters: the world direction each index axis (x, y, z) points *towards*, LPS space.

    Identity direction gives ``"LPS"``; a NIfTI in RAS+ storage read by ITK gives ``"RAS"``.
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    pos, neg = "LPS", "RAI"
    perm = _assignment(d)
    world_of_index = {perm[w]: w for w in range(3)}
    out = []
    for i in range(3):
        w = world_of_index[i]
        out.append(pos[w] if d[w, i] >= 0 else neg[w])
    return "".join(out)
