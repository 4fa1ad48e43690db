"""``read_volume``: one entry point for every supported input.

=====================  ==============================  ========================
input                  library                         result ``kind``
=====================  ==============================  ========================
.nii / .nii.gz         SimpleITK (nibabel fallback)    volume (image if Z = 1)
NIfTI-2, .mgz .mgh     nibabel                         volume
.nrrd .nhdr .mha .mhd  SimpleITK                       volume
DICOM folder / file    pydicom (+ SimpleITK/GDCM for   volume / image / video
                       compressed pixel data)          (multi-frame cine)
.png .jpg .jpeg .bmp   SimpleITK (PNG), Pillow         image (Z = 1)
.tif .tiff             tifffile                        image, or volume (pages)
.mp4 .avi .mov .mkv    imageio + imageio-ffmpeg        video (Z = frames)
folder of frames       as the images, natural order    video
=====================  ==============================  ========================

Errors are :class:`~medmem.io.errors.ImageReadError` (a ``ValueError``) with
the path and the reason; geometry repairs are :class:`GeometryWarning`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import numpy as np

from .errors import ImageReadError, NonFiniteWarning
from .filenames import DICOM_EXTS, IMAGE_EXTS, SUFFIXES, natural_key, suffix_of
from .geometry import Geometry
from .volume import Volume

_ITK_FORMATS = ("nifti", "nrrd", "metaimage", "analyze", "vtk", "gipl", "mgh")


def guess_format(path: Union[str, os.PathLike]) -> str:
    """Format name of a path: "nifti", "nrrd", "metaimage", "dicom", "png", "jpeg", "tiff", "video", "frames", ..."""
    from .dicom import is_dicom_file

    p = Path(path)
    if p.is_dir():
        return _folder_kind(p)[0]
    ext = suffix_of(p)
    if ext in SUFFIXES:
        return SUFFIXES[ext][0]
    return "dicom" if is_dicom_file(p) else "unknown"


def _folder_kind(folder: Path) -> Tuple[str, List[Path]]:
    from .dicom import is_dicom_file

    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    files = [p for p in entries if p.is_file()]
    frames = [p for p in files if suffix_of(p) in IMAGE_EXTS]
    if any(suffix_of(p) in DICOM_EXTS for p in files) or any(
        is_dicom_file(p) for p in files[:20] if suffix_of(p) not in IMAGE_EXTS
    ):
        return "dicom", files
    if frames:
        return "frames", frames
    if any(p.is_dir() for p in entries):
        # DICOM exports often nest folders; look one level deeper for DICOM
        for sub in entries:
            if sub.is_dir() and _folder_kind(sub)[0] == "dicom":
                return "dicom", []
    return "empty", files


# --------------------------------------------------------------------------- modality guess
def _guess_modality(arr: np.ndarray, kind: str) -> Optional[str]:
    """A coarse hint from intensities and kind.

    "CT" when air sits near -1000 (1st percentile <= -500 HU, minimum >= -3100);
    otherwise videos are "endoscopy" (colour) or "US" (grey), 2D grey images
    "XR", colour images None, and grey volumes "MR".
    """
    signed = np.issubdtype(arr.dtype, np.signedinteger) or np.issubdtype(arr.dtype, np.floating)
    if arr.ndim == 3 and signed:
        sample = arr[:: max(1, arr.shape[0] // 8), ::4, ::4].astype(np.float64, copy=False)
        if float(np.percentile(sample, 1)) <= -500 and float(sample.min()) >= -3100:
            return "CT"
    if kind == "video":
        return "endoscopy" if arr.ndim == 4 else "US"
    if arr.ndim == 4:
        return None
    return "XR" if kind == "image" else "MR"


# --------------------------------------------------------------------------- 2D images
def _read_png(path: Path) -> Tuple[np.ndarray, Dict[str, Any]]:
    """PNG via SimpleITK (keeps 16-bit grey and 16-bit RGB); returns (Y, X) or (Y, X, 3)."""
    import SimpleITK as sitk

    from .itk import itk_error_message

    from .native import native_stderr

    try:
        with native_stderr():
            img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageReadError(f"{path}: not a readable PNG image: {itk_error_message(exc)}") from exc
    arr = sitk.GetArrayFromImage(img)
    meta = {"original_dtype": str(arr.dtype)}
    comps = img.GetNumberOfComponentsPerPixel()
    if comps == 2:  # grey + alpha
        arr = arr[..., 0]
    elif comps == 4:
        arr = arr[..., :3]
    return arr, meta


def _read_pillow(path: Path) -> Tuple[np.ndarray, Dict[str, Any]]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            elif mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc
    meta = {"original_dtype": str(arr.dtype), "pil_mode": mode}
    if arr.ndim == 3 and arr.shape[-1] == 2:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.dtype == np.int32 and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)  # Pillow mode "I" for 16-bit files
    return arr, meta


def _read_tiff(path: Path, channel: Optional[int]) -> Tuple[np.ndarray, Dict[str, Any], str]:
    """TIFF via tifffile; returns ((Z, Y, X[, 3]) array, meta, kind)."""
    import logging

    import tifffile

    records: List[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("tifffile")  # tifffile logs what it skips; on failure our error says it all
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        with tifffile.TiffFile(str(path)) as tf:
            series = tf.series[0]
            axes = series.axes
            arr = series.asarray()
    except Exception as exc:
        raise ImageReadError(f"{path}: not a readable TIFF ({exc})") from exc
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    for rec in records:
        if rec.levelno >= logging.WARNING:
            warnings.warn(f"{path}: {rec.getMessage()}", stacklevel=4)
    meta = {"original_dtype": str(arr.dtype), "tiff_axes": axes}
    # move samples/channels last, keep one stack axis
    if "S" in axes:
        arr = np.moveaxis(arr, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    if "C" in axes:
        n = arr.shape[axes.index("C")]
        if channel is not None:
            if not 0 <= channel < n:
                raise ImageReadError(f"{path}: channel={channel} out of range 0..{n - 1}")
            arr = np.take(arr, channel, axis=axes.index("C"))
            axes = axes.replace("C", "")
        elif n in (3, 4) and "S" not in axes:
            arr = np.moveaxis(arr, axes.index("C"), -1)
            axes = axes.replace("C", "") + "S"
        else:
            raise ImageReadError(f"{path}: TIFF has {n} channels (axes {meta['tiff_axes']}); choose channel=0..{n - 1}")
    if axes.endswith("S"):
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
        elif arr.shape[-1] == 1:
            arr, axes = arr[..., 0], axes[:-1]
        elif arr.shape[-1] != 3:
            n = arr.shape[-1]
            if channel is None:
                raise ImageReadError(f"{path}: TIFF pixels have {n} samples; choose channel=0..{n - 1}")
            arr, axes = arr[..., channel], axes[:-1]
    spatial = axes.replace("S", "")
    if len(spatial) == 2:
        return arr[None], meta, "image"
    if len(spatial) == 3:
        return arr, meta, "volume"
    raise ImageReadError(
        f"{path}: TIFF with axes {meta['tiff_axes']} (shape {arr.shape}) is not a 2D image or a 3D stack"
    )


def _read_2d(path: Path) -> Tuple[np.ndarray, Dict[str, Any]]:
    ext = suffix_of(path)
    if ext == ".png":
        return _read_png(path)
    return _read_pillow(path)


# --------------------------------------------------------------------------- videos and frames
def _ffmpeg_message(exc: BaseException) -> str:
    """The last informative lines of an ffmpeg error (imageio includes the whole banner)."""
    text = str(exc)
    if "=== stderr ===" in text:
        head, tail = text.split("=== stderr ===", 1)
        lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith(("ffmpeg version", "built with", "configuration:", "lib"))]
        text = head.strip() + ": " + " / ".join(lines[-2:])
    return " ".join(text.split())[:400]


def _read_video(path: Path) -> Tuple[np.ndarray, Dict[str, Any]]:
    import imageio.v2 as iio

    try:
        reader = iio.get_reader(str(path), format="FFMPEG")
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot open video ({_ffmpeg_message(exc)})") from exc
    frames = []
    try:
        info = reader.get_meta_data()
        for frame in reader:
            frames.append(np.asarray(frame))
    except Exception as exc:
        if not frames:
            raise ImageReadError(f"{path}: cannot decode video ({_ffmpeg_message(exc)})") from exc
        warnings.warn(f"{path}: video decoding stopped after {len(frames)} frames ({_ffmpeg_message(exc)})",
                      stacklevel=3)
    finally:
        reader.close()
    if not frames:
        raise ImageReadError(f"{path}: video has no frames")
    _check_frame_count(path, len(frames), info)
    arr = np.stack(frames)
    meta = {"original_dtype": str(arr.dtype), "fps": float(info.get("fps") or 0) or None,
            "codec": info.get("codec")}
    if arr.ndim == 4:
        arr = arr[..., :3]
        if _is_grey(arr):
            arr = arr[..., 0].copy()
            meta["grey_video"] = True
    return arr, meta


def _check_frame_count(path: Path, decoded: int, info: Dict[str, Any]) -> None:
    """Warn when fewer frames decode than the container's duration x fps promise (a truncated file).

    ffmpeg stops quietly at the end of the data, so without this a cut-off video reads as a shorter one.
    """
    fps, duration = float(info.get("fps") or 0), float(info.get("duration") or 0)
    if not (np.isfinite(fps) and np.isfinite(duration)) or fps <= 0 or duration <= 0:
        return
    expected = int(round(duration * fps))
    if decoded < expected:
        warnings.warn(
            f"{path}: only {decoded} of the {expected} frames the file announces ({duration:g} s at {fps:g} fps) "
            "could be decoded; the file may be truncated",
            stacklevel=4,
        )


def _is_grey(rgb: np.ndarray, tol: int = 3) -> bool:
    """Colour frames whose channels agree within ``tol`` (codecs add a little chroma noise)."""
    sample = rgb[:: max(1, rgb.shape[0] // 8)].astype(np.int16)
    return bool(
        np.abs(sample[..., 0] - sample[..., 1]).max() <= tol and np.abs(sample[..., 0] - sample[..., 2]).max() <= tol
    )


def _read_frames(folder: Path, files: List[Path]) -> Tuple[np.ndarray, Dict[str, Any]]:
    frames = [(_tiff_2d(f) if suffix_of(f) in (".tif", ".tiff") else _read_2d(f))[0] for f in files]
    shapes = {a.shape[:2] for a in frames}
    if len(shapes) > 1:
        raise ImageReadError(f"{folder}: frames have different sizes {sorted(shapes)[:4]}; cannot stack them")
    if any(a.ndim == 3 for a in frames):
        frames = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1) for a in frames]
    dtypes = {a.dtype for a in frames}
    arr = np.stack(frames).astype(np.result_type(*dtypes))
    return arr, {"original_dtype": str(arr.dtype), "frame_files": [f.name for f in files]}


def _tiff_2d(path: Path) -> Tuple[np.ndarray, Dict[str, Any]]:
    arr, meta, kind = _read_tiff(path, None)
    if arr.shape[0] != 1:
        raise ImageReadError(f"{path}: multi-page TIFF inside a frame folder")
    return arr[0], meta


# --------------------------------------------------------------------------- main entry
def _companions(path: Path) -> List[str]:
    """The file and, for header/data pairs (.mhd/.raw, .nhdr/.raw, .hdr/.img), its data files."""
    out = [str(path.resolve())]
    ext = suffix_of(path)
    if ext in (".mhd", ".nhdr", ".hdr", ".img", ".img.gz"):
        stem = path.name[: -len(ext)]
        for p in path.parent.iterdir():
            if p != path and p.is_file() and p.name.startswith(stem + "."):
                out.append(str(p.resolve()))
    return out


def _finite(arr: np.ndarray, path: Path, nonfinite: str, fill_value: Optional[float]) -> Tuple[np.ndarray, dict]:
    """Apply the ``nonfinite`` rule of :func:`read_volume` to NaN / inf voxels."""
    if not np.issubdtype(arr.dtype, np.floating):
        return arr, {}
    bad = ~np.isfinite(arr)
    n = int(bad.sum())
    if n == 0:
        return arr, {}
    n_nan = int(np.isnan(arr).sum())
    if nonfinite == "error":
        raise ImageReadError(
            f"{path}: {n} voxel(s) are not finite ({n_nan} NaN, {n - n_nan} inf); pass "
            "nonfinite='warn' or 'replace' (NaN -> fill_value or the minimum finite value, +/-inf -> max/min) "
            "to read anyway"
        )
    if not (~bad).any():
        raise ImageReadError(f"{path}: every voxel is NaN or inf; there is no image to segment")
    finite = arr[~bad]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 0.0
    out = arr.copy()
    out[np.isnan(arr)] = lo if fill_value is None else fill_value
    out[np.isposinf(arr)] = hi
    out[np.isneginf(arr)] = lo
    if nonfinite == "warn":
        fill = f"{lo:g} (the minimum)" if fill_value is None else f"{fill_value:g}"
        warnings.warn(
            f"{path}: {n} of {arr.size} voxel(s) are not finite ({n_nan} NaN, {n - n_nan} inf); NaN read as "
            f"{fill}, +/-inf clipped to the finite max/min",
            NonFiniteWarning,
            stacklevel=3,
        )
    return out, {"nonfinite_replaced": n}


def read_volume(
    path_or_folder: Union[str, os.PathLike],
    *,
    series_uid: Optional[str] = None,
    channel: Optional[int] = None,
    timepoint: Optional[int] = None,
    nonfinite: Literal["warn", "error", "replace"] = "warn",
    fill_value: Optional[float] = None,
) -> Volume:
    """Read a volume, image, video, DICOM series or frame folder into a :class:`Volume`.

    Args:
        path_or_folder: a file (NIfTI, NRRD, MHA/MHD, PNG, JPEG, TIFF, BMP,
            MP4/AVI/..., DICOM) or a folder (a DICOM series, or image frames
            sorted naturally: frame2 before frame10).
        series_uid: for DICOM folders holding several series.
        channel: which channel of a multi-channel (5D / vector / multi-sample) file.
        timepoint: which time point of a 4D file (NIfTI, NRRD, MHA, MGH frames).
        nonfinite: NaN / inf voxels: "warn" (default) fills NaN with
            ``fill_value`` (default: the minimum finite value, i.e. background),
            clips +/-inf to the finite max/min and warns
            (:class:`~medmem.io.errors.NonFiniteWarning`, with the count);
            "replace" does the same without a warning; "error" refuses them.

    Returns:
        :class:`Volume` with ``array`` (Z, Y, X) or (Z, Y, X, 3), spacing /
        origin (x, y, z) in mm, 3x3 direction, ``modality`` hint, ``kind``.

    Raises:
        ImageReadError: missing path, unknown or corrupt file, zero-size image,
            NaN/inf voxels, ambiguous 4D/5D data, inconsistent DICOM series.
    """
    from .dicom import read_dicom
    from .itk import read_itk

    if nonfinite not in ("warn", "error", "replace"):
        raise ValueError(f"nonfinite must be 'warn', 'error' or 'replace', got {nonfinite!r}")
    path = Path(os.fspath(path_or_folder)).expanduser()
    if not path.exists():
        parent = path.parent
        hint = "" if parent.exists() else f" (folder {parent} does not exist either)"
        raise ImageReadError(f"no such file or folder: {path}{hint}")
    meta: Dict[str, Any] = {"source_path": str(path.resolve())}
    modality: Optional[str] = None
    modality_source = "guess"
    geom: Optional[Geometry] = None

    if path.is_dir():
        kind_name, files = _folder_kind(path)
        if kind_name == "dicom":
            arr, geom, m, modality, kind = read_dicom(path, series_uid=series_uid)
            fmt, modality_source = "dicom", "dicom"
            meta.update(m)
        elif kind_name == "frames":
            arr, m = _read_frames(path, files)
            fmt, kind = "frames", "video"
            meta.update(m)
            meta["source_files"] = [str(f.resolve()) for f in files]
        else:
            listing = ", ".join(p.name for p in files[:8]) or "nothing"
            raise ImageReadError(
                f"{path}: folder holds no DICOM series and no image frames (found: {listing})"
            )
    else:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: file is empty (0 bytes)")
        fmt = guess_format(path)
        if fmt in _ITK_FORMATS:
            arr, geom, m = read_itk(path, channel=channel, timepoint=timepoint, fmt=fmt)
            meta.update(m)
            kind = "volume" if arr.shape[0] > 1 else "image"
            if "file_modality" in m:
                modality, modality_source = str(m["file_modality"]), "file"
        elif fmt == "dicom":
            arr, geom, m, modality, kind = read_dicom(path, series_uid=series_uid)
            modality_source = "dicom"
            meta.update(m)
        elif fmt == "tiff":
            arr, m, kind = _read_tiff(path, channel)
            meta.update(m)
        elif fmt in ("png", "jpeg", "bmp"):
            arr, m = _read_2d(path)
            arr, kind = arr[None], "image"
            meta.update(m)
        elif fmt == "video":
            arr, m = _read_video(path)
            kind = "video"
            meta.update(m)
        else:
            raise ImageReadError(
                f"{path}: unrecognised file type {path.suffix or '(no extension)'!r}; medmem reads NIfTI-1/2 "
                "(.nii/.nii.gz), NRRD, MHA/MHD, FreeSurfer MGH/MGZ, DICOM (file or series folder), PNG/JPEG/TIFF/BMP, "
                "MP4/AVI videos and folders of frames"
            )
        if "source_files" not in meta:
            meta["source_files"] = _companions(path)
    if 0 in arr.shape:
        raise ImageReadError(f"{path}: image has zero size (array shape {arr.shape})")
    if timepoint is not None and fmt not in _ITK_FORMATS:
        raise ImageReadError(f"{path}: timepoint= applies to 4D NIfTI/NRRD/MHA files, not to {fmt} input")
    if channel is not None and fmt not in _ITK_FORMATS and fmt != "tiff":
        if arr.ndim != 4 or not 0 <= channel < arr.shape[-1]:
            raise ImageReadError(f"{path}: channel={channel} not available (array shape {arr.shape})")
        arr = arr[..., channel]
        meta["channel"] = channel
    arr, m = _finite(arr, path, nonfinite, fill_value)
    meta.update(m)
    meta["format"] = fmt
    meta.setdefault("original_dtype", str(arr.dtype))
    if modality is None:
        modality = _guess_modality(arr, kind)
        modality_source = "guess" if modality is not None else "none"
    meta["modality_source"] = modality_source
    if geom is None:
        geom = Geometry(arr.shape[:3])
    try:
        return Volume(arr, geom.spacing, geom.origin, geom.direction, modality, kind, meta)
    except ValueError as exc:
        if isinstance(exc, ImageReadError):
            raise
        raise ImageReadError(f"{path}: {exc}") from exc
