"""Prompt files: a small JSON schema, dataclasses, a validating loader and a writer.

Schema (version 1)::

    {
      "version": 1,
      "coordinates": "voxel",          # or "mm" (converted once to voxels with the volume)
      "axis": 0,                       # optional slicing axis: 0/1/2 (array axis; 0 = Z, the
                                       # default) or "axial" / "coronal" / "sagittal"
      "objects": [
        {"id": 1, "name": "liver", "prompts": [
          {"type": "box",    "slice": 12, "box": [x0, y0, x1, y1]},
          {"type": "box3d",  "z_range": [z0, z1], "slice": 15, "box": [x0, y0, x1, y1]},
          {"type": "points", "slice": 12, "points": [[x, y], ...], "labels": [1, 0, ...]},
          {"type": "mask",   "slice": 12, "path": "seed.png"},
          {"type": "mask",   "slice": 12, "rle": {"size": [H, W], "counts": [...]}}
        ]}
      ]
    }

Voxel coordinates live on the 2D slices of :meth:`Volume.slices(axis)
<medmem.io.Volume.slices>`: ``x`` = column, ``y`` = row (pixel centres at
integers, floats allowed), ``slice`` = index along the slicing axis.  Boxes are
``[x0, y0, x1, y1]`` with ``x0 <= x1`` and ``y0 <= y1`` (corners included).
``box3d`` is the CVPR 2025 interactive-challenge box: a slice range
``z_range = [z0, z1]`` (inclusive) plus a 2D box on its middle slice
(``slice`` defaults to ``(z0 + z1) // 2``).  Point labels are 1 (foreground)
or 0 (background), all 1 when omitted.  Mask prompts are a PNG (non-zero =
object, resolved relative to the JSON file) or an uncompressed COCO RLE
(column-major run lengths starting with background).

With ``"coordinates": "mm"`` positions are world points (LPS, mm):
``box`` and ``box3d`` give two opposite corners ``[x0, y0, z0, x1, y1, z1]``,
``points`` give ``[[x, y, z], ...]``; the slice is derived from the geometry
(a ``box`` or a ``points`` prompt must lie on one slice).  Mask prompts keep a
``slice`` index.  Loading mm prompts needs the volume.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .errors import PromptFileError

__all__ = [
    "BoxPrompt",
    "Box3DPrompt",
    "PointsPrompt",
    "MaskPrompt",
    "Prompt",
    "ObjectPrompts",
    "load_prompts",
    "save_prompts",
    "prompts_to_dict",
    "rle_encode",
    "rle_decode",
    "check_box",
    "check_points",
    "check_mask",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1
PROMPT_TYPES = ("box", "box3d", "points", "mask")


# --------------------------------------------------------------------------- the one validator
# Coordinates: x = column, y = row, pixel centres at integers (pixel i covers [i - 0.5, i + 0.5]).
# Points may lie anywhere on the image, [-0.5, W - 0.5] x [-0.5, H - 0.5]. Boxes [x0, y0, x1, y1]
# are inclusive pixel indices (corners included, as a mask's tight box: x1 = its last column); a box
# partly outside is clipped to [0, W - 1] x [0, H - 1]. Every entry point (prompt files, CLI flags, the
# Python API, the server) validates through these three functions.

def _inside(pts: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    return (pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= h - 0.5)


def check_box(box: Any, hw: tuple[int, int] | None = None) -> np.ndarray:
    """A box [x0, y0, x1, y1] → (4,) float64, clipped to a (H, W) slice; `ValueError` naming what is wrong."""
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"box must be 4 numbers [x0, y0, x1, y1], got {box!r}") from None
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise ValueError(f"box must be 4 finite numbers [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = b.tolist()
    if x1 < x0:
        raise ValueError(f"box x1 ({x1:g}) < x0 ({x0:g}); boxes are [x0, y0, x1, y1]")
    if y1 < y0:
        raise ValueError(f"box y1 ({y1:g}) < y0 ({y0:g}); boxes are [x0, y0, x1, y1]")
    if hw is not None:
        h, w = hw
        if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
            raise ValueError(f"box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies wholly outside the {w}x{h} (W x H) image")
        b = np.clip(b, 0, [w - 1, h - 1, w - 1, h - 1])
    return b


def check_points(points: Any, labels: Any, hw: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clicks (P, 2) as (x, y) with labels (P,) 1 = object / 0 = background → (float64, int32) arrays."""
    if (points is None) != (labels is None):
        raise ValueError("points and labels must be given together")
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"points must be [[x, y], ...] numbers, got {points!r}") from None
    pts = pts.reshape(-1, 2) if pts.size and pts.shape[-1] == 2 else pts
    lab = np.asarray(labels).reshape(-1)
    if pts.size == 0:
        raise ValueError("points is empty")
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (P, 2) as [[x, y], ...], got shape {pts.shape}")
    if len(pts) != len(lab):
        raise ValueError(f"{len(pts)} point(s) but {len(lab)} label(s); give one label (1 = object, 0 = background) "
                         "per point")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points contain NaN or inf")
    if not np.isin(lab, (0, 1)).all():
        raise ValueError(f"labels must be 1 (object) or 0 (background), got {lab.tolist()[:5]}")
    if hw is not None:
        out = ~_inside(pts, hw)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise ValueError(f"point {i} {pts[i].tolist()} is outside the {hw[1]}x{hw[0]} (W x H) image")
    return pts, lab.astype(np.int32)


def check_mask(mask: Any, hw: tuple[int, int] | None = None) -> np.ndarray:
    """A non-empty (H, W) mask → bool array."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask prompt must be 2D (H, W), got shape {m.shape}")
    if hw is not None and m.shape != tuple(hw):
        raise ValueError(f"mask shape {m.shape} (H, W) does not match the slice shape {tuple(hw)}")
    m = m != 0
    if not m.any():
        raise ValueError("mask prompt is empty (no foreground pixel)")
    return m


# --------------------------------------------------------------------------- dataclasses
@dataclass
class BoxPrompt:
    """2D box ``[x0, y0, x1, y1]`` (pixels: x = column, y = row) on slice ``slice``."""

    slice: int
    box: tuple[float, float, float, float]
    type: ClassVar[str] = "box"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "box", "slice": int(self.slice), "box": [_num(v) for v in self.box]}

    def inputs(self) -> dict[str, Any]:
        """Keyword arguments of `VolumeSession.add_prompt` for this prompt (a box replaces the slice's prompts)."""
        return {"box": list(self.box)}


@dataclass
class Box3DPrompt:
    """CVPR 2025 3D box: slices ``z_range`` (inclusive) + a 2D box on the middle slice ``slice``."""

    slice: int
    z_range: tuple[int, int]
    box: tuple[float, float, float, float]
    type: ClassVar[str] = "box3d"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "box3d", "z_range": [int(v) for v in self.z_range], "slice": int(self.slice),
                "box": [_num(v) for v in self.box]}

    def inputs(self) -> dict[str, Any]:
        """`VolumeSession.add_prompt` keywords: the 2D box (the z-range limits the result, not the prompt)."""
        return {"box": list(self.box)}


@dataclass
class PointsPrompt:
    """Clicks on slice ``slice``: ``points`` (N, 2) as (x, y), ``labels`` (N,) 1 = object, 0 = background."""

    slice: int
    points: np.ndarray
    labels: np.ndarray
    type: ClassVar[str] = "points"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "points", "slice": int(self.slice),
                "points": [[_num(x), _num(y)] for x, y in np.asarray(self.points)],
                "labels": [int(v) for v in np.asarray(self.labels)]}

    def inputs(self) -> dict[str, Any]:
        """`VolumeSession.add_prompt` keywords: clicks added to the slice's earlier box and clicks."""
        return {"points": np.asarray(self.points), "labels": np.asarray(self.labels), "clear_old": False}


@dataclass
class MaskPrompt:
    """A mask ``(H, W)`` bool on slice ``slice`` (from ``path`` or ``rle`` in the file)."""

    slice: int
    mask: np.ndarray
    path: str | None = None
    type: ClassVar[str] = "mask"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "mask", "slice": int(self.slice), "rle": rle_encode(self.mask)}

    def inputs(self) -> dict[str, Any]:
        """`VolumeSession.add_prompt` keywords: the mask replaces the slice's prompts."""
        return {"mask": np.asarray(self.mask)}


Prompt = BoxPrompt | Box3DPrompt | PointsPrompt | MaskPrompt


@dataclass
class ObjectPrompts:
    """All prompts of one object: ``id`` (> 0), optional ``name``, the slicing ``axis`` they refer to."""

    id: int
    prompts: list[Prompt]
    name: str | None = None
    axis: str | int = 0

    @property
    def slices(self) -> list[int]:
        """Prompted slice indices, sorted, unique."""
        return sorted({int(p.slice) for p in self.prompts})

    def on_slice(self, index: int) -> list[Prompt]:
        return [p for p in self.prompts if int(p.slice) == int(index)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": int(self.id)}
        if self.name is not None:
            out["name"] = self.name
        out["prompts"] = [p.to_dict() for p in self.prompts]
        return out


def _num(v: float) -> float | int:
    f = float(v)
    return int(f) if f.is_integer() else f


# --------------------------------------------------------------------------- RLE
def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Bool ``(H, W)`` -> uncompressed COCO RLE ``{"size": [H, W], "counts": [...]}`` (column-major)."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"RLE encodes a 2D mask, got shape {m.shape}")
    flat = m.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": [int(r) for r in runs]}


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """Uncompressed COCO RLE -> bool ``(H, W)``; raises ``ValueError`` if counts and size disagree."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = [int(c) for c in rle["counts"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("RLE must be {'size': [H, W], 'counts': [int, ...]} (uncompressed COCO RLE)") from exc
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise ValueError(f"RLE counts sum to {sum(counts)}, expected H*W = {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")


# --------------------------------------------------------------------------- loading
class _Ctx:
    """Where we are in the file, for error messages, plus the volume's slice frame."""

    def __init__(self, volume: Any, axis: str | int, base_dir: Path | None) -> None:
        self.volume = volume
        self.base_dir = base_dir
        self.view = None
        if volume is not None:
            try:
                self.view = volume.slices(axis)
            except ValueError as exc:
                raise PromptFileError(f"prompt file: {exc}") from None
        self.where = "prompt file"

    @property
    def dims(self) -> tuple[int, int, int] | None:
        """(S, H, W) of the slice frame."""
        if self.view is None:
            return None
        return (self.view.num_slices, *self.view.slice_shape)

    def fail(self, msg: str) -> PromptFileError:
        return PromptFileError(f"{self.where}: {msg}")


def _get(ctx: _Ctx, d: Mapping[str, Any], key: str) -> Any:
    if key not in d:
        raise ctx.fail(f"missing key {key!r}")
    return d[key]


def _int(ctx: _Ctx, value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ctx.fail(f"{what} must be an integer, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ctx.fail(f"{what} must be an integer, got {value!r}") from None
    if not np.isfinite(f) or not f.is_integer():
        raise ctx.fail(f"{what} must be an integer, got {value!r}")
    return int(f)


def _floats(ctx: _Ctx, value: Any, n: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ctx.fail(f"{what} must be {n} numbers, got {value!r}") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ctx.fail(f"{what} must be {n} finite numbers, got {value!r}")
    return arr


def _check_slice(ctx: _Ctx, s: int) -> int:
    if s < 0:
        raise ctx.fail(f"slice {s} is negative")
    dims = ctx.dims
    if dims is not None and s >= dims[0]:
        raise ctx.fail(f"slice {s} is outside the volume (slices 0..{dims[0] - 1} along axis {ctx.view.axis!r})")
    return s


def _check_box(ctx: _Ctx, box: np.ndarray) -> tuple[float, float, float, float]:
    dims = ctx.dims
    try:
        b = check_box(box, None if dims is None else dims[1:])
    except ValueError as exc:
        raise ctx.fail(str(exc)) from None
    return tuple(float(v) for v in b)  # type: ignore[return-value]


def _world_to_slice_frame(ctx: _Ctx, pts_mm: np.ndarray) -> np.ndarray:
    """World points (N, 3) -> (N, 3) as (slice, row, column) in the view."""
    idx = ctx.volume.world_to_voxel(pts_mm)
    out = np.array([ctx.view.voxel_to_slice(i) for i in np.atleast_2d(idx)])
    return np.round(out, 6) + 0.0  # drop float noise such as 19.999999999999996 (and -0.0)


def _box_corners_mm(ctx: _Ctx, value: Any, what: str) -> np.ndarray:
    arr = _floats(ctx, value, 6, what + " (mm: [x0, y0, z0, x1, y1, z1])")
    lo, hi = np.minimum(arr[:3], arr[3:]), np.maximum(arr[:3], arr[3:])
    corners = np.array([[(lo, hi)[a][0], (lo, hi)[b][1], (lo, hi)[c][2]]
                        for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    return _world_to_slice_frame(ctx, corners)


def _parse_prompt(ctx: _Ctx, p: Any, mm: bool) -> Prompt:
    if not isinstance(p, Mapping):
        raise ctx.fail(f"a prompt must be an object with a 'type', got {type(p).__name__}")
    ptype = p.get("type")
    if ptype not in PROMPT_TYPES:
        raise ctx.fail(f"unknown prompt type {ptype!r}; expected one of {', '.join(PROMPT_TYPES)}")
    ctx.where += f" ({ptype})"
    if mm and ptype != "mask":
        if ctx.volume is None:
            raise ctx.fail("coordinates are 'mm': pass the volume to load_prompts to convert them to voxels")
        return _parse_mm(ctx, p, ptype)

    if ptype == "box":
        s = _check_slice(ctx, _int(ctx, _get(ctx, p, "slice"), "slice"))
        return BoxPrompt(s, _check_box(ctx, _floats(ctx, _get(ctx, p, "box"), 4, "box")))
    if ptype == "box3d":
        zr = _get(ctx, p, "z_range")
        if not isinstance(zr, (list, tuple)) or len(zr) != 2:
            raise ctx.fail(f"z_range must be [z0, z1], got {zr!r}")
        z0, z1 = _int(ctx, zr[0], "z_range[0]"), _int(ctx, zr[1], "z_range[1]")
        if z1 < z0:
            raise ctx.fail(f"z_range [{z0}, {z1}] has z1 < z0")
        dims = ctx.dims
        if dims is not None:
            if z1 < 0 or z0 > dims[0] - 1:
                raise ctx.fail(f"z_range [{z0}, {z1}] lies outside the volume (slices 0..{dims[0] - 1})")
            z0, z1 = max(z0, 0), min(z1, dims[0] - 1)
        s = _int(ctx, p["slice"], "slice") if p.get("slice") is not None else (z0 + z1) // 2
        _check_slice(ctx, s)
        if not z0 <= s <= z1:
            raise ctx.fail(f"slice {s} is outside z_range [{z0}, {z1}]")
        return Box3DPrompt(s, (z0, z1), _check_box(ctx, _floats(ctx, _get(ctx, p, "box"), 4, "box")))
    if ptype == "points":
        s = _check_slice(ctx, _int(ctx, _get(ctx, p, "slice"), "slice"))
        pts = _points(ctx, _get(ctx, p, "points"), 2)
        labels = _labels(ctx, p.get("labels"), len(pts))
        dims = ctx.dims
        if dims is not None:
            try:
                check_points(pts, labels, dims[1:])
            except ValueError as exc:
                raise ctx.fail(str(exc)) from None
        return PointsPrompt(s, pts, labels)
    # mask
    s = _check_slice(ctx, _int(ctx, _get(ctx, p, "slice"), "slice"))
    return _parse_mask(ctx, p, s)


def _points(ctx: _Ctx, value: Any, n: int) -> np.ndarray:
    try:
        pts = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ctx.fail(f"points must be a list of [{'x, y' if n == 2 else 'x, y, z'}] pairs") from None
    if pts.ndim != 2 or pts.shape[1] != n or len(pts) == 0 or not np.all(np.isfinite(pts)):
        raise ctx.fail(f"points must be a non-empty list of {n}-number lists, got {value!r}")
    return pts


def _labels(ctx: _Ctx, value: Any, n: int) -> np.ndarray:
    if value is None:
        return np.ones(n, dtype=np.int64)
    if not isinstance(value, (list, tuple)):
        raise ctx.fail(f"labels must be a list of 0/1, got {value!r}")
    if len(value) != n:
        raise ctx.fail(f"{n} point(s) but {len(value)} label(s); give one label (1 = object, 0 = background) per point")
    labels = np.array([_int(ctx, v, "label") for v in value], dtype=np.int64)
    if not np.all(np.isin(labels, (0, 1))):
        raise ctx.fail(f"labels must be 1 (object) or 0 (background), got {list(value)}")
    return labels


def _parse_mask(ctx: _Ctx, p: Mapping[str, Any], s: int) -> MaskPrompt:
    has_path, has_rle = p.get("path") is not None, p.get("rle") is not None
    if has_path == has_rle:
        raise ctx.fail("a mask prompt needs exactly one of 'path' (PNG) or 'rle'")
    src = None
    if has_rle:
        try:
            mask = rle_decode(p["rle"])
        except ValueError as exc:
            raise ctx.fail(str(exc)) from None
    else:
        src = str(p["path"])
        mpath = Path(src)
        if not mpath.is_absolute() and ctx.base_dir is not None:
            mpath = ctx.base_dir / mpath
        if not mpath.exists():
            raise ctx.fail(f"mask file not found: {mpath}")
        from .readers import read_volume

        try:
            img = read_volume(mpath)
        except ValueError as exc:
            raise ctx.fail(f"cannot read mask {mpath}: {exc}") from None
        arr = img.array[0]
        mask = (arr.any(axis=-1) if arr.ndim == 3 else arr) != 0
    dims = ctx.dims
    try:
        mask = check_mask(mask, None if dims is None else dims[1:])
    except ValueError as exc:
        raise ctx.fail(str(exc)) from None
    return MaskPrompt(s, mask, src)


def _parse_mm(ctx: _Ctx, p: Mapping[str, Any], ptype: str) -> Prompt:
    s_count, h, w = ctx.dims  # type: ignore[misc]
    if ptype in ("box", "box3d"):
        c = _box_corners_mm(ctx, _get(ctx, p, "box"), "box")
        s_lo, s_hi = float(c[:, 0].min()), float(c[:, 0].max())
        box = np.array([c[:, 2].min(), c[:, 1].min(), c[:, 2].max(), c[:, 1].max()])
        if ptype == "box":
            if s_hi - s_lo > 1.0 + 1e-6:
                raise ctx.fail(
                    f"box corners span slices {s_lo:.1f}..{s_hi:.1f}; a 'box' lies on one slice — use 'box3d'"
                )
            s = int(np.floor((s_lo + s_hi) / 2 + 0.5))
            return BoxPrompt(_check_slice(ctx, s), _check_box(ctx, box))
        z0, z1 = int(np.ceil(s_lo - 0.5)), int(np.floor(s_hi + 0.5))
        if z1 < 0 or z0 > s_count - 1:
            raise ctx.fail(f"box3d spans slices {s_lo:.1f}..{s_hi:.1f}, outside the volume (0..{s_count - 1})")
        z0, z1 = max(z0, 0), min(z1, s_count - 1)
        return Box3DPrompt((z0 + z1) // 2, (z0, z1), _check_box(ctx, box))
    # points
    pts_mm = _points(ctx, _get(ctx, p, "points"), 3)
    labels = _labels(ctx, p.get("labels"), len(pts_mm))
    f = _world_to_slice_frame(ctx, pts_mm)
    s_all = np.floor(f[:, 0] + 0.5).astype(int)
    if len(set(s_all.tolist())) > 1:
        raise ctx.fail(
            f"points lie on different slices {sorted(set(s_all.tolist()))}; split them into one prompt per slice"
        )
    s = _check_slice(ctx, int(s_all[0]))
    pts = np.stack([f[:, 2], f[:, 1]], axis=1)
    try:
        check_points(pts, labels, (h, w))
    except ValueError:
        i = int(np.flatnonzero(~_inside(pts, (h, w)))[0])
        raise ctx.fail(f"point {i} {pts_mm[i].tolist()} mm is outside the image") from None
    return PointsPrompt(s, pts, labels)


def load_prompts(
    path_or_dict: str | os.PathLike | Mapping[str, Any],
    volume: Any = None,
    *,
    base_dir: str | os.PathLike | None = None,
) -> list[ObjectPrompts]:
    """Load and validate a prompt file (see the module docstring for the schema).

    Args:
        path_or_dict: a JSON file path or the already-parsed dict.
        volume: the :class:`~medmem.io.Volume` the prompts refer to; enables
            range checks (slice inside the volume, box not wholly outside,
            mask shape) and is required for ``"coordinates": "mm"``.
        base_dir: folder for relative mask paths (default: the JSON file's folder).

    Returns:
        One :class:`ObjectPrompts` per object, in voxel coordinates of the
        slicing axis ``axis`` (boxes partly outside the image are clipped).

    Raises:
        PromptFileError (a ``ValueError``): with the object and prompt at fault.
    """
    if isinstance(path_or_dict, Mapping):
        data: Any = path_or_dict
        where = "prompt dict"
        bdir = Path(base_dir) if base_dir is not None else None
    else:
        p = Path(os.fspath(path_or_dict))
        where = str(p)
        if not p.exists():
            raise PromptFileError(f"prompt file not found: {p}")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PromptFileError(f"{p}: not valid JSON ({exc})") from None
        bdir = Path(base_dir) if base_dir is not None else p.parent
    if not isinstance(data, Mapping):
        raise PromptFileError(f"{where}: the top level must be a JSON object")
    version = data.get("version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise PromptFileError(
            f"{where}: unsupported prompt-file version {version!r} (this medmem reads {SCHEMA_VERSION})"
        )
    coords = data.get("coordinates", "voxel")
    if coords not in ("voxel", "mm"):
        raise PromptFileError(f"{where}: coordinates must be 'voxel' or 'mm', got {coords!r}")
    axis = data.get("axis", 0)
    if isinstance(axis, bool) or not isinstance(axis, (int, str)):
        raise PromptFileError(f"{where}: axis must be 0, 1, 2, 'axial', 'coronal' or 'sagittal', got {axis!r}")
    if isinstance(axis, int) and axis not in (0, 1, 2):
        raise PromptFileError(f"{where}: axis must be 0, 1 or 2 (array axes), got {axis}")
    if isinstance(axis, str):
        from .geometry import array_axis_for

        try:
            array_axis_for(axis, np.eye(3))
        except ValueError as exc:
            raise PromptFileError(f"{where}: {exc}") from None
    objects = data.get("objects")
    if not isinstance(objects, list) or not objects:
        raise PromptFileError(f"{where}: 'objects' must be a non-empty list")
    ctx = _Ctx(volume, axis, bdir)
    out: list[ObjectPrompts] = []
    seen: set[int] = set()
    for k, obj in enumerate(objects):
        ctx.where = f"{where}: object #{k}"
        if not isinstance(obj, Mapping):
            raise ctx.fail("each object must be a JSON object with 'id' and 'prompts'")
        oid = _int(ctx, _get(ctx, obj, "id"), "id")
        name = obj.get("name")
        label = f"{where}: object {oid}" + (f" ({name!r})" if name else "")
        ctx.where = label
        if oid <= 0:
            raise ctx.fail("object ids must be positive integers (0 is background)")
        if oid in seen:
            raise ctx.fail("duplicate object id")
        seen.add(oid)
        if name is not None and not isinstance(name, str):
            raise ctx.fail(f"name must be a string, got {name!r}")
        plist = obj.get("prompts")
        if not isinstance(plist, list) or not plist:
            raise ctx.fail("empty prompt list; give at least one prompt")
        prompts: list[Prompt] = []
        for j, p in enumerate(plist):
            ctx.where = f"{label}, prompt {j}"
            prompts.append(_parse_prompt(ctx, p, coords == "mm"))
        out.append(ObjectPrompts(oid, prompts, name, axis))
    return out


def prompts_to_dict(objects: Sequence[ObjectPrompts], *, axis: str | int | None = None) -> dict[str, Any]:
    """The JSON-ready dict (voxel coordinates) of a list of :class:`ObjectPrompts`."""
    axes = {o.axis for o in objects}
    if axis is None:
        if len(axes) > 1:
            raise ValueError(f"objects refer to different slicing axes {axes}; save them separately")
        axis = next(iter(axes), 0)
    data: dict[str, Any] = {"version": SCHEMA_VERSION, "coordinates": "voxel"}
    if axis != 0:
        data["axis"] = axis
    data["objects"] = [o.to_dict() for o in objects]
    return data


def save_prompts(objects: Sequence[ObjectPrompts], path: str | os.PathLike) -> Path:
    """Write prompts as JSON (voxel coordinates; mask prompts as RLE), atomically; returns the path."""
    from .writers import atomic_path

    path = Path(os.fspath(path))
    data = prompts_to_dict(objects)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
