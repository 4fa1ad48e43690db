"""`medmem segment` over many volumes: split over ranks, resume, failures, summary; a real 2-process gloo run."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from medmem.checkpoint import save_weights
from medmem.cli import main
from medmem.engine.batch import Case, SegmentOptions, BatchError, is_complete, list_cases, split

BOX = ["--box", "8,8,30,24", "--slice", "3", "--axis", "0"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_model):
    return save_weights(tiny_model, tmp_path_factory.mktemp("w") / "tiny.safetensors")


def _vol(path: Path, shift: int = 0) -> Path:
    arr = np.full((6, 32, 40), -800, np.int16)
    arr[1:5, 10 + shift:24, 10:30] = 60
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(img, str(path))
    return path


def _summary(out: Path):
    js = json.loads((out / "summary.json").read_text())
    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return js, rows


def test_split_is_a_partition():
    for n in range(0, 11):
        for world in range(1, 5):
            parts = [split(n, r, world) for r in range(world)]
            flat = [i for p in parts for i in p]
            assert sorted(flat) == list(range(n)), (n, world, parts)  # every case once, none twice
            assert all(i % world == r for r, p in enumerate(parts) for i in p)
    with pytest.raises(ValueError):
        split(4, 2, 2)


def test_manifest_problems_are_refused_before_any_work(tmp_path, weights):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _vol(tmp_path / sub / "ct.nii.gz")
    man = tmp_path / "cases.json"
    man.write_text(json.dumps({"cases": [{"image": "a/ct.nii.gz"}, {"image": "b/ct.nii.gz"}]}))
    with pytest.raises(BatchError, match="would both write ct_mask.nii.gz"):
        list_cases(man)
    res = CliRunner().invoke(main, ["segment", str(man), "--out", str(tmp_path / "out"), *BOX,
                                    "--checkpoint", str(weights), "--quiet"])
    assert res.exit_code == 1 and "would both write" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()
    man.write_text(json.dumps({"cases": [{"image": "a/ct.nii.gz", "prompts": 3}]}))
    res = CliRunner().invoke(main, ["segment", str(man), "--out", str(tmp_path / "out"), *BOX, "--quiet"])
    assert res.exit_code == 1 and "manifest needs" in res.output and not (tmp_path / "out").exists()
    cases, batch = list_cases(tmp_path / "a" / "ct.nii.gz")
    assert not batch and cases == [Case(0, tmp_path / "a" / "ct.nii.gz")]


def test_resume_skips_complete_cases_redoes_incomplete_ones_and_reports_failures(tmp_path, weights):
    data = tmp_path / "cases"
    data.mkdir()
    for i, name in enumerate(("a", "b", "c")):
        _vol(data / f"{name}.nii.gz", shift=i)
    (data / "bad.nii.gz").write_bytes(b"\x1f\x8b not a volume")
    out = tmp_path / "out"
    args = ["segment", str(data), "--out", str(out), *BOX, "--checkpoint", str(weights)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    fails = [ln for ln in res.output.splitlines() if "FAILED" in ln]
    assert len(fails) == 1 and "bad.nii.gz" in fails[0] and "Traceback" not in res.output
    js, rows = _summary(out)
    assert [r["case"] for r in js["cases"]] == ["a", "b", "bad", "c"] == [r["case"] for r in rows]
    assert [r["status"] for r in js["cases"]] == ["done", "done", "failed", "done"]
    assert (js["done"], js["skipped"], js["failed"], js["total"]) == (3, 0, 1, 4)
    a = js["cases"][0]
    assert a["rank"] == 0 and a["seconds"] > 0 and a["error"] is None
    assert a["objects"][0]["volume_ml"] > 0 and 0 < a["objects"][0]["mean_iou"] <= 1
    assert float(rows[0]["object_1_volume_ml"]) == a["objects"][0]["volume_ml"]
    assert rows[2]["status"] == "failed" and rows[2]["error"] and rows[2]["object_1_volume_ml"] == ""
    assert not any(out.glob("bad_*"))  # a failed case writes nothing

    a_mask = (out / "a_mask.nii.gz").stat().st_mtime_ns
    (out / "b_report.json").unlink()                                   # b: mask present, report missing
    st = (data / "c.nii.gz").stat()
    os.utime(data / "c.nii.gz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # c: input changed since
    res = CliRunner().invoke(main, args + ["--quiet"])
    assert res.exit_code == 0, res.output
    js, rows = _summary(out)
    assert [r["status"] for r in js["cases"]] == ["skipped", "done", "failed", "done"]
    assert [r["status"] for r in rows] == ["skipped", "done", "failed", "done"]
    assert (out / "a_mask.nii.gz").stat().st_mtime_ns == a_mask          # not rewritten
    assert js["cases"][0]["objects"] == a["objects"]                   # a skipped case still reports its result
    opts = SegmentOptions(box="8,8,30,24", slice_idx=3, axis=0, checkpoint=str(weights))
    assert all(is_complete(Case(i, data / f"{n}.nii.gz"), out, opts) for i, n in enumerate("abc"))
    assert is_complete(Case(0, data / "a.nii.gz"), out, SegmentOptions(**{**opts.__dict__, "policy": "confidence"})) \
        is None                                                        # other settings: redo


def test_every_case_failing_is_an_error_with_a_summary(tmp_path, weights):
    data = tmp_path / "cases"
    data.mkdir()
    for name in ("x", "y"):
        (data / f"{name}.nii.gz").write_bytes(b"garbage")
    res = CliRunner().invoke(main, ["segment", str(data), "--out", str(tmp_path / "out"), *BOX,
                                    "--checkpoint", str(weights), "--quiet"])
    assert res.exit_code == 1 and "every case failed" in res.output and "Traceback" not in res.output
    js, rows = _summary(tmp_path / "out")
    assert [r["status"] for r in js["cases"]] == ["failed", "failed"] and len(rows) == 2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_split_the_cases_and_rank0_writes_the_summary(tmp_path, weights):
    data = tmp_path / "data"
    data.mkdir()
    cases = []
    for i in range(4):
        _vol(data / f"case{i}.nii.gz", shift=i)
        cases.append({"image": f"data/case{i}.nii.gz"})
    man = tmp_path / "cases.json"
    man.write_text(json.dumps({"cases": cases}))
    out = tmp_path / "out"
    port = _free_port()
    procs = []
    for rank in range(2):  # what torchrun sets for each worker
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "medmem.cli", "segment", str(man), "--out", str(out), *BOX, "--checkpoint",
             str(weights), "--device", "cpu"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    js, rows = _summary(out)
    assert js["world_size"] == 2 and js["total"] == 4
    # each case exactly once (rows are gathered without de-duplication), on rank i % 2
    assert [(r["index"], r["rank"], r["status"]) for r in js["cases"]] == [(i, i % 2, "done") for i in range(4)]
    assert [r["rank"] for r in rows] == ["0", "1", "0", "1"]
    assert all((out / f"case{i}_mask.nii.gz").exists() and (out / f"case{i}_report.json").exists() for i in range(4))
    assert "4 cases: 4 done, 0 skipped, 0 failed" in outs[0][0]          # rank 0 reports ...
    assert "cases:" not in outs[1][0] and "[" not in outs[1][0]          # ... rank 1 stays quiet


def test_a_model_that_cannot_load_stops_the_batch_with_a_summary(tmp_path):
    data = tmp_path / "cases"
    data.mkdir()
    for name in ("p", "q"):
        _vol(data / f"{name}.nii.gz")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not weights")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["segment", str(data), "--out", str(out), *BOX, "--checkpoint", str(junk),
                                    "--quiet"])
    assert res.exit_code == 1 and "junk.pt" in res.output and "Traceback" not in res.output
    assert len([ln for ln in res.output.splitlines() if ln.startswith("Error:")]) == 1, res.output   # one line
    js, rows = _summary(out)
    assert [r["status"] for r in js["cases"]] == ["failed", "failed"]
    assert all(r["error"].startswith("not run:") for r in rows)
    assert not any(out.glob("*_mask.nii.gz"))


def test_one_input_under_torchrun_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    res = CliRunner().invoke(main, ["segment", str(_vol(tmp_path / "ct.nii.gz")), "--out", str(tmp_path / "m.nii.gz"),
                                    *BOX, "--quiet"])
    assert res.exit_code == 1 and "is one input" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m.nii.gz").exists()
