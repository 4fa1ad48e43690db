"""ONNX export and the onnxruntime backend: every graph and a whole propagation against PyTorch.

Tolerances (fp32, CPU): each graph's outputs within 5e-6 · max(1, max |output|) of PyTorch (observed
at most 7e-7: float rounding; a 1 % change of one graph input already moves outputs by ~3e-5); a whole `VolumeSession` propagation: low-res mask logits within 5e-4 (stored as fp16; observed 6e-5) and at most
0.1 % of mask pixels different (pixels whose logit lies within the tolerance of the 0 threshold).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'medmem[onnx]')")

import medmem  # noqa: E402
from medmem.export import as_backend, export_onnx, read_manifest  # noqa: E402
from medmem.model import MaskMemory, ObjectPointer  # noqa: E402

GRAPH_RTOL = 5e-6
LOGIT_ATOL = 5e-4
MASK_FRACTION = 1e-3


def _present_model() -> medmem.SAM2Model:
    """test_tiny with its object-score head biased so objects are scored present: masks then vary."""
    torch.manual_seed(0)
    m = medmem.build_model("test_tiny", device="cpu")
    with torch.no_grad():
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += 5.0
    return m.eval()


@pytest.fixture(scope="module")
def model():
    return _present_model()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("onnx")
    export_onnx(model, d, precisions=("fp32", "int8"))
    return d


@pytest.fixture(scope="module")
def ort_model(model, export_dir):
    return as_backend(model, "onnxruntime", onnx_dir=export_dir)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = GRAPH_RTOL) -> None:
    """max |a - b| <= rtol * max(1, max |a|)."""
    assert a.shape == b.shape
    assert float((a.float() - b.float()).abs().max()) <= rtol * max(1.0, float(a.abs().max()))


def test_manifest_names_graphs_shapes_and_hash(export_dir, model):
    man = read_manifest(export_dir)
    assert set(man["graphs"]) == {"image_encoder", "mask_decoder", "memory_attention", "memory_encoder"}
    assert man["config"] == "test_tiny" and man["opset"] >= 17 and man["medmem_version"] == medmem.__version__
    assert man["weights_sha256"] == medmem.export.weights_hash(model)
    ma = man["graphs"]["memory_attention"]
    assert [i["shape"][1] for i in ma["inputs"]][2:] == ["num_memory_tokens"] * 2 + ["num_pointer_tokens"] * 2
    dec = man["graphs"]["mask_decoder"]
    assert dec["inputs"][2]["shape"][:2] == ["batch", "num_prompt_tokens"]
    for g in man["graphs"].values():
        assert (export_dir / g["file"]).stat().st_size > 1000
    assert set(man["int8"]) == set(man["graphs"])
    assert not list(export_dir.glob(".*tmp*"))  # atomic writes leave no temporaries


@torch.inference_mode()
def test_image_encoder_graph(model, ort_model):
    x = torch.randn(3, 3, 128, 128)
    a, b = model.encode_image(x), ort_model.encode_image(x)
    _close(a.vision_feats, b.vision_feats)
    _close(a.vision_pos, b.vision_pos)
    assert len(a.high_res) == len(b.high_res) == 2
    for u, v in zip(a.high_res, b.high_res):
        _close(u, v)


@torch.inference_mode()
@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("prompt", ["box", "points", "box+mask"])
def test_heads_graph(model, ort_model, multimask, prompt):
    feats = model.encode_image(torch.randn(2, 3, 128, 128))
    if prompt == "points":  # 3 points per object: the prompt-token count differs from the export's example
        pts = (torch.tensor([[[30.0, 40.0], [60.0, 70.0], [90.0, 20.0]]] * 2), torch.tensor([[1, 0, 1]] * 2))
    else:
        pts = (torch.tensor([[[20.0, 30.0], [90.0, 100.0]], [[5.0, 5.0], [60.0, 50.0]]]), torch.tensor([[2, 3]] * 2))
    mask = torch.randn(2, 1, 32, 32) * 5 if prompt.endswith("mask") else None
    a = model.sam_heads(feats.vision_feats, feats.high_res, pts, mask, multimask)
    b = ort_model.sam_heads(feats.vision_feats, feats.high_res, pts, mask, multimask)
    assert float(a.low_res_masks.std()) > 0.02  # real masks, not the absent-object fill (std 0)
    for name in ("low_res_multimasks", "low_res_masks", "high_res_masks", "ious", "obj_ptr", "object_score_logits"):
        _close(getattr(a, name), getattr(b, name))


@torch.inference_mode()
@pytest.mark.parametrize("frames,pointers", [(1, 1), (3, 0), (7, 5)])
def test_memory_attention_graph(model, ort_model, frames, pointers):
    feats = model.encode_image(torch.randn(1, 3, 128, 128))
    mems = [MaskMemory(torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8), t) for t in range(frames)]
    ptrs = [ObjectPointer(torch.randn(1, 32), d) for d in range(1, pointers + 1)]
    a = model.condition_on_memory(feats, mems, ptrs, 6)
    b = ort_model.condition_on_memory(feats, mems, ptrs, 6)
    _close(a, b)


@torch.inference_mode()
@pytest.mark.parametrize("from_points", [False, True])
def test_memory_encoder_graph(model, ort_model, from_points):
    feats = model.encode_image(torch.randn(2, 3, 128, 128))
    masks = torch.randn(2, 1, 128, 128) * 4
    obj = torch.tensor([[1.0], [-1.0]])
    a = model.encode_memory(feats, masks, obj, from_points)
    b = ort_model.encode_memory(feats, masks, obj, from_points)
    _close(a[0], b[0])
    _close(a[1], b[1])


def _blob_volume() -> np.ndarray:
    z, y, x = np.mgrid[:12, :48, :64]
    v = np.zeros((12, 48, 64), np.float32)
    v[((z - 6) / 4.0) ** 2 + ((y - 22) / 12.0) ** 2 + ((x - 24) / 14.0) ** 2 < 1] = 1.0
    v[(y - 36) ** 2 + (x - 52) ** 2 < 36] = 0.6
    return v


def _propagate(model, backend, policy="fifo"):
    s = medmem.VolumeSession(model, _blob_volume(), policy=policy, chunk=4, backend=backend)
    s.add_prompt(6, 1, box=[10, 10, 38, 34])
    s.add_prompt(3, 2, points=[[52, 36]], labels=[1])
    list(s.propagate())
    return s


@pytest.mark.parametrize("policy", ["fifo", "self_sorting"])
def test_volume_session_propagation_matches_torch(model, ort_model, policy):
    a, b = _propagate(model, "torch", policy), _propagate(ort_model, "torch", policy)
    assert isinstance(b.model, medmem.export.OnnxSAM2)
    for oid in (1, 2):
        la = torch.stack([a.objects[oid].results[s].low_res.float() for s in range(12)])
        lb = torch.stack([b.objects[oid].results[s].low_res.float() for s in range(12)])
        assert float(la.std()) > 0.02
        assert float((la - lb).abs().max()) <= LOGIT_ATOL
        ma, mb = a.masks(oid), b.masks(oid)
        assert ma.any() and not ma.all()
        assert np.mean(ma != mb) <= MASK_FRACTION
        ca, cb = a.confidence(oid), b.confidence(oid)
        assert [r["slice"] for r in ca] == [r["slice"] for r in cb]
        np.testing.assert_allclose([r["iou"] for r in ca], [r["iou"] for r in cb], atol=1e-3)


def test_volume_session_backend_argument_exports_into_the_cache(model, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMEM_ONNX_CACHE", str(tmp_path))
    s = _propagate(model, "onnxruntime")
    digest = medmem.export.weights_hash(model)
    assert (tmp_path / digest / "manifest.json").is_file()
    assert s.model.backend == "onnxruntime"
    again = as_backend(model, "onnxruntime")  # a second use loads the cached export
    assert again.folder == tmp_path / digest


@torch.inference_mode()
def test_image_predictor_backend(model, ort_model):
    img = (_blob_volume()[6] * 200).astype(np.uint8)
    pa = medmem.ImagePredictor(model)
    pb = medmem.ImagePredictor(ort_model)
    pa.set_image(img)
    pb.set_image(img)
    for kw in (dict(box=[10, 10, 38, 34]), dict(box=[[10, 10, 38, 34], [40, 25, 63, 47]], multimask_output=False),
               dict(point_coords=[[24, 22], [52, 36]], point_labels=[1, 0])):
        ma, sa, la = pa.predict(**kw)
        mb, sb, lb = pb.predict(**kw)
        np.testing.assert_allclose(la, lb, atol=LOGIT_ATOL)
        np.testing.assert_allclose(sa, sb, atol=GRAPH_RTOL)
        assert np.mean(ma != mb) <= MASK_FRACTION
    _, _, low = pa.predict(box=[10, 10, 38, 34], multimask_output=False)  # a mask prompt alone: no prompt tokens
    np.testing.assert_allclose(pa.predict(mask_input=low)[2], pb.predict(mask_input=low)[2], atol=LOGIT_ATOL)


def test_int8_backend_runs_quantised_graphs(model, export_dir):
    import onnx

    q = as_backend(model, "onnxruntime-int8", onnx_dir=export_dir)
    assert q.precision == "int8"
    man = read_manifest(export_dir)
    ops = {n.op_type for n in onnx.load(str(export_dir / man["int8"]["image_encoder"])).graph.node}
    assert "DynamicQuantizeLinear" in ops or "DynamicQuantizeMatMul" in ops or "MatMulInteger" in ops
    s = _propagate(q, "torch")
    lo = torch.stack([s.objects[1].results[i].low_res.float() for i in range(12)])
    assert torch.isfinite(lo).all()


def test_export_dir_of_other_weights_is_refused(model, export_dir):
    other = medmem.build_model("test_tiny", device="cpu")
    with pytest.raises(ValueError, match="other weights"):
        as_backend(other, "onnxruntime", onnx_dir=export_dir)
    with pytest.raises(ValueError, match="unknown backend"):
        as_backend(model, "tensorrt")


def test_missing_onnxruntime_names_the_extra(model, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(RuntimeError, match=r"pip install 'medmem\[onnx\]'"):
        as_backend(model, "onnxruntime")


def test_manifest_is_json_with_config(export_dir):
    man = json.loads((export_dir / "manifest.json").read_text())
    assert medmem.SAM2Config.from_dict(man["config_dict"]).name == "test_tiny"


def _region_model() -> medmem.SAM2Model:
    """test_tiny without memory, with box tracking on 64² regions (as medmem_lite_ft_256 tracks on 128²)."""
    from dataclasses import replace

    from medmem.config import get_config

    cfg = replace(get_config("test_tiny"), name="test_tiny_region", num_maskmem=0, pred_obj_scores=False,
                  use_obj_ptrs_in_encoder=False, no_obj_embed_spatial=False, add_tpos_enc_to_obj_ptrs=False,
                  proj_tpos_enc_in_obj_ptrs=False, propagation_box_margin=0.1, region_size=64)
    torch.manual_seed(0)
    return medmem.build_model(cfg, device="cpu").eval()


def test_region_tracking_runs_on_region_graphs_and_matches_torch(tmp_path):
    """A region-tracking model exports an encoder and a decoder for its region size too, and propagation
    (prompted slice whole, tracked slices as regions) on the backend equals PyTorch's."""
    model = _region_model()
    man = export_onnx(model, tmp_path)
    assert {"image_encoder_64px", "mask_decoder_64px"} <= set(man["graphs"])
    ort = as_backend(model, "onnxruntime", onnx_dir=tmp_path)

    def run(m):
        s = medmem.VolumeSession(m, _blob_volume(), chunk=4)
        s.add_prompt(6, 1, box=[10, 10, 38, 34])
        list(s.propagate())
        return s

    a, b = run(model), run(ort)
    assert a.features.encoded_regions > 0 and b.features.encoded_regions == a.features.encoded_regions
    tracked = sorted(a.objects[1].results)
    assert len(tracked) >= 6
    la = torch.stack([a.objects[1].results[s].low_res.float() for s in tracked])
    lb = torch.stack([b.objects[1].results[s].low_res.float() for s in tracked])
    assert float((la - lb).abs().max()) <= LOGIT_ATOL
