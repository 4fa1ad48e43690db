"""One box convention (inclusive pixel indices, docs/io.md) through every entry point.

The same box, given through the Python API, a prompt file, the CLI flags and `segment_volume`,
must yield the identical mask on the prompted slice; the 2D predictor on that slice agrees; and the
one validator clips and refuses boxes the same way everywhere.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from medmem.engine.image import ImagePredictor
from medmem.engine.pipeline import segment_volume
from medmem.engine.volume import VolumeSession
from medmem.io import Volume, load_prompts, read_volume, write_volume
from medmem.io.prompts import BoxPrompt, ObjectPrompts, check_box

SLICE = 10
BOX = [9.0, 11.0, 37.0, 33.0]   # inclusive: the blob's tight box is about [10, 11, 37, 33]


@pytest.fixture(scope="module")
def case(tmp_path_factory, tiny_model, blob_volume):
    d = tmp_path_factory.mktemp("box")
    vol = Volume((blob_volume * 200).astype(np.float32), spacing=(1.0, 1.0, 1.0))
    write_volume(vol, d / "v.nii.gz")
    weights = d / "tiny.pt"
    torch.save({"model": tiny_model.state_dict(), "config": "test_tiny"}, weights)
    return d, read_volume(d / "v.nii.gz"), weights


@pytest.mark.parametrize("cpu_bf16", ["0", "1"])
def test_the_same_box_gives_the_same_mask_through_every_entry_point(case, tiny_model, cpu_bf16, monkeypatch):
    """Also where "auto" precision is bf16 on the CPU (a CPU with native bf16; forced here by MEDMEM_CPU_BF16=1):
    every entry point follows the one rule (engine/autocast.py), so the masks still agree."""
    from medmem.engine.autocast import precision_name

    monkeypatch.setenv("MEDMEM_CPU_BF16", cpu_bf16)
    assert precision_name(torch.device("cpu"), None) == {"0": "fp32", "1": "bf16"}[cpu_bf16]
    d, vol, weights = case
    # 1. Python API
    sess = VolumeSession(tiny_model, vol, axis=0)
    api = sess.add_prompt(SLICE, 1, box=BOX)
    assert api.any() and not api.all()
    # 2. segment_volume with the prompt object
    res = segment_volume(tiny_model, vol, [ObjectPrompts(id=1, prompts=[BoxPrompt(SLICE, tuple(BOX))], axis=0)])
    # 3. a prompt file
    (d / "p.json").write_text(json.dumps({"version": 1, "axis": 0, "objects": [
        {"id": 1, "prompts": [{"type": "box", "slice": SLICE, "box": BOX}]}]}))
    from_file = segment_volume(tiny_model, vol, load_prompts(d / "p.json", vol))
    # 4. the CLI flags
    from medmem.cli import main

    r = CliRunner().invoke(main, ["segment", str(d / "v.nii.gz"), "--box", ",".join(f"{v:g}" for v in BOX),
                                  "--slice", str(SLICE), "--axis", "0", "--checkpoint", str(weights),
                                  "--out", str(d / "cli.nii.gz"), "--report", str(d / "cli.json"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((d / "cli.json").read_text())["precision"] == precision_name(torch.device("cpu"), None)
    cli = read_volume(d / "cli.nii.gz").array > 0
    for name, m in (("segment_volume", res.sliced[SLICE] > 0), ("prompt file", from_file.sliced[SLICE] > 0),
                    ("CLI", cli[SLICE])):
        np.testing.assert_array_equal(m, api, err_msg=name)
    # the whole propagated result agrees between the file, the object and the CLI
    np.testing.assert_array_equal(from_file.labels, res.labels)
    np.testing.assert_array_equal(cli, res.labels > 0)
    # 5. the 2D predictor on the prompted slice (no memory is involved on a conditioning slice)
    pred = ImagePredictor(tiny_model)
    pred.set_image(vol.array[SLICE])
    m2d, _, _ = pred.predict(box=BOX, multimask_output=False)
    np.testing.assert_array_equal(m2d[0], api)


def test_a_box_past_the_edge_is_clipped_to_the_last_pixel_everywhere(case, tiny_model):
    d, vol, _ = case
    h, w = vol.array.shape[1:]
    wide = [30.0, 20.0, w + 40.0, h + 9.0]
    assert check_box(wide, (h, w)).tolist() == [30.0, 20.0, w - 1.0, h - 1.0]
    a = VolumeSession(tiny_model, vol, axis=0).add_prompt(SLICE, 1, box=wide)
    b = VolumeSession(tiny_model, vol, axis=0).add_prompt(SLICE, 1, box=[30, 20, w - 1, h - 1])
    np.testing.assert_array_equal(a, b)
    objs = load_prompts({"version": 1, "objects": [{"id": 1, "prompts": [{"type": "box", "slice": 3, "box": wide}]}]},
                        vol)
    assert list(objs[0].prompts[0].box) == [30.0, 20.0, w - 1.0, h - 1.0]
    pred = ImagePredictor(tiny_model)
    pred.set_image(vol.array[SLICE])
    np.testing.assert_array_equal(pred.predict(box=wide, multimask_output=False)[0][0], a)


@pytest.mark.parametrize("box,match", [([5, 5, 2, 9], r"x1 \(2\) < x0 \(5\)"), ([float("nan"), 0, 3, 3], "finite|NaN"),
                                       ([70, 0, 80, 5], "wholly outside the 64x48")])
def test_every_entry_point_refuses_the_same_bad_boxes(case, tiny_model, box, match):
    d, vol, _ = case
    with pytest.raises(ValueError) as e1:
        VolumeSession(tiny_model, vol, axis=0).add_prompt(SLICE, 1, box=box)
    with pytest.raises(ValueError) as e2:
        load_prompts({"version": 1, "objects": [{"id": 1, "prompts": [{"type": "box", "slice": 3, "box": box}]}]},
                     vol)
    pred = ImagePredictor(tiny_model)
    pred.set_image(vol.array[SLICE])
    with pytest.raises(ValueError) as e3:
        pred.predict(box=box)
    import re

    msgs = [str(e.value) for e in (e1, e2, e3)]
    assert all(re.search(match, m) for m in msgs), msgs
