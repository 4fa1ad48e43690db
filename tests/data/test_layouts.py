"""Dataset layouts (MSD, nnU-Net v1/v2, SAMed-2 PNG slices, CVPR 2025 npz), built tiny in tmp dirs."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medmem.data.layouts import (
    LayoutError,
    cvpr_boxes_to_prompts,
    detect_layout,
    group_slices,
    iter_cases,
    iter_cvpr_npz,
    iter_msd,
    iter_nnunet,
    iter_samed2,
    read_dataset_json,
)


def _nii(path, data, zooms=(1.0, 1.0, 1.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([*zooms, 1.0])), str(path))


# --------------------------------------------------------------------------- MSD
def _make_msd(root, four_d=False):
    rng = np.random.default_rng(0)
    training = []
    for cid in ("la_003", "la_010", "la_007"):
        shape = (6, 5, 4, 2) if four_d else (6, 5, 4)
        _nii(root / "imagesTr" / f"{cid}.nii.gz", rng.normal(size=shape).astype(np.float32), (1.25, 1.25, 2.5))
        lab = np.zeros((6, 5, 4), np.uint8)
        lab[1:3, 1:3, 1:3] = 1
        _nii(root / "labelsTr" / f"{cid}.nii.gz", lab, (1.25, 1.25, 2.5))
        training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    _nii(root / "imagesTs" / "la_001.nii.gz", np.zeros((6, 5, 4), np.float32))
    (root / "imagesTr" / "._la_003.nii.gz").write_bytes(b"macOS resource fork")
    meta = {"name": "LeftAtrium", "modality": {"0": "MRI", "1": "ADC"} if four_d else {"0": "MRI"},
            "labels": {"0": "background", "1": "left atrium"}, "numTraining": 3,
            "training": training, "test": ["./imagesTs/la_001.nii.gz"]}
    (root / "dataset.json").write_text(json.dumps(meta))


def test_msd_training_and_test(tmp_path):
    root = tmp_path / "Task02_Heart"
    _make_msd(root)
    cases = list(iter_msd(root))
    assert [c.case_id for c in cases] == ["la_003", "la_010", "la_007"]  # dataset.json order
    c = cases[0]
    assert c.task == "LeftAtrium" and c.split == "train" and c.meta["labels"] == {0: "background", 1: "left atrium"}
    img, lab = c.load_image(), c.load_label()
    assert img.shape == (4, 5, 6) and img.spacing == pytest.approx((1.25, 1.25, 2.5))
    assert lab.array.sum() == 8 and lab.shape == img.shape
    test = list(iter_msd(root, "test"))
    assert [t.case_id for t in test] == ["la_001"] and test[0].label is None and test[0].load_label() is None
    assert detect_layout(root) == "msd" and len(list(iter_cases(root))) == 3


def test_msd_4d_multimodal_needs_channel(tmp_path):
    root = tmp_path / "Task01_BrainTumour"
    _make_msd(root, four_d=True)
    case = next(iter_msd(root))
    with pytest.raises(LayoutError, match="0=MRI, 1=ADC"):
        case.load_image()
    assert case.load_image(channel=1).shape == (4, 5, 6)


def test_msd_missing_files_are_reported(tmp_path):
    root = tmp_path / "Task02_Heart"
    _make_msd(root)
    (root / "labelsTr" / "la_010.nii.gz").unlink()
    with pytest.raises(LayoutError, match="label ./labelsTr/la_010.nii.gz .* missing"):
        list(iter_msd(root))
    (root / "dataset.json").write_text("{broken")
    with pytest.raises(LayoutError, match="invalid JSON"):
        list(iter_msd(root))


def test_nnunet_v1_channel_suffix_files(tmp_path):
    root = tmp_path / "Task002_Heart"
    _make_msd(root)
    for p in sorted((root / "imagesTr").glob("la_*.nii.gz")):  # v1 renames images to _0000
        p.rename(p.with_name(p.name.replace(".nii.gz", "_0000.nii.gz")))
    cases = list(iter_msd(root))
    assert [c.image[0].name for c in cases] == ["la_003_0000.nii.gz", "la_010_0000.nii.gz", "la_007_0000.nii.gz"]
    assert cases[0].load_image().shape == (4, 5, 6)


# --------------------------------------------------------------------------- nnU-Net v2
def _make_nnunet_v2(root, channels=("T2", "ADC")):
    for cid in ("prostate_10", "prostate_2"):
        for ch in range(len(channels)):
            _nii(root / "imagesTr" / f"{cid}_{ch:04d}.nii.gz", np.full((4, 5, 3), ch + 1, np.float32))
        _nii(root / "labelsTr" / f"{cid}.nii.gz", np.ones((4, 5, 3), np.uint8))
    _nii(root / "imagesTs" / "prostate_99_0000.nii.gz", np.zeros((4, 5, 3), np.float32))
    _nii(root / "imagesTs" / "prostate_99_0001.nii.gz", np.zeros((4, 5, 3), np.float32))
    meta = {"channel_names": {str(i): n for i, n in enumerate(channels)},
            "labels": {"background": 0, "peripheral zone": 1, "transition zone": 2, "whole": [1, 2]},
            "numTraining": 2, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))


def test_nnunet_v2_cases(tmp_path):
    root = tmp_path / "Dataset005_Prostate"
    _make_nnunet_v2(root)
    info = read_dataset_json(root)
    assert info["format"] == "nnunet_v2" and info["labels"] == {0: "background", 1: "peripheral zone",
                                                                2: "transition zone"}
    assert info["regions"] == {"whole": [1, 2]} and info["channels"] == {0: "T2", 1: "ADC"}
    cases = list(iter_nnunet(root))
    assert [c.case_id for c in cases] == ["prostate_2", "prostate_10"]  # natural order
    assert [p.name for p in cases[0].image] == ["prostate_2_0000.nii.gz", "prostate_2_0001.nii.gz"]
    assert cases[0].task == "Dataset005_Prostate"
    assert np.all(cases[0].load_image(channel=1).array == 2)
    with pytest.raises(LayoutError, match="0=T2, 1=ADC"):
        cases[0].load_image()
    test = list(iter_nnunet(root, "test"))
    assert [c.case_id for c in test] == ["prostate_99"] and test[0].label is None
    assert detect_layout(root) == "nnunet_v2"


def test_nnunet_v2_errors(tmp_path):
    root = tmp_path / "Dataset005_Prostate"
    _make_nnunet_v2(root)
    (root / "imagesTr" / "prostate_10_0001.nii.gz").unlink()
    with pytest.raises(LayoutError, match=r"prostate_10 has channels \[0\], dataset.json declares \[0, 1\]"):
        list(iter_nnunet(root))
    _nii(root / "imagesTr" / "nosuffix.nii.gz", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(LayoutError, match="channel suffix"):
        list(iter_nnunet(root))


def test_nnunet_v2_explicit_dataset_mapping(tmp_path):
    root = tmp_path / "Dataset007_X"
    _nii(root / "data" / "a.nii.gz", np.zeros((2, 2, 2), np.float32))
    _nii(root / "data" / "a_seg.nii.gz", np.zeros((2, 2, 2), np.uint8))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "x": 1}, "numTraining": 1,
        "file_ending": ".nii.gz", "dataset": {"case_a": {"images": ["data/a.nii.gz"], "label": "data/a_seg.nii.gz"}}}))
    (case,) = list(iter_nnunet(root))
    assert case.case_id == "case_a" and case.label.name == "a_seg.nii.gz"


# --------------------------------------------------------------------------- SAMed-2 PNG slices
def _make_samed2(root):
    rng = np.random.default_rng(1)
    task = root / "Kidney_CT_KiTS"
    for sub in ("image", "mask"):
        (task / sub).mkdir(parents=True)
    names = []
    for case in ("case00001", "case00002"):
        for s in (12, 3, 7):
            name = f"{case}_slice_{s:03d}.png"
            Image.fromarray(rng.integers(0, 255, (8, 10, 3), dtype=np.uint8)).save(task / "image" / name)
            m = np.zeros((8, 10), np.uint8)
            m[2:4, 3:6] = 255
            Image.fromarray(m).save(task / "mask" / name)
            names.append(name)
    (task / "train.txt").write_text("".join(f"./Kidney_CT_KiTS/image/{n}\n" for n in names[:4]))
    (task / "val.txt").write_text(f"image/{names[4]}\n{names[5]}\n")
    skin = root / "Lesion_Dermoscopy_ISIC2018"
    for sub in ("image", "mask"):
        (skin / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(skin / "image" / "ISIC_0000123.png")
    pal = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(skin / "mask" / "ISIC_0000123.png")
    (root / "train.txt").write_text("./Lesion_Dermoscopy_ISIC2018/image/ISIC_0000123.png\n")
    return task


def test_samed2_lists_and_metadata(tmp_path):
    root = tmp_path / "MedBank"
    _make_samed2(root)
    train = list(iter_samed2(root, "train"))
    assert [c.case_id for c in train] == ["case00001_slice_012", "case00001_slice_003", "case00001_slice_007",
                                          "case00002_slice_012", "ISIC_0000123"]
    c = train[1]
    assert c.task == "Kidney_CT_KiTS" and c.meta["object"] == "Kidney" and c.meta["modality"] == "CT"
    assert c.meta["source"] == "KiTS" and c.meta["volume_id"] == "case00001" and c.meta["slice_index"] == 3
    assert c.load_image().array.shape == (1, 8, 10, 3)
    lab = c.load_label().array
    assert lab.shape == (1, 8, 10) and set(np.unique(lab).tolist()) == {0, 1}  # 0/255 PNG -> 0/1
    assert lab.sum() == 6
    isic = train[-1]
    assert isic.meta["slice_index"] is None and isic.meta["modality"] == "Dermoscopy"
    assert isic.load_label().array[0].tolist() == [[0, 1], [2, 1]]  # palette indices, not colours
    val = list(iter_samed2(root, "val", tasks=["Kidney_CT_KiTS"]))
    assert [c.case_id for c in val] == ["case00002_slice_003", "case00002_slice_007"]
    everything = list(iter_samed2(root, None))
    assert len(everything) == 7
    groups = group_slices(everything)
    assert [c.meta["slice_index"] for c in groups[("Kidney_CT_KiTS", "case00001")]] == [3, 7, 12]
    assert detect_layout(root) == "samed2"


def test_samed2_errors(tmp_path):
    root = tmp_path / "MedBank"
    task = _make_samed2(root)
    with pytest.raises(LayoutError, match="no test.txt"):
        list(iter_samed2(root, "test"))
    with pytest.raises(LayoutError, match="unknown task"):
        list(iter_samed2(root, "train", tasks=["Liver_CT_LiTS"]))
    (task / "mask" / "case00001_slice_003.png").unlink()
    with pytest.raises(LayoutError, match="no mask for case00001_slice_003.png"):
        list(iter_samed2(root, "train"))
    (task / "train.txt").write_text("image/ghost.png\n")
    with pytest.raises(LayoutError, match="ghost.png"):
        list(iter_samed2(root, "train"))


# --------------------------------------------------------------------------- CVPR 2025 npz
def _make_npz(path, with_boxes=True):
    imgs = np.random.default_rng(2).integers(0, 255, (10, 12, 14), dtype=np.uint8)
    gts = np.zeros_like(imgs)
    gts[2:6, 3:7, 4:9] = 2
    gts[7:9, 1:3, 1:3] = 5
    extra = {}
    if with_boxes:
        extra["boxes"] = np.array([
            {"z_min": 2, "z_max": 5, "z_mid": 4,
             "z_mid_x_min": 4, "z_mid_y_min": 3, "z_mid_x_max": 8, "z_mid_y_max": 6},
            {"z_min": 7, "z_max": 8, "z_mid": 8,
             "z_mid_x_min": 1, "z_mid_y_min": 1, "z_mid_x_max": 2, "z_mid_y_max": 2},
        ], dtype=object)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, imgs=imgs, gts=gts, spacing=np.array([0.8, 0.8, 2.5]), **extra)
    return imgs, gts


def test_cvpr_npz_cases_and_boxes(tmp_path):
    root = tmp_path / "3D_train_npz"
    imgs, gts = _make_npz(root / "CT" / "CT_AbdTumor_HCC_004.npz")
    _make_npz(root / "MR" / "MR_x_1.npz", with_boxes=False)
    with pytest.warns(UserWarning, match="allow_pickle=True"):
        cases = list(iter_cvpr_npz(root))
    assert [c.case_id for c in cases] == ["CT_AbdTumor_HCC_004", "MR_x_1"]
    c = cases[0]
    assert c.task == "CT" and c.meta["shape"] == (10, 12, 14) and "boxes" not in c.meta
    vol = c.load_image()
    np.testing.assert_array_equal(vol.array, imgs)
    assert vol.spacing == (0.8, 0.8, 2.5)  # (x, y, z): z is the slice step of imgs' first axis
    lab = c.load_label()
    np.testing.assert_array_equal(lab.array, gts)
    assert lab.spacing == vol.spacing

    (trusted,) = [c for c in iter_cvpr_npz(root / "CT", allow_pickle=True)]
    objs = cvpr_boxes_to_prompts(trusted.meta["boxes"], label_ids=[2, 5])
    assert [o.id for o in objs] == [2, 5]
    b = objs[0].prompts[0]
    assert b.z_range == (2, 5) and b.slice == 4 and b.box == (4, 3, 8, 6)
    # the box is tight on the middle slice of label 2
    ys, xs = np.nonzero(gts[b.slice] == 2)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == b.box
    assert detect_layout(root) == "cvpr_npz"


def test_cvpr_npz_spacing_order_and_separate_gts(tmp_path):
    _make_npz(tmp_path / "imgs" / "case1.npz", with_boxes=False)
    gdir = tmp_path / "gts"
    gdir.mkdir()
    np.savez_compressed(gdir / "case1.npz", gts=np.ones((10, 12, 14), np.uint8))
    (c,) = list(iter_cvpr_npz(tmp_path / "imgs", gts_dir=gdir, spacing_order="zyx"))
    assert c.meta["spacing"] == (2.5, 0.8, 0.8)
    assert c.label == gdir / "case1.npz" and c.load_label().array.min() == 1


def test_cvpr_npz_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 2, 2)))
    with pytest.raises(LayoutError, match="no 'imgs' key"):
        list(iter_cvpr_npz(tmp_path / "bad.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(LayoutError, match="not a readable .npz"):
        list(iter_cvpr_npz([tmp_path / "junk.npz"]))
    with pytest.raises(ValueError, match="2 boxes but 1 label ids"):
        cvpr_boxes_to_prompts([{}, {}], [1])
    with pytest.raises(LayoutError, match="not an MSD"):
        detect_layout(tmp_path / "nothing")
