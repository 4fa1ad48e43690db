import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medmem import preprocess as I

MEAN = torch.tensor(I.IMAGENET_MEAN)[:, None, None]
STD = torch.tensor(I.IMAGENET_STD)[:, None, None]


# ----------------------------------------------------------------------------- windows
def test_window_presets_values():
    assert I.WINDOW_PRESETS["soft_tissue"] == (400, 40)
    assert I.WINDOW_PRESETS["lung"] == (1500, -600)
    assert I.WINDOW_PRESETS["bone"] == (1800, 400)
    assert I.WINDOW_PRESETS["brain"] == (80, 40)
    assert I.WINDOW_PRESETS["liver"] == (150, 30)
    assert I.WINDOW_PRESETS["mediastinum"] == (350, 50)


def test_apply_window_hand_values():
    hu = np.array([-1000, -160, 40, 140, 240, 3000], np.int16)
    out = I.apply_window(hu, "soft_tissue")  # [-160, 240]
    np.testing.assert_allclose(out, [0, 0, 0.5, 0.75, 1, 1], atol=1e-7)
    out = I.apply_window(np.array([-600.0, -1350.0, 150.0]), (1500, -600))
    np.testing.assert_allclose(out, [0.5, 0, 1], atol=1e-7)
    assert out.dtype == np.float32


@pytest.mark.parametrize("bad", ["nope", (0, 40), (-5, 40), (400,), (np.nan, 1)])
def test_bad_window(bad):
    with pytest.raises(ValueError):
        I.apply_window(np.zeros(3), bad)


def test_nan_inf_rejected():
    img = np.ones((4, 4), np.float32)
    img[1, 1] = np.nan
    for fn in (lambda: I.apply_window(img), lambda: I.percentile_normalize(img),
               lambda: I.to_unit_range(img), lambda: I.prepare_slice(img, 32)):
        with pytest.raises(ValueError, match="NaN or inf"):
            fn()
    img[1, 1] = np.inf
    with pytest.raises(ValueError):
        I.prepare_slices(np.stack([img, img]), 32)


# ----------------------------------------------------------------------------- percentiles
def test_percentile_normalize_whole_and_foreground():
    x = np.arange(1001, dtype=np.float32)  # percentiles of 0..1000 are 10 * p
    lo, hi = I.percentile_bounds(x, 0.5, 99.5)
    assert (lo, hi) == pytest.approx((5.0, 995.0))
    out = I.percentile_normalize(x)
    assert out[0] == 0 and out[-1] == 1 and out[500] == pytest.approx(0.5)
    # foreground = non-zero voxels: a large zero background must not move the bounds
    y = np.concatenate([np.zeros(5000, np.float32), np.arange(1, 101, dtype=np.float32)])
    lo_all, _ = I.percentile_bounds(y, 0.5, 99.5, "all")
    lo_fg, hi_fg = I.percentile_bounds(y, 0.5, 99.5, "foreground")
    assert lo_all == 0.0
    assert lo_fg == pytest.approx(1 + 0.005 * 99) and hi_fg == pytest.approx(1 + 0.995 * 99)
    mask = y > 50
    assert I.percentile_bounds(y, 0, 100, mask) == (51.0, 100.0)
    with pytest.raises(ValueError):
        I.percentile_bounds(y, 0, 100, mask[:10])
    with pytest.raises(ValueError):
        I.percentile_bounds(y, 60, 40)


def test_to_unit_range_auto_rules():
    u8 = np.array([[0, 255, 51]], np.uint8)
    np.testing.assert_allclose(I.to_unit_range(u8), [[0, 1, 0.2]])
    f = np.array([[0.0, 0.25, 1.0]])
    np.testing.assert_array_equal(I.to_unit_range(f), f.astype(np.float32))
    u16 = np.array([[100, 300, 200]], np.uint16)  # not uint8, not in [0,1]: min-max
    np.testing.assert_allclose(I.to_unit_range(u16), [[0, 1, 0.5]])
    assert I.to_unit_range(np.full((3, 3), 7.0)).max() == 0  # constant image
    np.testing.assert_allclose(I.to_unit_range(np.array([40.0]), "soft_tissue"), [0.5])
    with pytest.raises(ValueError):
        I.to_unit_range(np.array([2.0]), "none")
    with pytest.raises(ValueError):
        I.to_unit_range(np.array(["a"]))


# ----------------------------------------------------------------------------- SAM 2 input
@pytest.mark.parametrize("hw", [(37, 53), (96, 64), (128, 128), (300, 171)])
def test_matches_torchvision_resize_and_normalize(hw):
    tv = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(hw[0])
    img = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0  # ToTensor
    ref = tv.Normalize(I.IMAGENET_MEAN, I.IMAGENET_STD)(tv.Resize((64, 64))(x))
    out = I.prepare_slice(img, 64)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_resize_is_antialiased_like_torchvision():
    # downscaling by 4 with antialias differs from plain bilinear; we must equal the antialiased one
    rng = np.random.default_rng(0)
    img = rng.random((128, 128)).astype(np.float32)
    out = I.prepare_slice(img, 32)
    x = torch.from_numpy(img)[None, None].expand(1, 3, -1, -1)
    aa = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)[0]
    plain = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out, (aa - MEAN) / STD, atol=1e-6, rtol=0)
    assert (out - (plain - MEAN) / STD).abs().max() > 1e-2


def test_grayscale_becomes_three_equal_channels_and_values():
    img = np.full((10, 20), 255, np.uint8)
    out = I.prepare_slice(img, 16)
    expect = (1.0 - torch.tensor(I.IMAGENET_MEAN)) / torch.tensor(I.IMAGENET_STD)
    torch.testing.assert_close(out[:, 5, 5], expect)


def test_batched_equals_single_and_volume_wide_scaling():
    rng = np.random.default_rng(1)
    stack = rng.normal(100, 30, (5, 40, 30)).astype(np.float32)
    batch = I.prepare_slices(stack, 32, intensity="soft_tissue", chunk=2)
    assert batch.shape == (5, 3, 32, 32)
    for i in range(5):
        torch.testing.assert_close(batch[i], I.prepare_slice(stack[i], 32, intensity="soft_tissue"))
    # percentile normalisation is computed over the whole stack, not per slice
    stack[0] *= 0.1
    b = I.prepare_slices(stack, 32, intensity="percentile")
    s = I.prepare_slice(stack[0], 32, intensity="percentile")
    assert not torch.allclose(b[0], s)


def test_chunked_encoding_with_volume_scaler_equals_whole_stack():
    rng = np.random.default_rng(4)
    vol = rng.gamma(2.0, 100.0, (7, 24, 20)).astype(np.float32)
    whole = I.prepare_slices(vol, 16, intensity="percentile_fg")
    scaler = I.volume_scaler(vol, "percentile_fg")
    parts = torch.cat([I.prepare_slices(vol[i : i + 3], 16, intensity=scaler) for i in range(0, 7, 3)])
    torch.testing.assert_close(parts, whole)
    u16 = rng.integers(0, 4000, (3, 8, 8)).astype(np.uint16)
    lo, hi = u16.min(), u16.max()
    np.testing.assert_allclose(I.volume_scaler(u16)(u16[:1]), (u16[:1] - lo) / (hi - lo), rtol=1e-6)
    with pytest.raises(ValueError):
        I.volume_scaler(vol, "no_such_window")
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        I.prepare_slices(vol, 16, intensity=lambda a: a * 0 + 2.0)


def test_shape_errors():
    with pytest.raises(ValueError):
        I.prepare_slice(np.zeros((4, 4, 4)), 16)
    with pytest.raises(ValueError):
        I.prepare_slices(np.zeros((4, 4)), 16)
    with pytest.raises(ValueError):
        I.prepare_slice(np.zeros((0, 4)), 16)


def test_pad_mode_geometry_and_padding_value():
    img = np.ones((50, 100), np.float32)  # wide image: content 32 x 64 in a 64 x 64 input
    assert I.content_hw((50, 100), 64, "pad") == (32, 64)
    out = I.prepare_slice(img, 64, mode="pad", pad_value=-7.0)
    assert torch.all(out[:, 32:, :] == -7.0)
    expect = (1.0 - torch.tensor(I.IMAGENET_MEAN)) / torch.tensor(I.IMAGENET_STD)
    torch.testing.assert_close(out[:, 31, 63], expect)
    assert I.content_hw((99, 33), 64, "pad") == (64, 21)  # int(33 * 64 / 99 + 0.5)


def test_pil_bicubic_option_matches_pil():
    from PIL import Image

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (40, 30), dtype=np.uint8)
    out = I.prepare_slice(img, 64, resample="pil_bicubic")
    ref = np.asarray(Image.fromarray(img).resize((64, 64), Image.BICUBIC), np.float32) / 255.0
    ref_t = (torch.from_numpy(ref)[None].expand(3, -1, -1) - MEAN) / STD
    torch.testing.assert_close(out, ref_t, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- inverse
def test_to_source_stretch_equals_sam2_postprocess():
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(2, 1, 16, 16)).astype(np.float32))
    out = I.to_source(logits, (37, 23))
    ref = F.interpolate(logits, (37, 23), mode="bilinear", align_corners=False)
    assert out.shape == (2, 1, 37, 23)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("hw", [(40, 100), (100, 40), (64, 64), (17, 90)])
def test_round_trip_masks(hw):
    # a mask brought to the model grid and back must be recovered (up to a 1-pixel rim)
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 < 1
    for mode in ("stretch", "pad"):
        ch, cw = I.content_hw(hw, 128, mode)
        m = torch.from_numpy(mask.astype(np.float32))[None, None]
        model = F.interpolate(m, (ch, cw), mode="bilinear", align_corners=False)
        model = F.pad(model, (0, 128 - cw, 0, 128 - ch))
        back = I.to_source(model[0, 0] * 2 - 1, hw, mode) > 0
        assert back.shape == hw
        err = (back.numpy() != mask).sum()
        assert err <= 0.1 * mask.sum(), (mode, err)


def test_to_source_pad_lowres_logits():
    # low-res logits (size/4) of a padded input: upsampled to size, cropped, resized
    logits = torch.zeros(1, 32, 32)
    logits[:, :16, :] = 5.0  # content of a (50 x 100) image occupies the top 64 x 128 of 128 x 128
    logits[:, 16:, :] = -5.0
    out = I.to_source(logits, (50, 100), mode="pad", size=128)
    assert out.shape == (1, 50, 100)
    assert (out > 0).float().mean() > 0.97


def test_coords_round_trip():
    pts = np.array([[10.0, 5.0], [99.0, 49.0]])
    m = I.coords_to_model(pts, (50, 100), 1024)
    np.testing.assert_allclose(m, [[102.4, 102.4], [1013.76, 1003.52]])
    for mode in ("stretch", "pad"):
        np.testing.assert_allclose(I.coords_to_source(I.coords_to_model(pts, (50, 100), 64, mode), (50, 100), 64, mode),
                                   pts)
    np.testing.assert_allclose(I.coords_to_model(pts, (50, 100), 64, "pad"), pts * 0.64)
