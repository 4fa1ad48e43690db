"""SAMed-2 temporal adapter in the engine: centred windows, the released pairing as compatibility
mode, and single images that never crash."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medmem.config import TemporalAdapterConfig, get_config
from medmem.engine.features import FeatureCache, adapter_layout, encode_single
from medmem.engine.frames import FrameSource
from medmem.model import SAM2Model
from medmem.model.temporal_adapter import centred_clip, centred_window


def adapter_model(compat: bool = False, num_frames: int = 2) -> SAM2Model:
    base = get_config("test_tiny")
    depth = sum(base.trunk.stages)
    cfg = base.replace(temporal_adapter=TemporalAdapterConfig(blocks=tuple(range(depth)), num_frames=num_frames,
                                                              hidden_dim=8, samed2_compat=compat))
    torch.manual_seed(0)
    m = SAM2Model(cfg).eval()
    with torch.no_grad():  # a trained adapter: the zero-initialised projection made non-zero
        for name, p in m.named_parameters():
            if ".adapter.linear_up." in name:
                p.normal_(0, 0.5)
    return m


def volume(n=9, seed=0):
    return np.random.default_rng(seed).random((n, 32, 32)).astype(np.float32)


def feats_of(model, vol, i, chunk=4, reverse=False):
    fc = FeatureCache(model, FrameSource(vol, model.image_size, intensity="none"), chunk=chunk)
    return fc.get(i, reverse).vision_feats


def changed(model, i, j):
    """Do slice i's features change when slice j changes?"""
    v = volume()
    w = v.copy()
    w[j] = np.random.default_rng(99).random(w[j].shape)
    return not torch.allclose(feats_of(model, v, i), feats_of(model, w, i), atol=1e-6)


def test_centred_window_helpers():
    assert [centred_window(t) for t in (1, 2, 3, 4)] == [1, 3, 3, 5]
    assert centred_clip(0, 9, 3) == [0, 0, 1] and centred_clip(4, 9, 3) == [3, 4, 5]
    assert centred_clip(8, 9, 5) == [6, 7, 8, 8, 8]


def test_each_slice_sees_both_neighbours():
    m = adapter_model()
    assert adapter_layout(m) == ("centred", 3)
    for i in (3, 4):  # whatever the parity
        assert changed(m, i, i - 1) and changed(m, i, i + 1)
        assert not changed(m, i, i - 2) and not changed(m, i, i + 2)


def test_features_do_not_depend_on_chunks_or_direction():
    m = adapter_model()
    v = volume()
    a = feats_of(m, v, 5, chunk=3)
    b = feats_of(m, v, 5, chunk=8, reverse=True)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_compat_mode_keeps_the_released_pairing():
    m = adapter_model(compat=True)
    assert adapter_layout(m) == ("pairs", 2)
    assert changed(m, 4, 5) and not changed(m, 4, 3)   # aligned pairs (4, 5)


@pytest.mark.parametrize("compat", [False, True])
def test_single_images_never_crash(compat):
    import medmem
    from medmem.engine.image_set import ImageSetSession

    m = adapter_model(compat=compat)
    img = (volume(1)[0] * 255).astype(np.uint8)
    pred = medmem.ImagePredictor(m)
    pred.set_image(img)
    masks, _, _ = pred.predict(box=[4, 4, 20, 20], multimask_output=False)
    assert masks.shape[-2:] == img.shape
    s = ImageSetSession(m, [img, img[::-1].copy(), img.T.copy()], policy="confidence")
    s.add_prompt(0, 1, box=[4, 4, 20, 20])
    assert len(dict(s.propagate())) == 3


def test_a_single_image_is_a_static_clip():
    """Padding a single image = a clip of copies of it (what the engine feeds at a volume of one slice)."""
    m = adapter_model()
    x = FrameSource(volume(1), m.image_size, intensity="none").get([0])
    one = encode_single(m, x).vision_feats
    clip = m.encode_image(x.expand(3, -1, -1, -1).contiguous(), num_frames=3).vision_feats[1:2]
    torch.testing.assert_close(one, clip, rtol=1e-5, atol=1e-5)
