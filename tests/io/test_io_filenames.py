"""The one suffix table and natural order: readers, writers, the CLI and the server agree."""
from __future__ import annotations

from pathlib import Path

import pytest

from medmem.io.filenames import (
    DICOM_EXTS,
    SUFFIXES,
    WRITTEN_EXTS,
    is_volume_file,
    natural_key,
    strip_suffix,
    suffix_of,
)
from medmem.io.readers import guess_format
from medmem.io.writers import MASK_FORMATS, output_format


@pytest.mark.parametrize("name, suffix", [
    ("CT.NII.GZ", ".nii.gz"), ("a.img.gz", ".img.gz"), ("brain.seg.nrrd", ".nrrd"), ("x.tar.gz", ".gz"),
    ("frame_001.PNG", ".png"), ("case.01", ".01"), ("README", ""),
])
def test_suffix_of_takes_the_longest_known_suffix(name, suffix):
    assert suffix_of(name) == suffix


def test_strip_suffix_keeps_inner_dots():
    assert strip_suffix("case.01.nii.gz") == "case.01"
    assert strip_suffix("scan.mha") == "scan"
    assert strip_suffix("README") == "README"


def test_volume_files_exclude_the_data_half_of_analyze_pairs():
    assert is_volume_file(Path("a.hdr")) and is_volume_file("b.nii.gz") and is_volume_file("c.mgz")
    assert not is_volume_file("a.img") and not is_volume_file("a.img.gz")
    assert not is_volume_file("x.png") and not is_volume_file("x.dcm")


def test_readers_and_writers_take_their_formats_from_the_table(tmp_path):
    for suffix, (fmt, kind, _) in SUFFIXES.items():
        assert guess_format(tmp_path / f"f{suffix}") == fmt
    for suffix, fmt in WRITTEN_EXTS.items():
        assert output_format(tmp_path / f"f{suffix}") == ("dicom-seg" if suffix in DICOM_EXTS else fmt)
    # every mask format but the folder one has a written suffix
    assert set(MASK_FORMATS) - {"png-folder", "dicom-seg"} <= set(WRITTEN_EXTS.values())


def test_natural_key_orders_digit_runs_as_numbers():
    names = ["frame10.png", "Frame2.png", "frame1.png", "frame_b", "frame_a"]
    assert sorted(names, key=natural_key) == ["frame1.png", "Frame2.png", "frame10.png", "frame_a", "frame_b"]


def test_server_lists_what_the_table_reads(tmp_path):
    from medmem.server.uploads import list_data

    for name in ("a.nii.gz", "b.mgz", "c.hdr", "c.img", "d.png", "e.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "1.DCM").write_bytes(b"")
    assert sorted(list_data(tmp_path)) == ["a.nii.gz", "b.mgz", "c.hdr", "d.png", "e.mp4", "series/"]
