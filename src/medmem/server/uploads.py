"""Uploaded and named inputs: safe file names, size limits, zipped DICOM series, clear read errors."""
from __future__ import annotations

import re
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable, List, Optional, Tuple

from ..io import ImageReadError, read_volume
from ..io.filenames import DICOM_EXTS, IMAGE_EXTS, VIDEO_EXTS, is_volume_file, suffix_of

CHUNK = 1 << 20
MAX_ZIP_MEMBERS = 5000


class UploadError(ValueError):
    """An upload or a named input that cannot be used (the message says why)."""


class TooLarge(UploadError):
    """An upload above the size limit."""


def safe_name(name: Optional[str], default: str = "upload") -> str:
    """A file name reduced to [A-Za-z0-9._-] without any folder part (never '.' or '..')."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[:120]
    return base or default


def save_stream(src: BinaryIO, dest: Path, limit_bytes: int, used: int = 0) -> int:
    """Copy an upload to `dest` (a new file), stopping past `limit_bytes` in all; returns bytes written."""
    n = used
    with open(dest, "xb") as out:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            n += len(chunk)
            if n > limit_bytes:
                raise TooLarge(f"upload larger than the limit of {limit_bytes // (1 << 20)} MB (--max-upload-mb)")
            out.write(chunk)
    return n


def extract_zip(path: Path, dest: Path, limit_bytes: int) -> Path:
    """Extract a zip (e.g. a DICOM series) into `dest`, refusing links, absolute or '..' paths, and
    archives that unpack to more than `limit_bytes`; returns the folder that holds the files."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UploadError("the .zip file is damaged or not a zip archive")
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if not members:
            raise UploadError("the .zip file is empty")
        if len(members) > MAX_ZIP_MEMBERS:
            raise UploadError(f"the .zip file holds {len(members)} files; at most {MAX_ZIP_MEMBERS}")
        if sum(m.file_size for m in members) > limit_bytes:
            raise TooLarge(f"the .zip file unpacks to more than the limit of {limit_bytes // (1 << 20)} MB")
        dest.mkdir(parents=True, exist_ok=False)
        for i, m in enumerate(members):
            parts = PurePosixPath(m.filename.replace("\\", "/")).parts
            if m.filename.startswith(("/", "\\")) or ".." in parts or stat.S_ISLNK(m.external_attr >> 16):
                raise UploadError(f"the .zip file has an unsafe entry {m.filename!r}")
            if parts and (parts[-1].startswith(".") or parts[0] == "__MACOSX"):
                continue
            target = dest / f"{i:05d}_{safe_name(parts[-1] if parts else '', 'file')}"
            with zf.open(m) as src, open(target, "xb") as out:
                written = 0
                while True:
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > m.file_size:
                        raise UploadError(f"the .zip entry {m.filename!r} is larger than it claims")
                    out.write(chunk)
    return dest


def read_input(path: Path, shown_as: str):
    """`read_volume`, with the server-side path in error messages replaced by the client's name;
    refuses inputs the viewer cannot segment (a single 2D image is fine, 4D/5D are not)."""
    try:
        vol = read_volume(path, nonfinite="error")   # NaN/inf: a clear error, not a silent fill
    except ImageReadError as e:
        raise UploadError(str(e).replace(str(path.resolve()), shown_as).replace(str(path), shown_as)) from None
    except (OSError, ValueError) as e:
        raise UploadError(f"{shown_as}: cannot read: {e}".replace(str(path), shown_as)) from None
    if vol.array.ndim == 4 and vol.array.shape[-1] != 3:
        raise UploadError(f"{shown_as}: {vol.array.shape[-1]}-channel images are not supported; give one channel")
    return vol


def resolve_data_file(data_dir: Optional[Path], rel: str) -> Path:
    """A file or folder under --data named by a relative path; anything outside is refused."""
    if data_dir is None:
        raise UploadError("this server has no --data folder")
    root = data_dir.resolve()
    p = (root / rel).resolve()
    if p != root and root not in p.parents:
        raise UploadError(f"{rel!r} is outside the --data folder")
    if not p.exists():
        raise UploadError(f"{rel!r} does not exist under the --data folder")
    return p


def _listed_file(p: Path) -> bool:
    """A file offered on its own: a volume, image or video (DICOM files are offered by their folder)."""
    return is_volume_file(p) or suffix_of(p) in IMAGE_EXTS or suffix_of(p) in VIDEO_EXTS


def list_data(data_dir: Optional[Path], limit: int = 500) -> List[str]:
    """Relative paths of candidate inputs under --data: volume files and folders of DICOM files."""
    if data_dir is None:
        return []
    root = data_dir.resolve()
    out: List[str] = []
    for p in sorted(root.rglob("*")):
        if len(out) >= limit:
            break
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.is_file() and _listed_file(p):
            out.append(str(p.relative_to(root)))
        elif p.is_dir() and any(suffix_of(c) in DICOM_EXTS for c in _first(p.iterdir(), 50)):
            out.append(str(p.relative_to(root)) + "/")
    return out


def _first(it: Iterable, n: int) -> list:
    out = []
    for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out


def store_uploads(files: List[Tuple[str, BinaryIO]], folder: Path, limit_bytes: int) -> Tuple[Path, str]:
    """Save uploaded files under `folder/input`; returns (the path to read, a name to show).

    One file: that file (a .zip is unpacked as a folder, e.g. a DICOM series); several files: the
    folder of them (a DICOM series)."""
    if not files:
        raise UploadError("no file uploaded")
    inp = folder / "input"
    inp.mkdir(parents=True, exist_ok=False)
    used = 0
    saved: List[Path] = []
    names = set()
    for i, (name, stream) in enumerate(files):
        nm = safe_name(name, f"file{i}")
        if nm in names:
            nm = f"{i:05d}_{nm}"
        names.add(nm)
        dest = inp / nm
        used = save_stream(stream, dest, limit_bytes, used)
        if dest.stat().st_size == 0:
            raise UploadError(f"{safe_name(name)}: the file is empty (0 bytes)")
        saved.append(dest)
    if len(saved) == 1:
        p = saved[0]
        if p.name.lower().endswith(".zip"):
            return extract_zip(p, folder / "unzipped", limit_bytes), p.name
        return p, p.name
    return inp, f"{len(saved)} files"
