"""DICOM series: discovery, consistency checks, stacking (pydicom) and DICOM-SEG output (highdicom).

Geometry of a classic single-frame series: slices are sorted along the slice
normal ``n = row_cosine x column_cosine`` by ``ImagePositionPatient . n``; the
volume's direction columns are (row cosine, column cosine, n), spacing is
(PixelSpacing[1], PixelSpacing[0], slice step) and the origin is the first
sorted slice's ImagePositionPatient.  DICOM patient space is LPS, i.e. the
same world space as ITK, so no sign flips are needed.

Checks (each a :class:`DicomSeriesError` or a :class:`GeometryWarning`):
several series without ``series_uid`` (error listing them), mixed
orientations or matrix sizes (error), duplicate positions (error: several
acquisitions / echoes / time points mixed), missing slices (error naming the
gap), uneven steps (warning up to 10 % deviation, error above), sheared stacks
from gantry tilt (warning).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DicomSeriesError, GeometryWarning, ImageReadError, ImageWriteError
from .filenames import DICOM_EXTS
from .geometry import Geometry

#: modalities that carry no image to segment (skipped when scanning a folder)
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "PR", "KO", "REG", "DOC", "FID"}
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_MODALITY_HINTS = {
    "CR": "XR", "DX": "XR", "RG": "XR", "DR": "XR", "PX": "XR", "IO": "XR",
    "ES": "endoscopy", "OP": "fundus", "XC": "photo", "GM": "microscopy", "SM": "microscopy",
    "PT": "PET", "NM": "NM", "OCT": "OCT", "IVUS": "US",
}


def modality_hint(tag_value: Optional[str]) -> Optional[str]:
    """DICOM Modality tag -> medmem modality hint ("CT", "MR", "XR", "US", "endoscopy", ...)."""
    if not tag_value:
        return None
    v = str(tag_value).upper().strip()
    return _MODALITY_HINTS.get(v, v)


# --------------------------------------------------------------------------- discovery
def is_dicom_file(path: Union[str, os.PathLike]) -> bool:
    """True for files with the DICM preamble, or a DICOM extension and a parseable header."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    if p.suffix.lower() in DICOM_EXTS:
        import pydicom

        try:
            ds = pydicom.dcmread(str(p), stop_before_pixels=True, force=True)
        except Exception:
            return False
        return "SOPClassUID" in ds or "StudyInstanceUID" in ds
    return False


@dataclass
class SeriesInfo:
    """One DICOM series found in a folder."""

    uid: str
    description: str = ""
    modality: str = ""
    number: Optional[int] = None
    files: List[Path] = field(default_factory=list)
    headers: List[Any] = field(default_factory=list)  # pydicom Datasets without pixel data

    @property
    def num_frames(self) -> int:
        return sum(int(getattr(h, "NumberOfFrames", 1) or 1) for h in self.headers)

    def summary(self) -> str:
        num = f"#{self.number} " if self.number is not None else ""
        desc = self.description or "(no description)"
        n_files = len(self.files)
        frames = self.num_frames
        count = f"{n_files} slices" if frames == n_files else f"{n_files} files, {frames} frames"
        return f"{self.uid}  {num}{self.modality or '?'} '{desc}' — {count}"


def _iter_files(folder: Path) -> List[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            out.append(Path(root) / name)
    return out


def scan_dicom_folder(folder: Union[str, os.PathLike], *, include_non_image: bool = False) -> Dict[str, SeriesInfo]:
    """Find the DICOM series under ``folder`` (recursively): ``{SeriesInstanceUID: SeriesInfo}``.

    Non-image objects (SEG, RTSTRUCT, SR, ...) are skipped unless ``include_non_image``.
    """
    import pydicom

    folder = Path(folder)
    series: Dict[str, SeriesInfo] = {}
    bad: List[str] = []
    for path in _iter_files(folder):
        if not is_dicom_file(path):
            continue
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        except Exception as exc:  # unreadable header: report, keep going
            bad.append(f"{path.name} ({exc})")
            continue
        if str(getattr(ds, "SOPClassUID", "")) == _DICOMDIR_CLASS:
            continue
        if "SOPClassUID" not in ds and "Rows" not in ds and "SeriesInstanceUID" not in ds:
            bad.append(f"{path.name} (no readable DICOM elements; truncated?)")
            continue
        modality = str(getattr(ds, "Modality", "") or "")
        if not include_non_image and (modality.upper() in NON_IMAGE_MODALITIES or "Rows" not in ds):
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "(no SeriesInstanceUID)")
        info = series.get(uid)
        if info is None:
            num = getattr(ds, "SeriesNumber", None)
            info = series[uid] = SeriesInfo(
                uid=uid,
                description=str(getattr(ds, "SeriesDescription", "") or ""),
                modality=modality,
                number=int(num) if num not in (None, "") else None,
            )
        info.files.append(path)
        info.headers.append(ds)
    if bad:
        warnings.warn(
            f"{folder}: skipped {len(bad)} unreadable DICOM file(s): {', '.join(bad[:5])}",
            GeometryWarning,
            stacklevel=2,
        )
    return series


def describe_series(series: Dict[str, SeriesInfo]) -> str:
    """One line per series: UID, number, modality, description, slice count."""
    return "\n".join("  " + s.summary() for s in series.values())


# --------------------------------------------------------------------------- geometry
@dataclass
class _Plane:
    """One 2D frame of a series: where it lies and where its pixels come from."""

    file_index: int
    frame: Optional[int]  # None for single-frame files
    position: Optional[np.ndarray]
    orientation: Optional[np.ndarray]
    pixel_spacing: Optional[Tuple[float, float]]  # (row spacing, column spacing)
    rows: int
    cols: int
    instance: Optional[int] = None
    tags: Dict[str, Any] = field(default_factory=dict)


def _floats(value: Any, n: int) -> Optional[np.ndarray]:
    if value is None:
        return None
    try:
        arr = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def _pixel_spacing(ds: Any) -> Optional[Tuple[float, float]]:
    for key in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        sp = _floats(getattr(ds, key, None), 2)
        if sp is not None and np.all(sp > 0):
            return (float(sp[0]), float(sp[1]))
    return None


def _planes_single_frame(headers: Sequence[Any]) -> List[_Plane]:
    planes = []
    for i, ds in enumerate(headers):
        inst = getattr(ds, "InstanceNumber", None)
        planes.append(
            _Plane(
                file_index=i,
                frame=None,
                position=_floats(getattr(ds, "ImagePositionPatient", None), 3),
                orientation=_floats(getattr(ds, "ImageOrientationPatient", None), 6),
                pixel_spacing=_pixel_spacing(ds),
                rows=int(getattr(ds, "Rows", 0) or 0),
                cols=int(getattr(ds, "Columns", 0) or 0),
                instance=int(inst) if inst not in (None, "") else None,
                tags={
                    k: getattr(ds, k, None)
                    for k in ("AcquisitionNumber", "EchoNumbers", "TemporalPositionIdentifier", "ImageType")
                },
            )
        )
    return planes


def _seq_item(ds: Any, seq: str) -> Any:
    s = getattr(ds, seq, None)
    return s[0] if s else None


def _planes_multi_frame(ds: Any) -> List[_Plane]:
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    per = getattr(ds, "PerFrameFunctionalGroupsSequence", None)

    def group(frame: int, name: str) -> Any:
        for src in ((per[frame] if per is not None and frame < len(per) else None), shared):
            if src is not None and getattr(src, name, None):
                return getattr(src, name)[0]
        return None

    planes = []
    for f in range(n):
        pos = group(f, "PlanePositionSequence")
        ori = group(f, "PlaneOrientationSequence")
        meas = group(f, "PixelMeasuresSequence")
        planes.append(
            _Plane(
                file_index=0,
                frame=f,
                position=_floats(getattr(pos, "ImagePositionPatient", None), 3) if pos else None,
                orientation=_floats(getattr(ori, "ImageOrientationPatient", None), 6)
                if ori
                else _floats(getattr(ds, "ImageOrientationPatient", None), 6),
                pixel_spacing=_pixel_spacing(meas) if meas else _pixel_spacing(ds),
                rows=int(ds.Rows),
                cols=int(ds.Columns),
                instance=f,
            )
        )
    return planes


def _describe_duplicates(planes: List[_Plane]) -> str:
    keys = []
    for key in ("AcquisitionNumber", "EchoNumbers", "TemporalPositionIdentifier", "ImageType"):
        values = {str(p.tags.get(key)) for p in planes if p.tags.get(key) is not None}
        if len(values) > 1:
            keys.append(f"{key} takes values {sorted(values)[:6]}")
    return ("; " + "; ".join(keys)) if keys else ""


def _stack_geometry(
    planes: List[_Plane], where: str, fallback_step: Optional[float]
) -> Tuple[List[_Plane], Tuple[float, float, float], Tuple[float, float, float], np.ndarray]:
    """Sort planes along the slice normal and check the stack; returns (sorted planes, spacing, origin, direction)."""
    sizes = {(p.rows, p.cols) for p in planes}
    if len(sizes) > 1:
        raise DicomSeriesError(f"{where}: slices have different matrix sizes {sorted(sizes)}; not one volume")
    have_geom = all(p.position is not None and p.orientation is not None for p in planes)
    ps = planes[0].pixel_spacing or (1.0, 1.0)
    if not have_geom:
        if len(planes) > 1:
            warnings.warn(
                f"{where}: no ImagePositionPatient/ImageOrientationPatient; frames are ordered by "
                "InstanceNumber and the slice spacing is unknown (set to 1 mm)",
                GeometryWarning,
                stacklevel=3,
            )
        planes = sorted(planes, key=lambda p: (p.instance if p.instance is not None else 0))
        spacing = (ps[1], ps[0], float(fallback_step or 1.0))
        return planes, spacing, (0.0, 0.0, 0.0), np.eye(3)

    oris = np.stack([p.orientation for p in planes])  # type: ignore[misc]
    if np.max(np.abs(oris - oris[0])) > 1e-3:
        raise DicomSeriesError(
            f"{where}: slices have different orientations (ImageOrientationPatient); "
            "the series mixes several stacks (e.g. a localizer) — not one volume"
        )
    row = oris[0, :3] / np.linalg.norm(oris[0, :3])
    col = oris[0, 3:] / np.linalg.norm(oris[0, 3:])
    normal = np.cross(row, col)
    pos = np.stack([p.position for p in planes])  # type: ignore[misc]
    d = pos @ normal
    order = np.argsort(d, kind="stable")
    planes = [planes[i] for i in order]
    d, pos = d[order], pos[order]
    n = len(planes)
    if n == 1:
        step = float(fallback_step or 1.0)
    else:
        diffs = np.diff(d)
        tiny = max(1e-4, 1e-3 * float(np.max(np.abs(diffs)) if diffs.size else 1.0))
        dup = int(np.sum(diffs < tiny))
        if dup:
            raise DicomSeriesError(
                f"{where}: {dup} duplicate slice position(s) among {n} slices; the series holds several "
                f"acquisitions, echoes or time points at the same positions{_describe_duplicates(planes)}. "
                "Split the series (e.g. by AcquisitionNumber) before reading"
            )
        step = float(np.median(diffs))
        gaps = np.nonzero(diffs > 1.5 * step)[0]
        if gaps.size:
            details = []
            for g in gaps[:5]:
                missing = int(round(diffs[g] / step)) - 1
                a, b = planes[g], planes[g + 1]
                details.append(
                    f"{max(missing, 1)} missing between positions {d[g]:.2f} and {d[g + 1]:.2f} mm "
                    f"(InstanceNumber {a.instance} -> {b.instance})"
                )
            raise DicomSeriesError(
                f"{where}: slice(s) missing — step {step:.3g} mm expected but found gaps: "
                + "; ".join(details)
                + ". The volume would be distorted; re-export the complete series"
            )
        dev = float(np.max(np.abs(diffs - step)) / step)
        if dev > 0.10:
            raise DicomSeriesError(
                f"{where}: uneven slice spacing (steps from {diffs.min():.3g} to {diffs.max():.3g} mm, "
                f"{100 * dev:.0f}% deviation); cannot be represented with one spacing — resample first"
            )
        if dev > 0.01:
            step = float((d[-1] - d[0]) / (n - 1))
            warnings.warn(
                f"{where}: slice steps vary by up to {100 * dev:.1f}% (from {diffs.min():.4g} to "
                f"{diffs.max():.4g} mm); using the mean step {step:.4g} mm",
                GeometryWarning,
                stacklevel=3,
            )
        # in-plane drift of slice positions = sheared stack (gantry tilt)
        inplane = (pos - pos[0]) - np.outer(d - d[0], normal)
        drift = float(np.max(np.linalg.norm(inplane, axis=1)))
        if drift > 0.01 * min(ps):
            tilt = float(np.degrees(np.arctan2(drift, d[-1] - d[0])))
            warnings.warn(
                f"{where}: slice positions drift {drift:.2f} mm in-plane over the stack (gantry tilt "
                f"~{tilt:.1f} deg); the volume is treated as orthogonal along the slice normal",
                GeometryWarning,
                stacklevel=3,
            )
    direction = np.stack([row, col, normal], axis=1)
    spacing = (float(ps[1]), float(ps[0]), float(step))
    origin = tuple(float(v) for v in pos[0])
    return planes, spacing, origin, direction  # type: ignore[return-value]


# --------------------------------------------------------------------------- pixels
def _decode(ds: Any, path: Path) -> np.ndarray:
    """Pixel array of one dataset (frames first for multi-frame), with a GDCM fallback via SimpleITK."""
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # missing decoder, corrupt data
        try:
            import SimpleITK as sitk

            from .native import native_stderr

            with native_stderr():
                img = sitk.ReadImage(str(path))
            arr = sitk.GetArrayFromImage(img)
            if int(getattr(ds, "NumberOfFrames", 1) or 1) == 1 and arr.ndim >= 3 and arr.shape[0] == 1:
                arr = arr[0]
            return arr
        except Exception:
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            name = getattr(ts, "name", ts)
            hint = ""
            if getattr(ts, "is_compressed", False):
                hint = " Compressed data may need `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg`."
            raise ImageReadError(
                f"{path}: cannot decode DICOM pixel data (transfer syntax {name}): {exc}.{hint}"
            ) from exc


def _rescale(arr: np.ndarray, ds: Any) -> Tuple[np.ndarray, float, float]:
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    inter = float(getattr(ds, "RescaleIntercept", 0) or 0)
    if slope == 1.0 and inter == 0.0:
        return arr, slope, inter
    return arr.astype(np.float64) * slope + inter, slope, inter


def _frame_rescale_source(ds: Any, frame: int) -> Any:
    """Where a multi-frame object keeps frame ``frame``'s RescaleSlope/Intercept (functional groups or top level)."""
    per = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    for group in ((per[frame] if per is not None and frame < len(per) else None), shared):
        item = _seq_item(group, "PixelValueTransformationSequence") if group is not None else None
        if item is not None and "RescaleSlope" in item:
            return item
    return ds


def _stored_dtype(ds: Any) -> str:
    """numpy name of the stored pixel type (before rescaling), e.g. "uint16", "int16"."""
    bits = int(getattr(ds, "BitsAllocated", 16) or 16)
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    return f"{'int' if signed else 'uint'}{bits}" if bits in (8, 16, 32) else f"{bits}-bit"


def _best_dtype(arr: np.ndarray, integral: bool) -> np.ndarray:
    if not integral:
        return arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    for dt in (np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return arr.astype(dt)
    return arr.astype(np.float64)


# --------------------------------------------------------------------------- reading
def _choose_series(folder: Path, series: Dict[str, SeriesInfo], series_uid: Optional[str]) -> SeriesInfo:
    if not series:
        raise ImageReadError(f"{folder}: no DICOM image files found")
    if series_uid is not None:
        if series_uid not in series:
            raise DicomSeriesError(
                f"{folder}: series_uid {series_uid!r} not found; the folder holds:\n{describe_series(series)}"
            )
        return series[series_uid]
    if len(series) > 1:
        raise DicomSeriesError(
            f"{folder} holds {len(series)} DICOM series; choose one with series_uid=...:\n"
            f"{describe_series(series)}"
        )
    return next(iter(series.values()))


def read_dicom(
    path: Path, *, series_uid: Optional[str] = None
) -> Tuple[np.ndarray, Geometry, Dict[str, Any], Optional[str], str]:
    """Read a DICOM series (folder) or a single DICOM file.

    Returns ``(array (Z, Y, X[, 3]), geometry, meta, modality_hint, kind)``.
    """
    import pydicom

    if path.is_dir():
        info = _choose_series(path, scan_dicom_folder(path), series_uid)
        where = f"{path} (series {info.uid})"
    else:
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        except Exception as exc:
            raise ImageReadError(f"{path}: not a readable DICOM file: {exc}") from exc
        if "Rows" not in ds:
            raise ImageReadError(f"{path}: DICOM object without an image (Modality {getattr(ds, 'Modality', '?')})")
        uid = str(getattr(ds, "SeriesInstanceUID", ""))
        if series_uid is not None and series_uid != uid:
            raise DicomSeriesError(f"{path}: file belongs to series {uid}, not {series_uid}")
        info = SeriesInfo(uid=uid, description=str(getattr(ds, "SeriesDescription", "") or ""),
                          modality=str(getattr(ds, "Modality", "") or ""), files=[path], headers=[ds])
        where = str(path)

    headers = info.headers
    multiframe = len(headers) == 1 and int(getattr(headers[0], "NumberOfFrames", 1) or 1) > 1
    if multiframe:
        planes = _planes_multi_frame(headers[0])
    else:
        if any(int(getattr(h, "NumberOfFrames", 1) or 1) > 1 for h in headers):
            raise DicomSeriesError(f"{where}: series mixes several multi-frame files; read them one by one")
        planes = _planes_single_frame(headers)
    h0 = headers[0]
    fallback_step = None
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        v = getattr(h0, key, None)
        try:
            if v not in (None, "") and float(v) > 0:
                fallback_step = float(v)
                break
        except (TypeError, ValueError):
            pass
    if multiframe and planes[0].position is None:
        # cine loop (ultrasound, endoscopy, angiography): a video, not a volume
        sorted_planes = planes
        ps = planes[0].pixel_spacing or (1.0, 1.0)
        spacing, origin, direction = (ps[1], ps[0], 1.0), (0.0, 0.0, 0.0), np.eye(3)
    else:
        sorted_planes, spacing, origin, direction = _stack_geometry(planes, where, fallback_step)

    # ---- pixels
    frames: List[np.ndarray] = []
    integral = True
    photometric = str(getattr(h0, "PhotometricInterpretation", "") or "")
    if multiframe:
        ds = pydicom.dcmread(str(info.files[0]), force=True)
        arr = _decode(ds, info.files[0])
        for p in sorted_planes:
            k = int(p.frame)  # type: ignore[arg-type]
            frame, slope, inter = _rescale(arr[k], _frame_rescale_source(ds, k))
            integral = integral and slope == int(slope) and inter == int(inter)
            frames.append(frame)
    else:
        for p in sorted_planes:
            f = info.files[p.file_index]
            ds = pydicom.dcmread(str(f), force=True)
            arr = _decode(ds, f)
            arr, slope, inter = _rescale(arr, ds)
            integral = integral and slope == int(slope) and inter == int(inter)
            frames.append(arr)
    try:
        volume = np.stack(frames)
    except ValueError as exc:
        raise DicomSeriesError(f"{where}: slices have different pixel shapes: {exc}") from exc
    if volume.ndim == 4 and volume.shape[-1] == 4:
        volume = volume[..., :3]
    if photometric == "MONOCHROME1" and volume.ndim == 3:
        volume = volume.max() + volume.min() - volume  # display convention: bright = dense
    volume = _best_dtype(volume, integral)

    modality_raw = str(getattr(h0, "Modality", "") or "")
    kind = "volume"
    if volume.shape[0] == 1:
        kind = "image"
    elif multiframe and sorted_planes[0].position is None:
        kind = "video"
    meta: Dict[str, Any] = {
        "original_dtype": _stored_dtype(h0),
        "photometric": photometric,
        "dicom": {
            "series_uid": info.uid,
            "study_uid": str(getattr(h0, "StudyInstanceUID", "") or ""),
            "frame_of_reference_uid": str(getattr(h0, "FrameOfReferenceUID", "") or ""),
            "sop_class_uid": str(getattr(h0, "SOPClassUID", "") or ""),
            "modality": modality_raw,
            "series_description": info.description,
            "multiframe": multiframe,
            # in volume (sorted) order: slice k of the array comes from files[k] (frame frames[k])
            "files": [str(info.files[p.file_index]) for p in sorted_planes],
            "frames": [p.frame for p in sorted_planes],
            "sop_instance_uids": [str(getattr(headers[p.file_index], "SOPInstanceUID", ""))
                                  for p in sorted_planes],
        },
        "source_files": sorted({str(Path(f).resolve()) for f in info.files}),
    }
    if multiframe:
        ft = getattr(h0, "FrameTime", None)
        try:
            if ft not in (None, "") and float(ft) > 0:
                meta["fps"] = 1000.0 / float(ft)
        except (TypeError, ValueError):
            pass
    if photometric == "MONOCHROME1":
        meta["inverted_monochrome1"] = True
    geom = Geometry(volume.shape[:3], spacing, origin, direction)
    return volume, geom, meta, modality_hint(modality_raw), kind


# --------------------------------------------------------------------------- DICOM-SEG
def write_dicom_seg(
    segments: Dict[int, np.ndarray],
    like_meta: Dict[str, Any],
    path: Path,
    *,
    labels: Optional[Dict[int, str]] = None,
) -> None:
    """Write boolean masks ``{object id: (Z, Y, X) bool}`` as a DICOM-SEG referencing the source series.

    Segments are numbered 1..N in increasing object id; each keeps its object
    id as TrackingID and its name (``labels``) as SegmentLabel.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    dmeta = like_meta.get("dicom")
    if not dmeta or not dmeta.get("files"):
        raise ImageWriteError("DICOM-SEG output needs a DICOM source volume (read from a DICOM series)")
    files = dmeta["files"]
    missing = [f for f in dict.fromkeys(files) if not Path(f).exists()]
    if missing:
        raise ImageWriteError(f"DICOM-SEG needs the source DICOM files, which are gone: {missing[:3]}")
    if not segments:
        raise ImageWriteError("nothing to write: the mask has no object (all zero)")
    try:
        sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in dict.fromkeys(files)]
    except Exception as exc:
        raise ImageWriteError(f"cannot re-read the source DICOM files: {exc}") from exc

    ids = sorted(segments)
    stack = np.stack([np.asarray(segments[i], dtype=bool) for i in ids], axis=-1)  # (Z, Y, X, S)
    if dmeta.get("multiframe"):
        # back to the source frame order
        order = np.asarray(dmeta["frames"], dtype=int)
        unsorted = np.zeros_like(stack)
        unsorted[order] = stack
        stack = unsorted
    labels = labels or {}
    algo = hd.AlgorithmIdentificationSequence(
        name="medmem", family=codes.cid7162.ArtificialIntelligence, version=_version()
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k + 1,
            segment_label=str(labels.get(obj, f"object {obj}"))[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo,
            tracking_id=str(obj),
            tracking_uid=hd.UID(),
        )
        for k, obj in enumerate(ids)
    ]
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=stack,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="medmem",
            manufacturer_model_name="medmem",
            software_versions=_version(),
            device_serial_number="0",
            series_description="medmem segmentation",
            omit_empty_frames=False,
        )
    except Exception as exc:
        raise ImageWriteError(f"highdicom could not build the DICOM-SEG: {exc}") from exc
    seg.save_as(str(path))


def _version() -> str:
    try:
        from .. import __version__

        return str(__version__)
    except Exception:  # pragma: no cover
        return "0"
