"""2D prompted segmentation: shapes, dtypes, batching, bad input, autocast path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import medmem


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    p = medmem.ImagePredictor(medmem.build_model("test_tiny", device="cpu"))
    img = np.zeros((90, 120), np.uint16)
    img[20:70, 30:100] = 3000
    p.set_image(img)
    return p


@pytest.mark.parametrize("image", [
    np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8),
    np.random.default_rng(0).integers(0, 255, (64, 80), dtype=np.uint8),
    np.random.default_rng(0).integers(0, 4000, (64, 80), dtype=np.uint16),
    np.random.default_rng(0).normal(size=(64, 80)).astype(np.float32),
    np.random.default_rng(0).random((64, 80, 1)),
])
def test_dtypes_and_channels(image):
    p = medmem.ImagePredictor(medmem.build_model("test_tiny", device="cpu"))
    p.set_image(image)
    masks, scores, logits = p.predict(box=[5, 5, 60, 50])
    assert masks.shape == (3, 64, 80) and masks.dtype == bool
    assert scores.shape == (3,) and logits.shape == (3, 32, 32)
    m1, s1, l1 = p.predict(point_coords=[[30, 20]], point_labels=[1], multimask_output=False)
    assert m1.shape == (1, 64, 80) and s1.shape == (1,)


def test_batched_boxes_equal_one_by_one(predictor):
    boxes = np.array([[10, 10, 60, 50], [30, 20, 110, 80], [0, 0, 119, 89]])
    mb, sb, lb = predictor.predict(box=boxes, multimask_output=False, return_logits=True)
    assert mb.shape == (3, 1, 90, 120)
    for i, b in enumerate(boxes):
        m, s, lg = predictor.predict(box=b, multimask_output=False, return_logits=True)
        np.testing.assert_allclose(mb[i], m, atol=1e-4)
        np.testing.assert_allclose(sb[i], s, atol=1e-5)


def test_mask_input_roundtrip(predictor):
    _, _, low = predictor.predict(point_coords=[[60, 40]], point_labels=[1], multimask_output=False)
    m, s, _ = predictor.predict(point_coords=[[60, 40]], point_labels=[1], mask_input=low, multimask_output=False)
    assert m.shape == (1, 90, 120)


@pytest.mark.parametrize("kwargs,match", [
    (dict(box=[50, 10, 10, 40]), "< x0"),
    (dict(box=[10, 50, 40, 10]), "< y0"),
    (dict(box=[200, 200, 300, 300]), "wholly outside"),
    (dict(box=[-50, -40, -1, -2]), "wholly outside"),
    (dict(box=[0, 0, 10]), r"x0, y0, x1, y1"),
    (dict(box=[0, np.nan, 10, 10]), "NaN"),
    (dict(point_coords=[[10, 10], [20, 20]], point_labels=[1]), "does not match"),
    (dict(point_coords=[[10, 10]]), "together"),
    (dict(point_coords=[[500, 10]], point_labels=[1]), "outside"),
    (dict(point_coords=[[10, 10]], point_labels=[7]), "background"),
    (dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0)), "empty"),
    (dict(mask_input=np.zeros((1, 64, 64))), "mask_input must be"),
    (dict(mask_input=np.zeros((32, 32))), "mask_input must be"),
    (dict(), "at least one prompt"),
])
def test_bad_prompts(predictor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        predictor.predict(**kwargs)


@pytest.mark.parametrize("image,match", [
    (np.zeros((0, 10)), "empty"),
    (np.zeros((2, 3, 16, 16)), r"\(H, W\)"),
    (np.zeros((8, 16, 16)), r"\(H, W\)"),
    (np.full((16, 16), np.nan, np.float32), "NaN"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or inf"),
    (np.array([["a", "b"]]), "numeric"),
])
def test_bad_images(image, match):
    p = medmem.ImagePredictor(medmem.build_model("test_tiny", device="cpu"))
    with pytest.raises(ValueError, match=match):
        p.set_image(image)


def test_predict_before_set_image():
    p = medmem.ImagePredictor(medmem.build_model("test_tiny", device="cpu"))
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(box=[0, 0, 5, 5])


def test_bf16_autocast_path_on_cpu():
    """The CUDA path (bf16 autocast keyed on the device type) exercised on the CPU: close to fp32."""
    torch.manual_seed(0)
    model = medmem.build_model("test_tiny", device="cpu")
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    ref = medmem.ImagePredictor(model)
    ref.set_image(img)
    bf = medmem.ImagePredictor(model, dtype=torch.bfloat16)
    bf.set_image(img)
    assert bf._features.high_res[0].dtype == torch.bfloat16  # autocast really ran (conv_s0 output)
    _, s32, l32 = ref.predict(box=[5, 5, 50, 50], multimask_output=False)
    _, s16, l16 = bf.predict(box=[5, 5, 50, 50], multimask_output=False)
    assert l16.dtype == np.float32
    corr = np.corrcoef(l32.ravel(), l16.ravel())[0, 1]
    assert corr > 0.98, corr
    assert abs(float(s32[0]) - float(s16[0])) < 0.05


def test_no_hard_coded_cuda():
    """Nothing in the package calls .cuda() or names a CUDA device directly."""
    import pathlib
    import re

    root = pathlib.Path(medmem.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py") if re.search(r"\.cuda\(\)|['\"]cuda:0['\"]", p.read_text(encoding="utf-8"))]
    assert not offenders, offenders
