"""`medmem segment` with bad arguments: exit code != 0, one `Error:` line, no traceback, no output file.

Unsupported or unusable outputs are refused before the model is loaded or anything is segmented.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from medmem.cli import main

_USAGE = ("Usage:", "Try '")


def _message_lines(output: str) -> list[str]:
    """Output lines that are not click's usage header (which precedes usage errors)."""
    return [ln for ln in output.splitlines() if ln.strip() and not ln.startswith(_USAGE)]


def _assert_clean_failure(res, out_dir: Path, fragment: str) -> None:
    assert res.exit_code != 0, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = _message_lines(res.output)
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert fragment in lines[0], f"expected {fragment!r} in {lines[0]!r}"
    written = [p for p in out_dir.rglob("*") if p.is_file()]
    assert not written, f"files written on failure: {written}"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, samples, tiny_weights) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli_inputs")
    rng = np.random.default_rng(0)
    files = {"vol": samples["nifti_gz.nii.gz"], "png": samples["grey8.png"], "video": samples["video.mp4"],
             "weights": tiny_weights["safetensors"]}
    (d / "random.pt").write_bytes(rng.bytes(4096))
    (d / "zeroed.safetensors").write_bytes(bytes(4096))
    st = tiny_weights["safetensors"].read_bytes()
    (d / "truncated.safetensors").write_bytes(st[: len(st) // 2])
    (d / "garbage.nii.gz").write_bytes(rng.bytes(3000))
    (d / "empty.nrrd").touch()
    (d / "noimages").mkdir()
    (d / "noimages" / "readme.txt").write_text("nothing")
    (d / "bad.json").write_text("{not json")
    (d / "badobj.json").write_text(json.dumps({"objects": [{"id": 0, "prompts": []}]}))
    (d / "badslice.json").write_text(json.dumps({"objects": [{"id": 1, "prompts": [
        {"type": "box", "slice": 40, "box": [1, 1, 9, 9]}]}]}))
    (d / "manifest.json").write_text(json.dumps({"not_cases": []}))
    (d / "a_file").write_text("x")
    for name in ("random.pt", "zeroed.safetensors", "truncated.safetensors", "garbage.nii.gz", "empty.nrrd",
                 "noimages", "bad.json", "badobj.json", "badslice.json", "manifest.json", "a_file"):
        files[name] = d / name
    return files


BOX = ["--box", "2,2,20,15", "--slice", "3", "--axis", "0"]

# (case id, input key, arguments (OUT = the output folder), expected fragment of the message)
CASES = [
    ("missing --out", "vol", [*BOX], "Missing option '--out'"),
    ("no prompts", "vol", ["--out", "OUT/m.nii.gz"], "no prompts"),
    ("box without slice", "vol", ["--out", "OUT/m.nii.gz", "--box", "2,2,20,15"], "--box needs --slice"),
    ("box three numbers", "vol", ["--out", "OUT/m.nii.gz", "--box", "1,2,3", "--slice", "3"], "X0,Y0,X1,Y1"),
    ("box not numbers", "vol", ["--out", "OUT/m.nii.gz", "--box", "a,b,c,d", "--slice", "3"], "numbers"),
    ("box inverted", "vol", ["--out", "OUT/m.nii.gz", "--box", "20,2,2,15", "--slice", "3"], "< x0"),
    ("box outside image", "vol", ["--out", "OUT/m.nii.gz", "--box", "500,500,600,600", "--slice", "3"], "outside"),
    ("box NaN", "vol", ["--out", "OUT/m.nii.gz", "--box", "nan,2,20,15", "--slice", "3"], "finite"),
    ("slice too large", "vol", ["--out", "OUT/m.nii.gz", "--box", "2,2,20,15", "--slice", "6"], "outside"),
    ("slice negative", "vol", ["--out", "OUT/m.nii.gz", "--box", "2,2,20,15", "--slice", "-1"], "outside"),
    ("slice not a number", "vol", ["--out", "OUT/m.nii.gz", "--box", "2,2,20,15", "--slice", "x"],
     "'x' is not a valid integer"),
    ("point malformed", "vol", ["--out", "OUT/m.nii.gz", "--point", "1,2"], "X,Y,Z[,LABEL]"),
    ("point outside", "vol", ["--out", "OUT/m.nii.gz", "--point", "500,500,2"], "outside"),
    ("point bad label", "vol", ["--out", "OUT/m.nii.gz", "--point", "5,5,2,7"], "label"),
    ("axis unknown", "vol", ["--out", "OUT/m.nii.gz", "--box", "2,2,20,15", "--slice", "3", "--axis", "diagonal"],
     "unknown slicing axis"),
    ("axis out of range", "vol", ["--out", "OUT/m.nii.gz", "--box", "2,2,20,15", "--slice", "3", "--axis", "7"],
     "axis"),
    ("policy unknown", "vol", ["--out", "OUT/m.nii.gz", *BOX, "--policy", "lru"], "Invalid value for '--policy'"),
    ("window unknown", "vol", ["--out", "OUT/m.nii.gz", *BOX, "--intensity", "bone_marrow_x"], "bone_marrow_x"),
    ("prompts file missing", "vol", ["--out", "OUT/m.nii.gz", "--prompts", "OUT/none.json"], "does not exist"),
    ("prompts not json", "vol", ["--out", "OUT/m.nii.gz", "--prompts", "@bad.json"], "bad.json"),
    ("prompts bad object", "vol", ["--out", "OUT/m.nii.gz", "--prompts", "@badobj.json"], "id"),
    ("prompts slice outside", "vol", ["--out", "OUT/m.nii.gz", "--prompts", "@badslice.json"], "slice"),
    ("input missing", "OUT/nothing.nii.gz", ["--out", "OUT/m.nii.gz", *BOX], "does not exist"),
    ("input garbage", "garbage.nii.gz", ["--out", "OUT/m.nii.gz", *BOX], "garbage.nii.gz"),
    ("input empty", "empty.nrrd", ["--out", "OUT/m.nii.gz", *BOX], "empty"),
    ("input folder without images", "noimages", ["--out", "OUT/m.nii.gz", *BOX], "no DICOM series"),
    ("input unknown type", "a_file", ["--out", "OUT/m.nii.gz", *BOX], "unrecognised file type"),
    ("sample unknown", "sample:nope", ["--out", "OUT/m.nii.gz", *BOX], "no bundled sample"),
    ("manifest without cases", "manifest.json", ["--out", "OUT/batch", *BOX], "'cases' list"),
    ("checkpoint random .pt", "vol", ["--out", "OUT/m.nii.gz", *BOX, "--checkpoint", "@random.pt"],
     "not a PyTorch checkpoint"),
    ("checkpoint zeroed safetensors", "vol", ["--out", "OUT/m.nii.gz", *BOX, "--checkpoint", "@zeroed.safetensors"],
     "zeroed.safetensors"),
    ("checkpoint truncated", "vol", ["--out", "OUT/m.nii.gz", *BOX, "--checkpoint", "@truncated.safetensors"],
     "truncated"),
    ("checkpoint missing", "vol", ["--out", "OUT/m.nii.gz", *BOX, "--checkpoint", "OUT/none.pt"], "does not exist"),
    ("config unknown", "vol", ["--out", "OUT/m.nii.gz", *BOX, "--checkpoint", "@weights", "--config", "nope"],
     "nope"),
    ("config mismatch", "vol", ["--out", "OUT/m.nii.gz", *BOX, "--checkpoint", "@weights", "--config",
                                "sam2.1_hiera_tiny"], "does not match config"),
]

# outputs that must be refused before the model is loaded and before anything is segmented
OUTPUT_CASES = [
    ("video output", "video", ["--out", "OUT/result.mp4", "--box", "2,2,20,15", "--slice", "3"],
     "cannot be written as video"),
    ("text output", "vol", ["--out", "OUT/result.txt", *BOX], "unsupported output extension"),
    ("jpeg mask", "vol", ["--out", "OUT/result.jpg", *BOX], "cannot be written as jpeg"),
    ("png for a volume", "vol", ["--out", "OUT/result.png", *BOX], "single PNG holds one slice"),
    ("dicom-seg for nifti", "vol", ["--out", "OUT/result.dcm", *BOX], "DICOM-SEG needs a DICOM source"),
    ("output is the input", "vol", ["--out", "@vol", *BOX], "refusing to overwrite an input"),
    ("output under a file", "vol", ["--out", "@a_file/m.nii.gz", *BOX], "is a file"),
    ("overlay not png", "vol", ["--out", "OUT/m.nii.gz", "--overlay", "OUT/o.jpg", *BOX], "--overlay"),
    ("report not json", "vol", ["--out", "OUT/m.nii.gz", "--report", "OUT/r.txt", *BOX], "--report"),
    ("report is the mask", "vol", ["--out", "OUT/m.nii.gz", "--report", "OUT/m.json", "--overlay", "OUT/m.nii.gz",
                                   *BOX], "--overlay"),
    ("batch into a file", "manifest_ok", ["--out", "@a_file", *BOX], "folder"),
]


def _args(inputs: dict[str, Path], out_dir: Path, key: str, args: list[str]) -> list[str]:
    def one(a: str) -> str:
        if a.startswith("@"):
            head, _, tail = a[1:].partition("/")
            return str(inputs[head] / tail) if tail else str(inputs[head])
        return a.replace("OUT", str(out_dir)) if a.startswith("OUT") else a

    src = key if key.startswith("sample:") else one(key if key.startswith("OUT") else "@" + key)
    return ["segment", src, *[one(a) for a in args], "--quiet"] + (
        [] if "--checkpoint" in args else ["--checkpoint", str(inputs["weights"])])


@pytest.mark.parametrize("case,key,args,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_arguments_fail_cleanly(tmp_path, inputs, case, key, args, fragment):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = CliRunner().invoke(main, _args(inputs, out_dir, key, args))
    _assert_clean_failure(res, out_dir, fragment)


@pytest.mark.parametrize("case,key,args,fragment", OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
def test_unusable_outputs_are_refused_before_any_work(tmp_path, inputs, monkeypatch, case, key, args, fragment):
    import medmem
    from medmem.engine import pipeline

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded or the segmentation ran before the output was checked")

    monkeypatch.setattr(medmem, "build_model", forbidden)
    monkeypatch.setattr(pipeline, "segment_volume", forbidden)
    if key == "manifest_ok":
        manifest = tmp_path / "cases.json"
        manifest.write_text(json.dumps({"cases": [{"image": str(inputs["vol"])}]}))
        inputs = {**inputs, "manifest_ok": manifest}
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = {p: p.read_bytes() for p in (inputs["vol"], inputs["a_file"])}
    res = CliRunner().invoke(main, _args(inputs, out_dir, key, args))
    _assert_clean_failure(res, out_dir, fragment)
    assert all(p.read_bytes() == b for p, b in before.items())  # inputs untouched


def test_nan_voxels_are_background_with_a_warning_that_counts_them(tmp_path, tiny_weights):
    arr = np.full((6, 20, 24), 10.0, np.float32)
    arr[2:5, 5:15, 5:20] = 200.0
    arr[0, 0, :7] = np.nan
    arr[5, 19, 0] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "nan.nii.gz"))
    out = tmp_path / "m.nii.gz"
    res = CliRunner().invoke(main, ["segment", str(tmp_path / "nan.nii.gz"), "--out", str(out), *BOX, "--quiet",
                                    "--checkpoint", str(tiny_weights["safetensors"])])
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "8 of 2880 voxel(s) are not finite (7 NaN, 1 inf)" in warn[0], res.output
    assert "NaN read as 10 (the minimum)" in warn[0]
    assert sitk.ReadImage(str(out)).GetSize() == (24, 20, 6)
