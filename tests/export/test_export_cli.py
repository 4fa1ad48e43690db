"""`medmem export --onnx` and `medmem segment --backend onnxruntime` on a tiny model."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from click.testing import CliRunner

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'medmem[onnx]')")

import medmem  # noqa: E402
from medmem.checkpoint import save_weights  # noqa: E402
from medmem.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    m = medmem.build_model("test_tiny", device="cpu")
    with torch.no_grad():  # objects scored present, so the masks are not empty
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += 5.0
    return save_weights(m, tmp_path_factory.mktemp("w") / "tiny.safetensors")


def _ct(path):
    arr = np.full((8, 40, 48), -800, np.int16)
    arr[2:7, 10:30, 12:40] = 60
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.9, 3.0))
    sitk.WriteImage(img, str(path))


def test_export_cli_writes_graphs_and_manifest(tmp_path, weights):
    out = tmp_path / "onnx"
    res = CliRunner().invoke(main, ["export", "--onnx", str(out), "--checkpoint", str(weights), "--int8"])
    assert res.exit_code == 0, res.output
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"] == "test_tiny"
    for name in ("image_encoder", "mask_decoder", "memory_attention", "memory_encoder"):
        assert name in res.output
        assert (out / man["graphs"][name]["file"]).is_file() and (out / man["int8"][name]).is_file()
    assert man["weights_sha256"] == medmem.export.weights_hash(medmem.build_model(checkpoint=weights, device="cpu"))


def test_export_cli_one_line_errors(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    res = CliRunner().invoke(main, ["export", "--onnx", str(tmp_path / "f"), "--config", "test_tiny"])
    assert res.exit_code != 0 and "is a file" in res.output and "Traceback" not in res.output
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    res = CliRunner().invoke(main, ["export", "--onnx", str(tmp_path / "o"), "--config", "test_tiny"])
    assert res.exit_code == 1 and "pip install 'medmem[onnx]'" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_segment_backend_onnxruntime_matches_torch(tmp_path, weights, monkeypatch):
    monkeypatch.setenv("MEDMEM_ONNX_CACHE", str(tmp_path / "cache"))
    _ct(tmp_path / "ct.nii.gz")
    masks = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.nii.gz"
        res = CliRunner().invoke(main, ["segment", str(tmp_path / "ct.nii.gz"), "--out", str(out), "--box",
                                        "12,10,40,30", "--slice", "4", "--axis", "0", "--checkpoint", str(weights),
                                        "--device", "cpu", "--backend", backend, "--quiet"])
        assert res.exit_code == 0, res.output
        masks[backend] = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert masks["torch"].any()
    assert np.mean(masks["torch"] != masks["onnxruntime"]) <= 1e-3
    assert len(list((tmp_path / "cache").glob("*/manifest.json"))) == 1


def test_segment_backend_without_onnxruntime_is_one_line(tmp_path, weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    _ct(tmp_path / "ct.nii.gz")
    res = CliRunner().invoke(main, ["segment", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "m.nii.gz"),
                                    "--box", "12,10,40,30", "--slice", "4", "--axis", "0", "--checkpoint",
                                    str(weights), "--backend", "onnxruntime", "--quiet"])
    assert res.exit_code == 1
    assert "pip install 'medmem[onnx]'" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.nii.gz").exists()
    res = CliRunner().invoke(main, ["segment", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "m.nii.gz"),
                                    "--box", "12,10,40,30", "--slice", "4", "--axis", "0", "--checkpoint",
                                    str(weights), "--backend", "onnxruntime", "--device", "cuda", "--quiet"])
    assert res.exit_code == 1 and "runs on the CPU" in res.output
