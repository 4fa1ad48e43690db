"""Prompt files: schema, validation errors, mm conversion, save/load round trip, RLE."""
from __future__ import annotations

import json

import numpy as np
import pytest

from medmem.io import (
    Box3DPrompt,
    BoxPrompt,
    MaskPrompt,
    ObjectPrompts,
    PointsPrompt,
    PromptFileError,
    Volume,
    load_prompts,
    rle_decode,
    rle_encode,
    save_prompts,
)

from io_testutils import rotation


@pytest.fixture
def vol():
    """(Z, Y, X) = (20, 30, 40), anisotropic, oblique."""
    return Volume(np.zeros((20, 30, 40), np.int16), spacing=(0.7, 0.9, 3.0), origin=(5.0, -8.0, 12.0),
                  direction=rotation("x", 20) @ rotation("z", 30))


def _doc(*prompts, **top):
    return {"version": 1, "coordinates": "voxel", **top,
            "objects": [{"id": 1, "name": "liver", "prompts": list(prompts)}]}


def test_all_prompt_types_load(tmp_path, vol):
    from PIL import Image

    seed = np.zeros((30, 40), np.uint8)
    seed[10:15, 12:20] = 255
    Image.fromarray(seed).save(tmp_path / "seed.png")
    rle = rle_encode(seed > 0)
    doc = {
        "version": 1,
        "coordinates": "voxel",
        "objects": [
            {"id": 1, "name": "liver", "prompts": [
                {"type": "box", "slice": 12, "box": [3, 4, 20, 25]},
                {"type": "box3d", "z_range": [5, 15], "box": [1, 2, 30, 28.5]},
                {"type": "points", "slice": 12, "points": [[10, 11], [30.5, 2]], "labels": [1, 0]},
            ]},
            {"id": 4, "prompts": [
                {"type": "mask", "slice": 3, "path": "seed.png"},
                {"type": "mask", "slice": 4, "rle": rle},
                {"type": "points", "slice": 0, "points": [[1, 1]]},
            ]},
        ],
    }
    (tmp_path / "p.json").write_text(json.dumps(doc))
    objs = load_prompts(tmp_path / "p.json", vol)
    assert [o.id for o in objs] == [1, 4] and objs[0].name == "liver" and objs[1].name is None
    box, box3d, pts = objs[0].prompts
    assert isinstance(box, BoxPrompt) and box.slice == 12 and box.box == (3, 4, 20, 25)
    assert isinstance(box3d, Box3DPrompt) and box3d.z_range == (5, 15) and box3d.slice == 10
    assert isinstance(pts, PointsPrompt) and pts.labels.tolist() == [1, 0] and pts.points.shape == (2, 2)
    m1, m2, p2 = objs[1].prompts
    assert isinstance(m1, MaskPrompt) and m1.mask.shape == (30, 40) and m1.mask.sum() == 40
    np.testing.assert_array_equal(m1.mask, m2.mask)
    assert p2.labels.tolist() == [1]  # labels default to foreground
    assert objs[0].slices == [10, 12] and len(objs[0].on_slice(12)) == 2


@pytest.mark.parametrize(
    "prompt, message",
    [
        ({"type": "circle", "slice": 1}, "unknown prompt type 'circle'"),
        ({"type": "box", "slice": 1, "box": [20, 4, 10, 25]}, r"x1 \(10\) < x0 \(20\)"),
        ({"type": "box", "slice": 1, "box": [2, 30, 10, 25]}, r"y1 \(25\) < y0 \(30\)"),
        ({"type": "points", "slice": 1, "points": [[1, 2], [3, 4]], "labels": [1]}, r"2 point\(s\) but 1 label"),
        ({"type": "points", "slice": 1, "points": [[1, 2]], "labels": [2]}, "must be 1 .* or 0"),
        ({"type": "box", "slice": 20, "box": [1, 1, 5, 5]}, r"slice 20 is outside the volume \(slices 0\.\.19"),
        ({"type": "box", "slice": -1, "box": [1, 1, 5, 5]}, "negative"),
        ({"type": "box", "slice": 2, "box": [45, 1, 60, 5]}, "wholly outside the 40x30"),
        ({"type": "box", "slice": 2, "box": [1, 1, 5]}, "box must be 4"),
        ({"type": "box", "box": [1, 1, 5, 5]}, "missing key 'slice'"),
        ({"type": "box", "slice": 2.5, "box": [1, 1, 5, 5]}, "slice must be an integer"),
        ({"type": "points", "slice": 1, "points": [[50, 2]]}, "outside the 40x30"),
        ({"type": "box3d", "z_range": [9, 3], "box": [1, 1, 5, 5]}, "z1 < z0"),
        ({"type": "box3d", "z_range": [3, 9], "slice": 12, "box": [1, 1, 5, 5]}, "outside z_range"),
        ({"type": "mask", "slice": 1}, "exactly one of 'path'"),
        ({"type": "mask", "slice": 1, "rle": {"size": [30, 40], "counts": [5, 5]}}, "counts sum"),
        ({"type": "mask", "slice": 1, "rle": rle_encode(np.ones((3, 3), bool))}, "does not match the slice shape"),
        ({"type": "mask", "slice": 1, "path": "missing.png"}, "mask file not found"),
    ],
)
def test_invalid_prompts(vol, prompt, message):
    with pytest.raises(PromptFileError, match=message) as err:
        load_prompts(_doc(prompt), vol)
    assert isinstance(err.value, ValueError)
    assert "object 1 ('liver'), prompt 0" in str(err.value)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"version": 1, "objects": [{"id": 1, "prompts": []}]}, "empty prompt list"),
        ({"version": 1, "objects": []}, "non-empty list"),
        ({"version": 2, "objects": [{"id": 1, "prompts": [{"type": "box", "slice": 0, "box": [0, 0, 1, 1]}]}]},
         "unsupported prompt-file version 2"),
        ({"coordinates": "inches",
          "objects": [{"id": 1, "prompts": [{"type": "box", "slice": 0, "box": [0, 0, 1, 1]}]}]},
         "coordinates must be"),
        ({"objects": [{"id": 1, "prompts": [{"type": "box", "slice": 0, "box": [0, 0, 1, 1]}]},
                      {"id": 1, "prompts": [{"type": "box", "slice": 0, "box": [0, 0, 1, 1]}]}]},
         "duplicate object id"),
        ({"objects": [{"id": 0, "prompts": [{"type": "box", "slice": 0, "box": [0, 0, 1, 1]}]}]}, "positive"),
        ({"axis": "oblique",
          "objects": [{"id": 1, "prompts": [{"type": "box", "slice": 0, "box": [0, 0, 1, 1]}]}]},
         "unknown slicing axis"),
        ({"coordinates": "mm", "objects": [{"id": 1, "prompts": [{"type": "points", "points": [[0, 0, 0]]}]}]},
         "pass the volume"),
    ],
)
def test_invalid_documents(doc, message):
    with pytest.raises(PromptFileError, match=message):
        load_prompts(doc)


def test_bad_json_file(tmp_path):
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(PromptFileError, match="not valid JSON"):
        load_prompts(tmp_path / "p.json")
    with pytest.raises(PromptFileError, match="not found"):
        load_prompts(tmp_path / "nope.json")


def test_without_volume_only_structure_is_checked():
    objs = load_prompts(_doc({"type": "box", "slice": 500, "box": [1, 1, 900, 900]}))
    assert objs[0].prompts[0].box == (1, 1, 900, 900)


def test_box_partly_outside_is_clipped(vol):
    objs = load_prompts(_doc({"type": "box", "slice": 2, "box": [-5, 10, 50, 40]}), vol)
    assert objs[0].prompts[0].box == (0, 10, 39, 29)


def test_axis_changes_the_slice_frame(vol):
    # coronal view of (Z, Y, X) = (20, 30, 40) with this direction: which array axis is coronal?
    view = vol.slices("coronal")
    s, h, w = view.array.shape
    ok = load_prompts(_doc({"type": "box", "slice": s - 1, "box": [0, 0, w - 1, h - 1]}, axis="coronal"), vol)
    assert ok[0].axis == "coronal"
    with pytest.raises(PromptFileError, match="outside the volume"):
        load_prompts(_doc({"type": "box", "slice": s, "box": [0, 0, 1, 1]}, axis="coronal"), vol)


def test_mm_prompts_convert_to_voxels(vol):
    # points placed on known voxels of slice 7 (x = column, y = row)
    want = np.array([[10.0, 12.0], [25.0, 3.0]])
    mm = [vol.voxel_to_world([x, y, 7]).tolist() for x, y in want]
    # a 3D box whose world corners are two voxel centres
    c0, c1 = vol.voxel_to_world([5, 6, 4]), vol.voxel_to_world([15, 20, 9])
    doc = {"version": 1, "coordinates": "mm", "objects": [{"id": 2, "prompts": [
        {"type": "points", "points": mm, "labels": [1, 0]},
        {"type": "box3d", "box": [*c0, *c1]},
    ]}]}
    pts, box3d = load_prompts(doc, vol)[0].prompts
    assert pts.slice == 7
    np.testing.assert_allclose(pts.points, want, atol=1e-6)
    # the world-axis-aligned box spanned by the two corners contains both voxels
    x0, y0, x1, y1 = box3d.box
    z0, z1 = box3d.z_range
    assert x0 <= 5 and x1 >= 15 and y0 <= 6 and y1 >= 20 and z0 <= 4 and z1 >= 9
    assert box3d.slice == (z0 + z1) // 2


def test_mm_points_on_two_slices_fail(vol):
    mm = [vol.voxel_to_world([3, 3, 2]).tolist(), vol.voxel_to_world([3, 3, 6]).tolist()]
    doc = {"coordinates": "mm", "objects": [{"id": 1, "prompts": [{"type": "points", "points": mm}]}]}
    with pytest.raises(PromptFileError, match="different slices"):
        load_prompts(doc, vol)


def test_save_load_round_trip(tmp_path, vol):
    mask = np.zeros((30, 40), bool)
    mask[3:9, 4:6] = True
    objs = [
        ObjectPrompts(1, [BoxPrompt(3, (1, 2, 10.5, 20)), PointsPrompt(3, np.array([[4.0, 5.0]]), np.array([0]))],
                      name="kidney"),
        ObjectPrompts(9, [Box3DPrompt(6, (2, 11), (0, 0, 5, 5)), MaskPrompt(7, mask)]),
    ]
    path = save_prompts(objs, tmp_path / "out.json")
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["coordinates"] == "voxel"
    back = load_prompts(path, vol)
    assert [o.id for o in back] == [1, 9] and back[0].name == "kidney"
    assert back[0].prompts[0].box == (1, 2, 10.5, 20)
    assert back[0].prompts[1].labels.tolist() == [0]
    assert back[1].prompts[0].z_range == (2, 11) and back[1].prompts[0].slice == 6
    np.testing.assert_array_equal(back[1].prompts[1].mask, mask)


def test_rle_known_example_and_round_trip():
    m = np.array([[0, 1, 1], [0, 1, 0]], bool)  # column-major: 0 0 | 1 1 | 1 0
    rle = rle_encode(m)
    assert rle == {"size": [2, 3], "counts": [2, 3, 1]}
    np.testing.assert_array_equal(rle_decode(rle), m)
    starts_on = np.ones((2, 2), bool)
    assert rle_encode(starts_on)["counts"] == [0, 4]
    rnd = np.random.default_rng(0).random((17, 23)) > 0.6
    np.testing.assert_array_equal(rle_decode(rle_encode(rnd)), rnd)
