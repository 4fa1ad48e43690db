"""Outputs are whole or absent: killed writers, concurrent writers, repeated runs.

* a writer killed (SIGKILL) at any moment leaves the target absent or complete; only hidden
  temporary files may remain, and SIGTERM (as `medmem segment` handles it) removes them too;
* two processes writing the same file leave one complete file, never a mix, and a reader
  never sees half a file;
* the same input twice gives identical mask and overlay bytes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from medmem.cli import main

SHAPE = (32, 160, 160)

_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from medmem.io import Volume, write_mask
    target, label = sys.argv[1], int(sys.argv[2])
    vol = Volume(np.zeros({shape}, np.int16))
    mask = np.zeros({shape}, np.uint8)
    mask[:, :, : 40 * label] = label  # each writer has its own, recognisable content
    write_mask(mask, vol, target)
    print("ready", flush=True)
    while True:
        write_mask(mask, vol, target)
""").format(shape=SHAPE)


def _expected(label: int) -> np.ndarray:
    m = np.zeros(SHAPE, np.uint8)
    m[:, :, : 40 * label] = label
    return m


def _which(target: Path) -> int:
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(target)))
    for label in (1, 2):
        if np.array_equal(arr, _expected(label)):
            return label
    raise AssertionError(f"{target} holds neither writer's mask (a mix or a partial file)")


@pytest.mark.timeout(120)
def test_concurrent_writers_killed_midway_leave_one_complete_file(tmp_path):
    target = tmp_path / "mask.nii.gz"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(label)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env) for label in (1, 2)]
    seen = set()
    try:
        for w in writers:
            assert w.stdout.readline().strip() == "ready", w.stderr.read()
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:  # every read while both write is one whole file
            seen.add(_which(target))
    finally:
        for w in writers:
            w.send_signal(signal.SIGKILL)
        for w in writers:
            w.wait(timeout=30)
    assert _which(target) in (1, 2) and seen
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert all(name.startswith(".mask.nii.gz.") for name in leftovers), leftovers  # hidden temporaries only


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    """`medmem segment` turns SIGTERM into SystemExit, so the atomic writer cleans up on the way out.

    The signal arrives when the temporary file is complete but not yet renamed into place.
    """
    import SimpleITK

    from medmem.engine.cli import exit_on_sigterm
    from medmem.io import Volume, write_mask

    real_write = SimpleITK.WriteImage

    def write_then_terminated(*args, **kwargs):
        real_write(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(SimpleITK, "WriteImage", write_then_terminated)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        restore = exit_on_sigterm()
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            pytest.fail("exit_on_sigterm installed no handler: SIGTERM would kill the process without cleaning up")
        with pytest.raises(SystemExit) as stop:
            write_mask(_expected(1), Volume(np.zeros(SHAPE, np.int16)), tmp_path / "mask.nii.gz")
        restore()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the command leaves no handler behind
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    assert stop.value.code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []  # neither a partial target nor the temporary file


BOX = ["--box", "2,2,20,15", "--slice", "3", "--axis", "0", "--quiet"]


def test_same_input_twice_gives_identical_bytes(tmp_path, samples, tiny_weights):
    runs = []
    for i in range(2):
        d = tmp_path / f"run{i}"
        res = CliRunner().invoke(main, ["segment", str(samples["nifti_gz.nii.gz"]), "--out", str(d / "m.nii.gz"),
                                        "--overlay", str(d / "o.png"), "--report", str(d / "r.json"), *BOX,
                                        "--checkpoint", str(tiny_weights["safetensors"])])
        assert res.exit_code == 0, res.output
        report = json.loads((d / "r.json").read_text())
        for key in ("seconds", "slices_per_second", "output", "overlay"):  # timings, and where it was written
            report.pop(key)
        runs.append(((d / "m.nii.gz").read_bytes(), (d / "o.png").read_bytes(), report))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]
    assert runs[0][2] == runs[1][2]


def test_native_reader_chatter_does_not_reach_the_terminal(tmp_path, samples, tiny_weights, capfd):
    """A truncated MHA makes ITK's MetaIO print to file descriptor 2; the user still sees one line."""
    data = samples["mha_raw.mha"].read_bytes()
    bad = tmp_path / "cut.mha"
    bad.write_bytes(data[:64])
    out = tmp_path / "out" / "m.nii.gz"
    capfd.readouterr()
    res = CliRunner().invoke(main, ["segment", str(bad), "--out", str(out), *BOX,
                                    "--checkpoint", str(tiny_weights["safetensors"])])
    native = capfd.readouterr().err
    assert res.exit_code == 1 and not out.exists()
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "cut.mha" in lines[0], res.output
    assert native == "", native
