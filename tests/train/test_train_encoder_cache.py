"""The frozen-encoder feature cache used to train medmem_lite_256's memory on a CPU."""
import torch

from medmem.config import get_config
from medmem.model import SAM2Model
from medmem.train.step import FrozenEncoderCache, encode


def test_cache_returns_the_encoder_outputs_and_persists(tmp_path):
    torch.manual_seed(0)
    model = SAM2Model(get_config("test_tiny")).eval()
    imgs = torch.randn(3, 3, 128, 128)
    ref = encode(model, imgs, no_grad_trunk=True)
    cache = FrozenEncoderCache(8, str(tmp_path))
    a = encode(model, imgs, no_grad_trunk=True, cache=cache)
    b = encode(model, imgs[[2, 0]], no_grad_trunk=True, cache=cache)
    assert (cache.misses, cache.hits) == (3, 2)
    torch.testing.assert_close(a.vision_feats, ref.vision_feats)
    torch.testing.assert_close(b.vision_feats, ref.vision_feats[[2, 0]])
    torch.testing.assert_close(b.high_res[0], ref.high_res[0][[2, 0]])
    fresh = FrozenEncoderCache(8, str(tmp_path))  # a later run reads the files, never the encoder
    model.image_encoder.forward = None
    c = encode(model, imgs, no_grad_trunk=True, cache=fresh)
    assert (fresh.misses, fresh.hits) == (0, 3)
    torch.testing.assert_close(c.vision_feats, ref.vision_feats)


def test_cache_is_bounded():
    torch.manual_seed(0)
    model = SAM2Model(get_config("test_tiny")).eval()
    cache = FrozenEncoderCache(2)
    encode(model, torch.randn(4, 3, 128, 128), no_grad_trunk=True, cache=cache)
    assert len(cache._store) == 2
