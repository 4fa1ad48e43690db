"""Checkpoint loading: official `.pt` layout, plain state dicts, safetensors, fine-tune layouts, errors."""
from __future__ import annotations

import pytest
import torch

import medmem
from medmem.checkpoint import (CheckpointError, CheckpointMismatchError, infer_config, load_weights, read_state_dict,
                               save_weights)
from medmem.config import OFFICIAL_MODELS, get_config
from medmem.model import SAM2Model

OFFICIAL_PARAMS_M = {"tiny": 38.9, "small": 46.0, "base_plus": 80.8, "large": 224.4}


@pytest.fixture(scope="module")
def tiny_sd():
    torch.manual_seed(0)
    return SAM2Model(get_config("test_tiny")).state_dict()


@pytest.fixture(scope="module")
def trained_sd(tiny_sd):
    """Weights that no freshly built model has: a load that did nothing would leave the seed-0 init."""
    g = torch.Generator().manual_seed(123)
    return {k: v + torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone() for k, v in tiny_sd.items()}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", OFFICIAL_MODELS)
def test_official_parameter_counts(name):
    n = SAM2Model.count_parameters(get_config(name))
    size = name.split("hiera_")[1]
    assert abs(n / 1e6 - OFFICIAL_PARAMS_M[size]) < 0.1, (name, n)


@pytest.mark.parametrize("layout", ["official_pt", "plain_pt", "ddp_prefix", "state_dict_key", "safetensors",
                                    "medical_sam2"])
def test_layouts_load_strictly(tmp_path, trained_sd, layout):
    tiny_sd = trained_sd
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pt")
    if layout == "official_pt":  # SAM 2 / MedSAM2 release: {"model": sd}
        torch.save({"model": tiny_sd}, path)
    elif layout == "plain_pt":
        torch.save(tiny_sd, path)
    elif layout == "ddp_prefix":
        torch.save({"model": {f"module.{k}": v for k, v in tiny_sd.items()}}, path)
    elif layout == "state_dict_key":
        torch.save({"state_dict": tiny_sd, "epoch": 3}, path)
    elif layout == "medical_sam2":  # Medical SAM 2 training script: extra top-level entries
        torch.save({"model": tiny_sd, "epoch": 10, "best_dice": 0.8}, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in tiny_sd.items()}, str(path))
    torch.manual_seed(0)  # the seed the fixtures used: only the load can make the weights equal
    fresh = medmem.build_model("test_tiny", device="cpu").state_dict()
    assert any(not torch.equal(fresh[k], tiny_sd[k]) for k in tiny_sd if tiny_sd[k].is_floating_point())
    torch.manual_seed(0)
    model = medmem.build_model("test_tiny", checkpoint=path, device="cpu")
    _same(model.state_dict(), tiny_sd)


def test_roundtrip_save_with_config_and_infer(tmp_path):
    torch.manual_seed(1)
    m = SAM2Model(get_config("test_tiny_sam20"))
    p = save_weights(m, tmp_path / "out" / "model.safetensors")
    assert not list(p.parent.glob(".*tmp"))  # atomic write leaves no temp file
    m2 = medmem.build_model(checkpoint=p, device="cpu")  # config from the file's metadata
    assert m2.cfg == m.cfg
    _same(m2.state_dict(), m.state_dict())


@pytest.mark.parametrize("name", OFFICIAL_MODELS + ("samed2_hiera_small",))
def test_infer_config_from_keys_and_shapes(name):
    with torch.device("meta"):
        sd = SAM2Model(get_config(name)).state_dict()
    assert infer_config(sd).name == name


def test_mismatch_names_missing_unexpected_and_config(tiny_sd):
    sd = dict(tiny_sd)
    sd.pop("no_mem_embed")
    sd.pop("sam_mask_decoder.iou_token.weight")
    sd["extra.weight"] = torch.zeros(3)
    sd["maskmem_tpos_enc"] = torch.zeros(2, 1, 1, 16)
    model = SAM2Model(get_config("test_tiny"))
    with pytest.raises(CheckpointMismatchError) as e:
        load_weights(model, sd)
    msg = str(e.value)
    assert "'test_tiny'" in msg and "2 missing" in msg and "no_mem_embed" in msg and "iou_token" in msg
    assert "1 unexpected" in msg and "extra.weight" in msg
    assert "1 shape mismatch" in msg and "maskmem_tpos_enc" in msg
    assert e.value.missing == ["no_mem_embed", "sam_mask_decoder.iou_token.weight"]


def test_wrong_variant_is_refused():
    with torch.device("meta"):
        sd21 = SAM2Model(get_config("sam2.1_hiera_tiny")).state_dict()
    with pytest.raises(CheckpointMismatchError, match="(?s)sam2_hiera_tiny.*no_obj_embed_spatial"):
        load_weights(SAM2Model(get_config("sam2_hiera_tiny")).to("meta"), sd21)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_corrupt_files_give_clear_errors(tmp_path, content):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(p)
    p2 = tmp_path / "bad.safetensors"
    p2.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(p2)


def test_missing_file_and_non_tensor_content(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pt")
    p = tmp_path / "x.pt"
    torch.save({"model": {"a": 1}}, p)
    with pytest.raises(CheckpointError, match="no tensors"):
        read_state_dict(p)


def test_samed2_layout_loads_and_adapter_behaves_as_released():
    """A state dict in the released SAMed-2 layout (adapter in every block + unused fusion blocks) loads;
    the compatibility switch groups neighbouring windows like the release, medmem mode groups slices."""
    cfg = get_config("samed2_hiera_small")
    small = cfg.replace(trunk=get_config("test_tiny").trunk, image_size=128,
                        temporal_adapter=cfg.temporal_adapter.__class__(blocks=(0, 1, 2, 3, 4), samed2_compat=True),
                        decoder_heads=2, decoder_mlp_dim=64, iou_head_hidden_dim=32, mem_attn_layers=2,
                        mem_attn_ffn_dim=64, mem_dim=16, mem_fuser_layers=1)
    torch.manual_seed(0)
    ref = SAM2Model(small)
    sd = dict(ref.state_dict())
    for k in list(sd):
        if ".adapter.linear_up" in k:
            sd[k] = torch.randn_like(sd[k]) * 0.1  # trained adapters are not zero
    dims = {i: b.dim_out for i, b in enumerate(ref.image_encoder.trunk.blocks)}
    for i, d in dims.items():  # the release's FusionBlock (MultiheadAttention + LayerNorm), unused in forward
        p = f"image_encoder.trunk.blocks.{i}.fancy_fusion."
        sd.update({p + "cross_attn.in_proj_weight": torch.randn(3 * d, d), p + "cross_attn.in_proj_bias": torch.zeros(3 * d),
                   p + "cross_attn.out_proj.weight": torch.randn(d, d), p + "cross_attn.out_proj.bias": torch.zeros(d),
                   p + "norm.weight": torch.ones(d), p + "norm.bias": torch.zeros(d)})
    m = SAM2Model(small).eval()
    load_weights(m, sd)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        out_compat = m.encode_image(x).vision_feats
        m_slices = SAM2Model(small.replace(temporal_adapter=small.temporal_adapter.__class__(
            blocks=(0, 1, 2, 3, 4), samed2_compat=False))).eval()
        load_weights(m_slices, sd)
        out_slices = m_slices.encode_image(x, num_frames=2).vision_feats
    assert not torch.allclose(out_compat, out_slices)  # the two groupings differ
    # medmem mode mixes the two slices: changing slice 1 changes slice 0's features
    x2 = x.clone()
    x2[1] = torch.randn(3, 128, 128)
    with torch.no_grad():
        out2 = m_slices.encode_image(x2, num_frames=2).vision_feats
    assert not torch.allclose(out2[0], out_slices[0])
    # without adapters in the config the same weights are refused, naming the adapter keys
    with pytest.raises(CheckpointMismatchError, match="adapter"):
        load_weights(SAM2Model(small.replace(temporal_adapter=small.temporal_adapter.__class__())), sd)


def test_temporal_adapter_is_identity_at_init():
    """Zero-initialised last projection: a pre-trained SAM 2 is unchanged at step 0."""
    base = get_config("test_tiny")
    with_adapter = base.replace(temporal_adapter=base.temporal_adapter.__class__(blocks=(0, 1, 2, 3, 4), num_frames=2))
    torch.manual_seed(0)
    plain = SAM2Model(base).eval()
    adapted = SAM2Model(with_adapter).eval()
    missing, unexpected = adapted.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".adapter." in k for k in missing) and missing
    x = torch.randn(4, 3, 128, 128)
    with torch.no_grad():
        a, b = plain.encode_image(x), adapted.encode_image(x, num_frames=2)
    for u, v in zip(a.backbone_fpn, b.backbone_fpn):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
