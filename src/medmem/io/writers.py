"""Writing masks and images in the geometry of their source.

* :func:`write_mask` — a label map ``(Z, Y, X)`` of ints, or per-object masks
  ``{obj_id: (Z, Y, X) bool}``, written with the spacing / origin / direction
  of ``like`` as NIfTI (NIfTI-2 when the source was NIfTI-2), NRRD, MHA,
  FreeSurfer MGH/MGZ, PNG (a 2D file, or a folder of per-slice PNGs) or
  DICOM-SEG (``.dcm``, DICOM sources only).
* :func:`write_volume` — an image or volume as NIfTI / NRRD / MHA, a 2D image
  as PNG / TIFF / JPEG / BMP, a video as MP4.

Every file is written to a temporary name in the target folder and moved in
place with ``os.replace`` (atomic on one file system), and nothing is ever
written over an input file of ``like`` (``meta["source_path"]`` and
``meta["source_files"]``): that raises :class:`ImageWriteError`.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from ..atomic import atomic_path
from .errors import ImageWriteError
from .filenames import DICOM_EXTS, IMAGE_EXTS, WRITTEN_EXTS, strip_suffix, suffix_of
from .volume import Volume

#: formats :func:`write_mask` writes (a mask is a label map, so no lossy or video formats)
MASK_FORMATS = ("nifti", "nrrd", "metaimage", "mgh", "png", "png-folder", "dicom-seg")
_MASK_HELP = (".nii.gz, .nii, .nrrd, .mha, .mgz, .png (2D sources), a folder (one PNG per slice) "
              "or .dcm (DICOM-SEG)")


def output_format(path: Union[str, os.PathLike]) -> str:
    """Format chosen for an output path: nifti, nrrd, metaimage, mgh, png, tiff, jpeg, bmp, video, dicom-seg, png-folder."""
    p = Path(path)
    ext = suffix_of(p)
    if ext in WRITTEN_EXTS:
        return "dicom-seg" if ext in DICOM_EXTS else WRITTEN_EXTS[ext]
    if p.is_dir() or str(path).endswith(("/", os.sep)) or ext == "":
        return "png-folder"
    raise ImageWriteError(
        f"{p}: unsupported output extension {ext!r}; use .nii.gz, .nii, .nrrd, .mha, .mgz, .png "
        "(or a folder for per-slice PNGs), .tif, .dcm (DICOM-SEG) or .mp4"
    )


# --------------------------------------------------------------------------- safety
def _same_file(a: Path, b: Union[str, os.PathLike]) -> bool:
    b = Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _guard_inputs(path: Path, like: Optional[Volume]) -> None:
    """Raise if ``path`` is ``like``'s source (file or folder) or one of its source files."""
    if like is None:
        return
    sources = [like.meta.get("source_path"), *like.meta.get("source_files", [])]
    for src in filter(None, sources):
        if _same_file(path, src):
            what = "folder" if Path(src).is_dir() else "file"
            raise ImageWriteError(f"refusing to overwrite an input {what}: {path} is the source {src}")


# --------------------------------------------------------------------------- masks
def _label_dtype(max_label: int) -> type:
    if max_label <= 255:
        return np.uint8
    if max_label <= 65535:
        return np.uint16
    return np.int32


def _spatial(arr: np.ndarray, like: Volume, what: str) -> np.ndarray:
    if arr.ndim == 2 and like.shape[0] == 1:
        arr = arr[None]
    if arr.shape != like.shape:
        raise ImageWriteError(f"{what} has shape {arr.shape}, but the source volume is (Z, Y, X) = {like.shape}")
    return arr


def mask_to_label_map(
    mask: Union[np.ndarray, Mapping[int, np.ndarray]], like: Volume
) -> Tuple[np.ndarray, Dict[int, np.ndarray]]:
    """Normalise a mask to ``(label map (Z, Y, X), {id: bool mask})``.

    Overlapping per-object masks are resolved in the label map by giving
    each voxel the highest object id (with a warning); the dict keeps the
    overlaps (DICOM-SEG stores them faithfully).
    """
    if isinstance(mask, Mapping):
        objects: Dict[int, np.ndarray] = {}
        for key, m in mask.items():
            try:
                obj = int(key)
            except (TypeError, ValueError):
                raise ImageWriteError(f"object ids must be integers, got {key!r}") from None
            if obj <= 0:
                raise ImageWriteError(f"object ids must be positive (0 is background), got {obj}")
            m = np.asarray(m)
            if m.dtype != bool:
                m = m > 0.5 if np.issubdtype(m.dtype, np.floating) else m != 0
            objects[obj] = _spatial(m, like, f"mask of object {obj}")
        max_id = max(objects, default=0)
        labels = np.zeros(like.shape, dtype=_label_dtype(max_id))
        count = np.zeros(like.shape, dtype=np.uint16) if len(objects) > 1 else None
        for obj in sorted(objects):
            labels[objects[obj]] = obj
            if count is not None:
                count += objects[obj]
        if count is not None:
            overlap = int((count > 1).sum())
            if overlap:
                warnings.warn(
                    f"{overlap} voxel(s) belong to several objects; the label map keeps the highest id there",
                    stacklevel=3,
                )
        return labels, objects
    arr = np.asarray(mask)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ImageWriteError("a label map must hold integers; threshold probabilities first")
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ImageWriteError(f"a label map must be an integer array, got dtype {arr.dtype}")
    arr = _spatial(arr, like, "label map")
    if arr.size and int(arr.min()) < 0:
        raise ImageWriteError("label maps cannot hold negative labels")
    max_id = int(arr.max()) if arr.size else 0
    arr = arr.astype(_label_dtype(max_id), copy=False)
    ids = [int(i) for i in np.unique(arr) if i != 0]
    return arr, {i: arr == i for i in ids}


def _labels_sidecar(path: Path, labels: Optional[Mapping[int, str]], present: List[int]) -> None:
    if not labels:
        return
    side = path.parent / f"{strip_suffix(path.name)}.labels.json" if path.suffix else path / "labels.json"
    payload = {"labels": {str(int(k)): str(v) for k, v in sorted(labels.items())}, "present": present}
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))


def _write_itk(arr: np.ndarray, like: Volume, path: Path, labels: Optional[Mapping[int, str]] = None) -> None:
    """NIfTI / NRRD / MHA through ITK; NIfTI-2 (a NIfTI-2 source) and MGH/MGZ through nibabel."""
    import SimpleITK as sitk

    from .itk import itk_error_message, to_sitk

    fmt = output_format(path)
    if fmt == "mgh" or (fmt == "nifti" and like.meta.get("nifti_version") == 2):
        from .nib import write_nibabel

        with atomic_path(path) as tmp:
            write_nibabel(arr, like.geometry, tmp, "mgh" if fmt == "mgh" else "nifti2")
        return

    img = to_sitk(arr, like.geometry)
    if labels and suffix_of(path) in (".nrrd", ".mha"):
        img.SetMetaData("medmem_labels", json.dumps({str(int(k)): str(v) for k, v in labels.items()}))
    with atomic_path(path) as tmp:
        try:
            sitk.WriteImage(img, str(tmp), True)
        except RuntimeError as exc:
            raise ImageWriteError(f"{path}: cannot write: {itk_error_message(exc)}") from exc


def _write_2d(arr2d: np.ndarray, path: Path) -> None:
    """(Y, X) or (Y, X, 3) -> PNG/TIFF/JPEG/BMP; 16-bit kept for PNG and TIFF."""
    fmt = IMAGE_EXTS.get(suffix_of(path))
    with atomic_path(path) as tmp:
        if fmt == "tiff":
            import tifffile

            tifffile.imwrite(str(tmp), arr2d, photometric="rgb" if arr2d.ndim == 3 else "minisblack")
        elif fmt == "png":
            import SimpleITK as sitk

            if arr2d.dtype not in (np.uint8, np.uint16):
                raise ImageWriteError(f"{path}: PNG holds 8- or 16-bit unsigned integers, got {arr2d.dtype}")
            sitk.WriteImage(sitk.GetImageFromArray(arr2d, isVector=arr2d.ndim == 3), str(tmp))
        else:
            from PIL import Image

            if arr2d.dtype != np.uint8:
                raise ImageWriteError(f"{path}: {fmt} holds 8-bit images, got {arr2d.dtype}; use PNG or TIFF")
            Image.fromarray(arr2d).save(tmp, format="JPEG" if fmt == "jpeg" else fmt.upper())


def _write_png_folder(stack: np.ndarray, like: Volume, folder: Path) -> List[Path]:
    if folder.exists() and not folder.is_dir():
        raise ImageWriteError(f"{folder} is a file; per-slice PNGs need a folder (or give a .png/.nii.gz name)")
    folder.mkdir(parents=True, exist_ok=True)
    frame_files = like.meta.get("frame_files")
    if frame_files and len(frame_files) == stack.shape[0]:
        names = [Path(f).stem + ".png" for f in frame_files]
    else:
        width = max(4, len(str(stack.shape[0] - 1)))
        names = [f"slice_{i:0{width}d}.png" for i in range(stack.shape[0])]
    out = []
    for i, name in enumerate(names):
        target = folder / name
        _guard_inputs(target, like)
        _write_2d(stack[i], target)
        out.append(target)
    return out


def _writable_folder(path: Path) -> None:
    """Raise unless the folder that will hold ``path`` exists or can be made, and is writable."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ImageWriteError(f"{path}: cannot create the output folder, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ImageWriteError(f"{path}: the folder {parent} is not writable")


def check_mask_output(path: Union[str, os.PathLike], like: Optional[Volume] = None) -> str:
    """Validate a mask output path before any work is done; return its format.

    Without ``like`` only the path is checked (extension, folder writable); with the source
    volume also what depends on it (one PNG holds one slice, DICOM-SEG needs a DICOM source,
    never an input file). :func:`write_mask` runs the same checks.
    """
    path = Path(os.fspath(path)).expanduser()
    fmt = output_format(path)
    if fmt not in MASK_FORMATS:
        raise ImageWriteError(f"{path}: a mask cannot be written as {fmt}; use {_MASK_HELP}")
    if fmt != "png-folder" and path.is_dir():
        raise ImageWriteError(f"{path} is a folder; give a file name such as mask.nii.gz")
    _writable_folder(path if fmt != "png-folder" else path / "x")
    if like is None:
        return fmt
    _guard_inputs(path, like)
    if fmt == "png" and like.shape[0] != 1:
        raise ImageWriteError(
            f"{path}: a single PNG holds one slice but the mask has {like.shape[0]}; give a folder path "
            "for one PNG per slice, or use .nii.gz"
        )
    if fmt == "dicom-seg" and not like.meta.get("dicom"):
        raise ImageWriteError(f"{path}: DICOM-SEG needs a DICOM source; use .nii.gz for a {like.meta.get('format')} input")
    return fmt


def write_mask(
    mask: Union[np.ndarray, Mapping[int, np.ndarray]],
    like: Volume,
    path: Union[str, os.PathLike],
    *,
    labels: Optional[Dict[int, str]] = None,
) -> Path:
    """Write a segmentation in the geometry of ``like``.

    Args:
        mask: label map ``(Z, Y, X)`` of non-negative ints (``(Y, X)`` allowed
            for 2D sources), or ``{obj_id: (Z, Y, X) bool}`` per object.
        like: the source :class:`Volume` (its spacing, origin, direction and,
            for DICOM-SEG, its DICOM files are used).
        path: ``.nii.gz`` / ``.nii`` / ``.nrrd`` / ``.mha`` / ``.mgz`` / ``.png`` (2D
            sources) / a folder (one PNG per slice, pixel value = label id) /
            ``.dcm`` (DICOM-SEG, DICOM sources only).
        labels: optional ``{id: name}``; stored in DICOM-SEG segment labels, in
            NRRD/MHA metadata (``medmem_labels``) and in a ``<name>.labels.json``
            sidecar for the other formats.

    Returns:
        The path written.

    Raises:
        ImageWriteError: shape mismatch, bad labels, unsupported format, or
            ``path`` is one of ``like``'s input files.
    """
    path = Path(os.fspath(path)).expanduser()
    fmt = check_mask_output(path, like)
    label_map, objects = mask_to_label_map(mask, like)
    present = sorted(objects)
    if fmt == "dicom-seg":
        from .dicom import write_dicom_seg

        segments = dict(objects)
        for obj in labels or {}:  # named objects that came out empty still get a segment
            if int(obj) > 0 and int(obj) not in segments:
                segments[int(obj)] = np.zeros(like.shape, dtype=bool)
        with atomic_path(path) as tmp:
            write_dicom_seg(segments, like.meta, tmp, labels=labels)
        return path
    if fmt in ("nifti", "nrrd", "metaimage", "mgh"):
        _write_itk(label_map, like, path, labels)
    elif fmt == "png":
        if label_map.dtype not in (np.uint8, np.uint16):
            raise ImageWriteError(f"{path}: labels above 65535 do not fit a PNG")
        _write_2d(label_map[0], path)
    elif fmt == "png-folder":
        if label_map.dtype not in (np.uint8, np.uint16):
            raise ImageWriteError(f"{path}: labels above 65535 do not fit a PNG")
        _write_png_folder(label_map, like, path)
    else:  # pragma: no cover - check_mask_output refuses the other formats
        raise ImageWriteError(f"{path}: masks are written as {_MASK_HELP}")
    _labels_sidecar(path, labels, present)
    return path


def write_volume(volume: Volume, path: Union[str, os.PathLike]) -> Path:
    """Write an image / volume / video.

    NIfTI / NRRD / MHA keep the geometry (colour becomes a vector image);
    PNG / TIFF / JPEG / BMP need ``Z = 1`` (a 2D image), a folder path writes
    one PNG per slice, ``.mp4`` writes uint8 frames (grey or RGB) at
    ``meta["fps"]`` (default 10).  Never overwrites ``volume``'s own inputs.
    """
    path = Path(os.fspath(path)).expanduser()
    fmt = output_format(path)
    _guard_inputs(path, volume)
    arr = volume.array
    if fmt in ("nifti", "nrrd", "metaimage", "mgh"):
        _write_itk(arr, volume, path)
    elif fmt in ("png", "tiff", "jpeg", "bmp"):
        if volume.shape[0] != 1:
            if fmt == "tiff":
                import tifffile

                with atomic_path(path) as tmp:
                    tifffile.imwrite(str(tmp), arr, photometric="rgb" if arr.ndim == 4 else "minisblack")
                return path
            raise ImageWriteError(f"{path}: {fmt.upper()} holds one 2D image; this volume has Z = {volume.shape[0]}")
        _write_2d(arr[0], path)
    elif fmt == "png-folder":
        if arr.dtype not in (np.uint8, np.uint16):
            raise ImageWriteError(f"{path}: PNG slices need uint8/uint16 data, got {arr.dtype}")
        _write_png_folder(arr, volume, path)
    elif fmt == "video":
        import imageio.v2 as iio

        if arr.dtype != np.uint8:
            raise ImageWriteError(f"{path}: video frames must be uint8, got {arr.dtype}")
        fps = float(volume.meta.get("fps") or 10.0)
        with atomic_path(path) as tmp:
            try:
                with iio.get_writer(str(tmp), format="FFMPEG", fps=fps, macro_block_size=1) as w:
                    for frame in arr:
                        w.append_data(frame)
            except Exception as exc:
                raise ImageWriteError(f"{path}: cannot encode video: {exc}") from exc
    else:
        raise ImageWriteError(f"{path}: write_volume does not write {fmt}")
    return path
