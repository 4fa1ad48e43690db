"""The :class:`Volume` container: an array plus the geometry that places it in the world.

Array layout
    ``(Z, Y, X)`` for grayscale and ``(Z, Y, X, C)`` for colour (C = 3, RGB).
    A 2D image has ``Z = 1``; a video or a folder of frames has ``Z`` = number
    of frames.  ``array[k, j, i]`` is the voxel with ITK index ``(i, j, k)``.

Geometry (ITK physical order, millimetres, LPS world space)
    ``spacing`` and ``origin`` are ``(x, y, z)``; ``direction`` is 3x3 with
    column i = world direction of index axis i.  See :mod:`medmem.io.geometry`.

Slicing
    :meth:`Volume.slices` returns the array with a chosen slicing axis first,
    the two others keeping their stored order (no flips), so a 2D slice ``s``
    is ``view.array[s]`` with rows = the first remaining array axis and
    columns = the second.  :meth:`SliceView.to_volume` (or
    :meth:`Volume.from_slices`) puts per-slice results back in ``(Z, Y, X)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .geometry import (
    Geometry,
    anatomical_axes,
    array_axis_for,
    check_direction,
    orientation_code,
    voxel_to_world,
    world_to_voxel,
)

KINDS = ("volume", "image", "video")
_AXIS_LETTERS = ("Z", "Y", "X")


@dataclass(frozen=True, eq=False)
class SliceView:
    """A volume's array re-ordered so that the slicing axis comes first.

    ``array`` has shape ``(S, H, W)`` (or ``(S, H, W, C)``); ``perm`` is the
    transpose applied to the volume array (``array = vol.array.transpose(perm)``);
    ``pixel_spacing`` is ``(row, column)`` spacing in mm and ``slice_spacing``
    the step between slices.
    """

    array: np.ndarray
    axis: Union[str, int]
    array_axis: int
    perm: Tuple[int, ...]
    pixel_spacing: Tuple[float, float]
    slice_spacing: float

    @property
    def num_slices(self) -> int:
        return int(self.array.shape[0])

    @property
    def slice_shape(self) -> Tuple[int, int]:
        """(H, W) of one slice."""
        return (int(self.array.shape[1]), int(self.array.shape[2]))

    def to_volume(self, arr: np.ndarray) -> np.ndarray:
        """Inverse transpose: per-slice data ``(S, H, W, *extra)`` -> ``(Z, Y, X, *extra)``."""
        arr = np.asarray(arr)
        if arr.ndim < 3 or arr.shape[:3] != self.array.shape[:3]:
            raise ValueError(
                f"expected an array starting with (S, H, W) = {self.array.shape[:3]}, got {arr.shape}"
            )
        perm3 = self.perm[:3]
        inv = tuple(int(i) for i in np.argsort(perm3)) + tuple(range(3, arr.ndim))
        return arr.transpose(inv)

    def slice_to_voxel(self, slice_index: float, row: float, col: float) -> Tuple[float, float, float]:
        """(slice, row, column) in this view -> voxel index (x, y, z) of the volume."""
        zyx = [0.0, 0.0, 0.0]
        zyx[self.perm[0]] = float(slice_index)
        zyx[self.perm[1]] = float(row)
        zyx[self.perm[2]] = float(col)
        return (zyx[2], zyx[1], zyx[0])

    def voxel_to_slice(self, idx_xyz: Sequence[float]) -> Tuple[float, float, float]:
        """Voxel index (x, y, z) -> (slice, row, column) in this view."""
        zyx = (float(idx_xyz[2]), float(idx_xyz[1]), float(idx_xyz[0]))
        return (zyx[self.perm[0]], zyx[self.perm[1]], zyx[self.perm[2]])


def _spacing_zyx(spacing: Sequence[float]) -> Tuple[float, float, float]:
    return (float(spacing[2]), float(spacing[1]), float(spacing[0]))


@dataclass(eq=False)
class Volume:
    """An image / volume / video frame stack with its geometry.

    Attributes:
        array: ``(Z, Y, X)`` grayscale or ``(Z, Y, X, C)`` colour, any numeric dtype.
        spacing: ``(x, y, z)`` voxel size in mm (1.0 where unknown, e.g. photos, videos).
        origin: ``(x, y, z)`` world position (mm, LPS) of the centre of voxel (0, 0, 0).
        direction: 3x3, column i = world direction of index axis i; orthonormal.
        modality: a hint ("CT", "MR", "XR", "US", "endoscopy", ...) or None.
        kind: "volume", "image" (Z = 1) or "video" (Z = frames).
        meta: provenance: ``source_path``, ``format``, ``original_dtype``,
            ``source_files`` (inputs never to overwrite), ``dicom`` (series
            UIDs and sorted source files, for DICOM-SEG), ``fps`` for videos,
            ``frame_files`` for frame folders, ``modality_source``.
    """

    array: np.ndarray
    spacing: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    modality: Optional[str] = None
    kind: str = "volume"
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim not in (3, 4):
            raise ValueError(f"Volume.array must be (Z, Y, X) or (Z, Y, X, C), got shape {arr.shape}")
        if arr.ndim == 4 and arr.shape[3] not in (1, 3, 4):
            raise ValueError(f"colour volumes must have C = 3 (RGB) or 4 (RGBA), got shape {arr.shape}")
        if arr.ndim == 4 and arr.shape[3] == 1:
            arr = arr[..., 0]
        if 0 in arr.shape:
            raise ValueError(f"Volume.array is empty (shape {arr.shape})")
        self.array = arr
        geom = Geometry(arr.shape[:3], self.spacing, self.origin, self.direction)
        self.spacing, self.origin = geom.spacing, geom.origin
        self.direction = check_direction(geom.direction, tol=1e-3)
        if self.kind not in KINDS:
            raise ValueError(f"Volume.kind must be one of {KINDS}, got {self.kind!r}")

    # ----------------------------------------------------------------- basics
    @property
    def shape(self) -> Tuple[int, int, int]:
        """Spatial shape (Z, Y, X)."""
        return tuple(int(s) for s in self.array.shape[:3])  # type: ignore[return-value]

    @property
    def size_xyz(self) -> Tuple[int, int, int]:
        """Grid size in ITK order (x, y, z) = (X, Y, Z)."""
        z, y, x = self.shape
        return (x, y, z)

    @property
    def is_rgb(self) -> bool:
        return self.array.ndim == 4

    @property
    def num_channels(self) -> int:
        return int(self.array.shape[3]) if self.array.ndim == 4 else 1

    @property
    def spacing_zyx(self) -> Tuple[float, float, float]:
        """Spacing in array order (z, y, x), handy for numpy/scipy code."""
        return _spacing_zyx(self.spacing)

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.shape, self.spacing, self.origin, self.direction)

    @property
    def orientation(self) -> str:
        """Orientation code, e.g. "LPS" (identity) or "RAS" (see :func:`geometry.orientation_code`)."""
        return orientation_code(self.direction)

    def with_array(self, array: np.ndarray, *, kind: Optional[str] = None, meta: Optional[dict] = None) -> Volume:
        """A new Volume with the same geometry and ``array`` (same spatial shape (Z, Y, X))."""
        array = np.asarray(array)
        if array.ndim == 2 and self.shape[0] == 1:
            array = array[None]
        if tuple(array.shape[:3]) != self.shape:
            raise ValueError(f"array spatial shape {array.shape[:3]} != volume shape {self.shape}")
        return Volume(
            array,
            self.spacing,
            self.origin,
            self.direction.copy(),
            self.modality,
            kind or self.kind,
            dict(self.meta if meta is None else meta),
        )

    # ------------------------------------------------------------ coordinates
    def voxel_to_world(self, idx: Union[np.ndarray, Sequence]) -> np.ndarray:
        """Voxel indices (N, 3) or (3,) in (x, y, z) order -> world points in mm (LPS)."""
        return voxel_to_world(idx, self.spacing, self.origin, self.direction)

    def world_to_voxel(self, points_mm: Union[np.ndarray, Sequence]) -> np.ndarray:
        """World points (N, 3) or (3,) in mm -> continuous voxel indices (x, y, z order)."""
        return world_to_voxel(points_mm, self.spacing, self.origin, self.direction)

    # ---------------------------------------------------------------- slicing
    def anatomical_axes(self) -> Dict[str, int]:
        """Array axis (0 = Z, 1 = Y, 2 = X) of each anatomical name, from the direction matrix."""
        return anatomical_axes(self.direction)

    def slices(self, axis: Union[str, int] = 0) -> SliceView:
        """The array with the slicing axis first: ``(S, H, W[, C])``.

        ``axis`` is "axial" | "coronal" | "sagittal" (resolved from the
        direction matrix: "axial" is the index axis closest to world z) or an
        array axis 0/1/2 (0 = Z, the stored slice order; the default).  The
        two other axes keep their stored order, so nothing is flipped.
        """
        a = array_axis_for(axis, self.direction)
        rest = [i for i in (0, 1, 2) if i != a]
        perm = (a, *rest) + tuple(range(3, self.array.ndim))
        sp = self.spacing_zyx
        return SliceView(
            array=self.array.transpose(perm),
            axis=axis,
            array_axis=a,
            perm=perm,
            pixel_spacing=(sp[rest[0]], sp[rest[1]]),
            slice_spacing=sp[a],
        )

    def from_slices(self, arr: np.ndarray, view: Union[SliceView, str, int] = 0) -> np.ndarray:
        """Put per-slice results ``(S, H, W, *extra)`` of :meth:`slices` back into ``(Z, Y, X, *extra)``."""
        if not isinstance(view, SliceView):
            view = self.slices(view)
        return view.to_volume(arr)

    def __repr__(self) -> str:  # compact: never print the array
        return (
            f"Volume(kind={self.kind!r}, shape={tuple(self.array.shape)}, dtype={self.array.dtype}, "
            f"spacing={tuple(round(s, 4) for s in self.spacing)}, "
            f"origin={tuple(round(o, 3) for o in self.origin)}, orientation={self.orientation!r}, "
            f"modality={self.modality!r}, source={self.meta.get('source_path')!r})"
        )
