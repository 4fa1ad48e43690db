"""What a file name says: its format (the one suffix table) and its place in natural order."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

#: suffix -> (format, kind, written): every file suffix medmem knows. ``kind`` is "volume", "image",
#: "video" or "dicom"; ``written``: `write_mask` / `write_volume` write it too (DICOM as DICOM-SEG).
SUFFIXES: Dict[str, Tuple[str, str, bool]] = {
    ".nii.gz": ("nifti", "volume", True), ".nii": ("nifti", "volume", True),
    ".nrrd": ("nrrd", "volume", True), ".nhdr": ("nrrd", "volume", False),
    ".mha": ("metaimage", "volume", True), ".mhd": ("metaimage", "volume", False),
    ".mgz": ("mgh", "volume", True), ".mgh": ("mgh", "volume", True),
    ".hdr": ("analyze", "volume", False), ".img": ("analyze", "volume", False),
    ".img.gz": ("analyze", "volume", False),
    ".vtk": ("vtk", "volume", False), ".gipl": ("gipl", "volume", False), ".gipl.gz": ("gipl", "volume", False),
    ".png": ("png", "image", True), ".jpg": ("jpeg", "image", True), ".jpeg": ("jpeg", "image", True),
    ".bmp": ("bmp", "image", True), ".tif": ("tiff", "image", True), ".tiff": ("tiff", "image", True),
    ".mp4": ("video", "video", True), ".avi": ("video", "video", True), ".mov": ("video", "video", False),
    ".mkv": ("video", "video", False), ".webm": ("video", "video", False), ".m4v": ("video", "video", False),
    ".mpg": ("video", "video", False), ".mpeg": ("video", "video", False), ".wmv": ("video", "video", False),
    ".dcm": ("dicom", "dicom", True), ".dicom": ("dicom", "dicom", True), ".ima": ("dicom", "dicom", False),
    ".dic": ("dicom", "dicom", False),
}


def _of_kind(kind: str) -> Dict[str, str]:
    return {s: fmt for s, (fmt, k, _) in SUFFIXES.items() if k == kind}


VOLUME_EXTS = _of_kind("volume")
IMAGE_EXTS = _of_kind("image")
VIDEO_EXTS = _of_kind("video")
DICOM_EXTS = frozenset(_of_kind("dicom"))
#: suffix -> format for the suffixes the writers write
WRITTEN_EXTS = {s: fmt for s, (fmt, _, written) in SUFFIXES.items() if written}
#: the data halves of header + data pairs: the header file is the volume
_DATA_HALVES = (".img", ".img.gz")
_LONGEST_FIRST = sorted(SUFFIXES, key=len, reverse=True)


def suffix_of(path: Union[str, os.PathLike]) -> str:
    """The longest known suffix of the file name ("x.nii.gz" -> ".nii.gz"), lower case; else its last suffix."""
    p = Path(path)
    name = p.name.lower()
    for s in _LONGEST_FIRST:
        if name.endswith(s):
            return s
    return p.suffix.lower()


def strip_suffix(name: str) -> str:
    """``name`` without its known suffix ("ct.nii.gz" -> "ct"), or without its last suffix."""
    s = suffix_of(name)
    return name[: -len(s)] if s else name


def is_volume_file(path: Union[str, os.PathLike]) -> bool:
    """A file name that opens as a volume on its own (a volume suffix, not the .img half of an Analyze pair)."""
    s = suffix_of(path)
    return s in VOLUME_EXTS and s not in _DATA_HALVES


def natural_key(name: str) -> List[Any]:
    """Sort key so that "frame2" < "frame10" (digit runs compare as numbers, letters case-blind)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(name))]
