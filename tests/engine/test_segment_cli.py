"""`medmem segment` on a NIfTI file, a DICOM folder and a batch; failures write nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from medmem.checkpoint import save_weights
from medmem.cli import main


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_model):
    return save_weights(tiny_model, tmp_path_factory.mktemp("w") / "tiny.safetensors")


def _ct(path, shape=(10, 40, 48)):
    arr = np.full(shape, -800, np.int16)
    arr[2:8, 10:30, 12:40] = 60
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.9, 3.0))
    img.SetOrigin((10.0, -20.0, 5.0))
    d = np.array([[1, 0, 0], [0, 0.8, -0.6], [0, 0.6, 0.8]], float)  # oblique
    img.SetDirection(d.ravel().tolist())
    sitk.WriteImage(img, str(path))
    return img


def test_segment_nifti_keeps_geometry_and_writes_report_and_overlay(tmp_path, weights):
    src = _ct(tmp_path / "ct.nii.gz")
    out = tmp_path / "out" / "mask.nii.gz"
    res = CliRunner().invoke(main, ["segment", str(tmp_path / "ct.nii.gz"), "--out", str(out), "--box", "12,10,40,30",
                                    "--slice", "5", "--axis", "0", "--checkpoint", str(weights), "--intensity",
                                    "soft_tissue", "--overlay", str(tmp_path / "ov.png"), "--report",
                                    str(tmp_path / "rep.json"), "--quiet"])
    assert res.exit_code == 0, res.output
    m = sitk.ReadImage(str(out))
    assert m.GetSize() == src.GetSize()
    np.testing.assert_allclose(m.GetSpacing(), src.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(m.GetOrigin(), src.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(m.GetDirection(), src.GetDirection(), atol=1e-5)
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["num_slices"] == 10 and len(rep["objects"][0]["per_slice"]) == 10
    assert (tmp_path / "ov.png").stat().st_size > 100


def test_segment_dicom_folder(tmp_path, weights):

    arr = np.full((6, 32, 32), -500, np.int16)
    arr[1:5, 8:24, 8:24] = 40
    folder = tmp_path / "dicom"
    folder.mkdir()
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.8, 2.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1"
    for k in range(arr.shape[0]):
        sl = img[:, :, k]
        for tag, val in [("0010|0010", "TEST^PATIENT"), ("0020|000d", "1.2.826.0.1.3680043.2.1125.2"),
                         ("0020|000e", series), ("0008|0060", "CT"), ("0020|0013", str(k + 1)),
                         ("0020|0032", f"0\\0\\{2.0 * k}"), ("0020|0037", "1\\0\\0\\0\\1\\0"),
                         ("0008|0018", f"1.2.826.0.1.3680043.2.1125.3.{k + 1}"), ("0028|1053", "1"),
                         ("0028|1052", "0")]:
            sl.SetMetaData(tag, val)
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(sl)
    out = tmp_path / "mask.nii.gz"
    res = CliRunner().invoke(main, ["segment", str(folder), "--out", str(out), "--point", "16,16,2,1",
                                    "--checkpoint", str(weights), "--quiet", "--axis", "0"])
    assert res.exit_code == 0, res.output
    assert sitk.ReadImage(str(out)).GetSize() == (32, 32, 6)


@pytest.mark.parametrize("args,match", [
    (["--box", "12,10,40,30", "--slice", "99"], "outside"),
    (["--box", "40,10,12,30", "--slice", "2"], "< x0"),
    (["--box", "1,2,3", "--slice", "2"], "X0,Y0,X1,Y1"),
    ([], "no prompts"),
    (["--point", "500,500,2"], "outside"),
])
def test_bad_prompts_write_nothing(tmp_path, weights, args, match):
    _ct(tmp_path / "ct.nii.gz")
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["segment", str(tmp_path / "ct.nii.gz"), "--out", str(out / "m.nii.gz"),
                                    "--checkpoint", str(weights), "--quiet", "--axis", "0",
                                    "--report", str(out / "r.json"), *args])
    assert res.exit_code != 0 and match in res.output, res.output
    assert not out.exists() or not any(out.iterdir())


def test_unreadable_input_and_missing_model(tmp_path, weights):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    res = CliRunner().invoke(main, ["segment", str(bad), "--out", str(tmp_path / "m.nii.gz"), "--box", "1,1,5,5",
                                    "--slice", "0", "--checkpoint", str(weights)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert not (tmp_path / "m.nii.gz").exists()


def test_never_overwrites_the_input(tmp_path, weights):
    _ct(tmp_path / "ct.nii.gz")
    before = (tmp_path / "ct.nii.gz").read_bytes()
    res = CliRunner().invoke(main, ["segment", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "ct.nii.gz"),
                                    "--box", "12,10,40,30", "--slice", "5", "--axis", "0", "--checkpoint",
                                    str(weights), "--quiet"])
    assert res.exit_code != 0
    assert (tmp_path / "ct.nii.gz").read_bytes() == before


def test_batch_folder(tmp_path, weights):
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("a", "b"):
        _ct(cases / f"{name}.nii.gz")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["segment", str(cases), "--out", str(out), "--box", "12,10,40,30", "--slice", "5",
                                    "--axis", "0", "--checkpoint", str(weights), "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["cases"]) == 2
    assert (out / "a_mask.nii.gz").exists() and (out / "b_report.json").exists() and (out / "b_overlay.png").exists()


def test_segment_set(tmp_path, weights):
    from PIL import Image

    paths = []
    for i in range(3):
        im = np.zeros((40, 50), np.uint8)
        im[10:30, 10 + i:40] = 200
        p = tmp_path / f"im{i}.png"
        Image.fromarray(im).save(p)
        paths.append(str(p))
    res = CliRunner().invoke(main, ["segment-set", *paths, "--box", "10,10,40,30", "--out", str(tmp_path / "o"),
                                    "--checkpoint", str(weights)])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o" / "report.json").read_text())["prompt_image"] == 0
    assert len(list((tmp_path / "o").glob("*_mask.png"))) == 3


def test_reference_scores_the_result(tmp_path, weights):
    src = _ct(tmp_path / "ct.nii.gz")
    ref = np.zeros((10, 40, 48), np.uint8)
    ref[2:8, 10:30, 12:40] = 1
    ref_img = sitk.GetImageFromArray(ref)
    ref_img.CopyInformation(src)
    sitk.WriteImage(ref_img, str(tmp_path / "ref.nii.gz"))
    out = tmp_path / "mask.nii.gz"
    args = ["segment", str(tmp_path / "ct.nii.gz"), "--out", str(out), "--box", "12,10,40,30", "--slice", "5",
            "--axis", "0", "--checkpoint", str(weights), "--intensity", "soft_tissue", "--report",
            str(tmp_path / "rep.json"), "--reference", str(tmp_path / "ref.nii.gz")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "vs reference: Dice" in res.output
    got = json.loads((tmp_path / "rep.json").read_text())["reference"]["objects"]["1"]
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(out))) == 1
    expected = 2 * (pred & (ref == 1)).sum() / (pred.sum() + ref.sum())
    assert got["dice"] == pytest.approx(expected, abs=1e-4)
    assert got["gt_voxels"] == int(ref.sum()) and got["pred_voxels"] == int(pred.sum())
    # a reference on another grid is refused, and nothing is written
    sitk.WriteImage(sitk.GetImageFromArray(ref[:5]), str(tmp_path / "ref_small.nii.gz"))
    out2 = tmp_path / "mask2.nii.gz"
    args[3] = str(out2)
    args[-1] = str(tmp_path / "ref_small.nii.gz")
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "does not match" in res.output and not out2.exists()


@pytest.mark.parametrize("kind,ext", [("nifti2", ".nii.gz"), ("mgh", ".mgz")])
def test_segment_formats_users_bring_writes_the_same_format(tmp_path, weights, kind, ext):
    """NIfTI-2 and FreeSurfer MGZ (ITK reads neither) in, a mask in the same format and geometry out."""
    import nibabel as nib

    data = np.full((48, 40, 10), -800, np.int16)  # (X, Y, Z)
    data[12:40, 10:30, 2:8] = 60
    aff = np.array([[0.0, 0.0, 3.0, 5.0], [0.7, 0.0, 0.0, -20.0], [0.0, 0.9, 0.0, 10.0], [0, 0, 0, 1]])  # permuted axes
    src = tmp_path / f"scan{ext}"
    nib.save((nib.Nifti2Image if kind == "nifti2" else nib.MGHImage)(data, aff), str(src))
    out = tmp_path / f"mask{ext}"
    res = CliRunner().invoke(main, ["segment", str(src), "--out", str(out), "--box", "12,10,40,30", "--slice", "5",
                                    "--axis", "0", "--checkpoint", str(weights), "--intensity", "soft_tissue", "--quiet"])
    assert res.exit_code == 0, res.output
    back = nib.load(str(out))
    assert type(back) is type(nib.load(str(src))) and back.shape == data.shape
    np.testing.assert_allclose(back.affine, aff, atol=1e-4)


def test_policy_options_reach_the_bank_and_bad_ones_write_nothing(tmp_path, weights):
    _ct(tmp_path / "ct.nii.gz")
    base = ["segment", str(tmp_path / "ct.nii.gz"), "--box", "12,10,40,30", "--slice", "5", "--axis", "0",
            "--checkpoint", str(weights), "--quiet"]
    res = CliRunner().invoke(main, base + ["--out", str(tmp_path / "m.nii.gz"), "--policy", "self_sorting",
                                           "--policy-opt", "k=2", "--policy-opt", "capacity=5",
                                           "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    mem = json.loads((tmp_path / "r.json").read_text())["objects"][0]["memory"]
    assert mem["policy"] == "self_sorting" and mem["k"] == 2 and mem["capacity"] == 5
    res = CliRunner().invoke(main, base + ["--out", str(tmp_path / "m2.nii.gz"), "--policy-opt", "nope=1"])
    assert res.exit_code != 0 and "unknown option 'nope'" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m2.nii.gz").exists()


def test_axes_fuse_orientations_from_a_3d_box(tmp_path, weights):
    _ct(tmp_path / "ct.nii.gz")
    prompts = {"objects": [{"id": 1, "prompts": [{"type": "box3d", "slice": 5, "box": [12, 10, 40, 30],
                                                  "z_range": [2, 7]}]}]}
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    out = tmp_path / "m.nii.gz"
    res = CliRunner().invoke(main, ["segment", str(tmp_path / "ct.nii.gz"), "--prompts", str(tmp_path / "p.json"),
                                    "--axes", "axial,coronal,sagittal", "--checkpoint", str(weights), "--out",
                                    str(out), "--overlay", str(tmp_path / "ov.png"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert sitk.ReadImage(str(out)).GetSize() == (48, 40, 10) and (tmp_path / "ov.png").exists()


def test_segment_precision_option(tmp_path, weights, monkeypatch):
    """--precision bf16 runs the PyTorch backend under bf16 autocast and says so in the report; fp32 runs fp32;
    auto is fp32 on the CPU; bf16 with an onnxruntime backend is refused in one line, before any output."""
    want = {"auto": "fp32", "fp32": "fp32", "bf16": "bf16"}
    _ct(tmp_path / "ct.nii.gz")
    base = ["segment", str(tmp_path / "ct.nii.gz"), "--box", "12,10,40,30", "--slice", "5", "--axis", "0",
            "--checkpoint", str(weights), "--device", "cpu", "--quiet"]
    masks = {}
    for p in ("auto", "fp32", "bf16"):
        out, rep = tmp_path / f"{p}.nii.gz", tmp_path / f"{p}.json"
        res = CliRunner().invoke(main, base + ["--out", str(out), "--report", str(rep), "--precision", p])
        assert res.exit_code == 0, res.output
        assert json.loads(rep.read_text())["precision"] == want[p]
        masks[p] = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert masks["auto"].shape == masks["bf16"].shape
    from medmem.engine import autocast

    for native, noted in ((False, True), (True, False)):  # emulated bf16 is said to be slow, native is not
        monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda native=native: native)
        res = CliRunner().invoke(main, ["segment", str(tmp_path / "ct.nii.gz"), "--box", "12,10,40,30", "--slice", "5",
                                        "--axis", "0", "--checkpoint", str(weights), "--device", "cpu",
                                        "--out", str(tmp_path / f"n{native}.nii.gz"), "--precision", "bf16"])
        assert res.exit_code == 0 and ("no native bf16" in res.output) == noted
    res = CliRunner().invoke(main, base + ["--out", str(tmp_path / "x.nii.gz"), "--precision", "bf16",
                                           "--backend", "onnxruntime"])
    assert res.exit_code != 0 and "--precision bf16 applies to the PyTorch backend" in res.output
    assert not (tmp_path / "x.nii.gz").exists()


def test_memory_options_on_the_memoryless_default_say_what_to_use(tmp_path):
    """The default model (medmem_lite_ft_256) has no memory: a memory policy or a One-Prompt set is refused in one
    line that names a model with memory, and `--model medmem_small_256` runs the set."""
    from PIL import Image

    paths = []
    for i in range(2):
        im = np.zeros((40, 50), np.uint8)
        im[10:30, 10 + i:40] = 200
        p = tmp_path / f"im{i}.png"
        Image.fromarray(im).save(p)
        paths.append(str(p))
    res = CliRunner().invoke(main, ["segment-set", *paths, "--box", "10,10,40,30", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "medmem_small_256" in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["segment-set", *paths, "--box", "10,10,40,30", "--out", str(tmp_path / "o"),
                                    "--model", "medmem_small_256"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "o").glob("*_mask.png"))) == 2
    vol = tmp_path / "v.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 40, 50), np.float32)), str(vol))
    res = CliRunner().invoke(main, ["segment", str(vol), "--box", "10,10,40,30", "--slice", "1", "--out",
                                    str(tmp_path / "m.nii.gz"), "--policy", "self_sorting", "--quiet"])
    assert res.exit_code != 0 and "has no memory" in res.output and "medmem_small_256" in res.output
    assert not (tmp_path / "m.nii.gz").exists()
