import json

import numpy as np
import pytest
import torch

from medmem.train.data import RawCase, build_dataset, load_raw_cases, prepare_case

from train_helpers import case_2d, case_3d


def test_prepare_case_resizes_and_indexes_objects():
    raw = case_3d(0, depth=5, size=40, two_objects=True)
    raw.label[4][raw.label[4] == 2] = 0
    pc = prepare_case(raw, 32)
    assert pc.images.shape == (5, 1, 32, 32) and pc.images.dtype == torch.float16
    assert 0 <= float(pc.images.min()) and float(pc.images.max()) <= 1
    assert pc.masks.shape == (5, 32, 32) and set(np.unique(pc.masks)) == {0, 1, 2}
    assert list(pc.objects[2]) == [0, 1, 2, 3] and list(pc.objects[1]) == [0, 1, 2, 3, 4]
    x = pc.model_input([0, 2])
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    rgb = prepare_case(RawCase("c", "t", np.zeros((10, 12, 3), np.uint8), np.ones((10, 12), np.uint8), dims=2,
                               spacing=(0.5, 0.5)), 16)
    assert rgb.images.shape == (1, 3, 16, 16) and rgb.spacing == (1.0, 0.5, 0.5)
    with pytest.raises(ValueError, match="does not match"):
        RawCase("bad", "t", np.zeros((3, 8, 8)), np.zeros((2, 8, 8)))


def test_held_out_split_falls_back_to_test():
    ds = build_dataset([case_2d(0), case_2d(1, "test")], 32)
    assert [c.split for c in ds.held_out] == ["test"] and ds.held_out[0].eval_label is not None
    with pytest.raises(ValueError, match="no training cases"):
        build_dataset([case_2d(1, "val")], 32)


def test_load_synth_manifest(tmp_path):
    from medmem.data.synth import generate

    m = generate(tmp_path, seed=1, size=40, noise=1.0, cases_per_task=3, tasks=["us_breast_lesion", "ct_aorta"])
    raws = load_raw_cases(m, splits=("train", "val", "test"))
    assert sorted({(r.task, r.dims) for r in raws}) == [("ct_aorta", 3), ("us_breast_lesion", 2)]
    assert all(r.label_noisy is not None for r in raws)
    vol = next(r for r in raws if r.dims == 3)
    assert vol.image.ndim == 3 and len(vol.spacing) == 3 and vol.spacing[0] > vol.spacing[1]  # (z, y, x) mm
    only = load_raw_cases(tmp_path, tasks=["ct_aorta"], splits=("train",))
    assert {r.task for r in only} == {"ct_aorta"} and {r.split for r in only} == {"train"}


def test_load_several_sources(tmp_path):
    from medmem.data.synth import generate

    a = generate(tmp_path / "a", seed=1, size=40, cases_per_task=2, tasks=["us_breast_lesion"])
    b = generate(tmp_path / "b", seed=2, size=40, cases_per_task=3, tasks=["xray_chest"])
    raws = load_raw_cases([a, b], splits=("train", "val", "test"))
    assert sorted(r.task for r in raws) == ["us_breast_lesion"] * 2 + ["xray_chest"] * 3
    with pytest.raises(ValueError, match="is in both"):  # the same case id twice
        load_raw_cases([a, tmp_path / "a"], splits=("train", "val", "test"))
    with pytest.raises(ValueError, match="no data source"):
        load_raw_cases([])


def test_load_nnunet_v2_layout_with_holdout(tmp_path):
    import nibabel as nib

    root = tmp_path / "Dataset001_Ball"
    for i in range(6):
        raw = case_3d(i, size=24, depth=4)
        for sub, arr, name in (("imagesTr", raw.image.astype(np.float32), f"ball_{i}_0000.nii.gz"),
                               ("labelsTr", raw.label, f"ball_{i}.nii.gz")):
            (root / sub).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), np.diag([0.8, 0.8, 2.0, 1.0])),
                     str(root / sub / name))
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0,
                                                   "ball": 1}, "numTraining": 6, "file_ending": ".nii.gz"}))
    raws = load_raw_cases(root, splits=("train", "val"), val_fraction=0.5)
    assert len(raws) == 6 and {r.split for r in raws} == {"train", "val"}
    r = raws[0]
    assert r.dims == 3 and r.image.shape == (4, 24, 24) and r.spacing == pytest.approx((2.0, 0.8, 0.8))
    assert np.array_equal(r.label, case_3d(int(r.id.split("_")[1]), size=24, depth=4).label)
    again = load_raw_cases(root, splits=("train", "val"), val_fraction=0.5)
    assert [x.split for x in again] == [x.split for x in raws]  # deterministic hold-out


def test_load_samed2_png_slices_as_volumes(tmp_path):
    from PIL import Image

    task = tmp_path / "Ball_CT_X"
    for sub in ("image", "mask"):
        (task / sub).mkdir(parents=True)
    raw = case_3d(0, size=20, depth=4)
    names = []
    for z in range(4):
        for s, vol in ((z + 10, "case1"), (2 * z, "case2")):   # case1: consecutive slices, case2: every other
            name = f"{vol}_slice_{s:03d}.png"
            Image.fromarray(((raw.image[z] + 300) // 3).clip(0, 255).astype(np.uint8)).save(task / "image" / name)
            Image.fromarray(raw.label[z] * 255).save(task / "mask" / name)
            names.append((vol, name))
    (task / "train.txt").write_text("".join(f"image/{n}\n" for v, n in names if v == "case1"))
    (task / "val.txt").write_text("".join(f"image/{n}\n" for v, n in names if v == "case2"))
    raws = load_raw_cases(tmp_path, splits=("train", "val"))
    train = [r for r in raws if r.split == "train"]
    val = [r for r in raws if r.split == "val"]
    assert len(train) == 1 and train[0].dims == 3 and train[0].image.shape == (4, 20, 20)
    assert np.array_equal(train[0].label, raw.label)
    assert len(val) == 4 and all(r.dims == 2 for r in val)     # non-consecutive slices stay 2D
