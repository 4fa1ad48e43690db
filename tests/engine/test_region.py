"""Region tracking (engine/region.py): the geometry of a region, and box tracking that encodes only a region
around the object on propagated slices."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import medmem
from medmem.engine.region import Region, box_inputs, region_around
from medmem.eval.metrics import dice
from medmem.model import NO_OBJ_SCORE


def test_region_side_scale_and_placement():
    small = region_around([100, 100, 119, 129], 256, 128, 2.0)  # 20 x 30 px: side 128, scale 1, centred
    assert (small.side, small.scale) == (128.0, 1.0)
    assert (small.x0, small.y0) == (46.0, 51.0)
    mid = region_around([60, 60, 139, 139], 256, 128, 2.0)  # 80 px: side 160, shrunk to 128
    assert mid.side == 160.0 and mid.scale == pytest.approx(0.8) and (mid.x0, mid.y0) == (20.0, 20.0)
    big = region_around([5, 5, 240, 250], 256, 128, 2.0)  # larger than the image: the whole image
    assert (big.x0, big.y0, big.side) == (0.0, 0.0, 256.0)
    edge = region_around([0, 240, 9, 255], 256, 128, 2.0)  # at a corner: shifted inside the image
    assert (edge.x0, edge.y0, edge.side) == (0.0, 128.0, 128.0)


def test_region_coordinates_crop_and_paste_agree():
    """A bright square's box mapped into a region lies on the square in the region's crop (scale 1 and 0.5),
    and pasting the crop back restores the image inside the region, NO_OBJ_SCORE outside."""
    img = torch.zeros(1, 1, 256, 256)
    img[..., 90:110, 150:170] = 1.0  # rows 90..109, columns 150..169
    for region in (Region(100.0, 40.0, 128.0, 128), Region(64.0, 0.0, 192.0, 96)):
        crop = region.crop(img)[0, 0]
        (tl, br), _ = box_inputs(region, [150, 90, 169, 109], "cpu")[0][0], None
        ys, xs = torch.nonzero(crop > 0.5, as_tuple=True)
        assert abs(float(xs.min()) - float(tl[0])) <= 1 and abs(float(xs.max()) - float(br[0])) <= 1
        assert abs(float(ys.min()) - float(tl[1])) <= 1 and abs(float(ys.max()) - float(br[1])) <= 1
    region = Region(100.0, 40.0, 128.0, 128)
    back = region.paste(region.crop(img), 256, 256)[0, 0]
    assert torch.equal(back[40:168, 100:228], img[0, 0, 40:168, 100:228])
    assert (back[:40] == NO_OBJ_SCORE).all() and (back[:, :100] == NO_OBJ_SCORE).all()
    half = region.paste(region.crop(img), 256, 64)[0, 0]  # onto a coarser grid: 4 model pixels per cell
    assert half.shape == (64, 64) and (half[10:42, 25:57] != NO_OBJ_SCORE).all() and (half[:10] == NO_OBJ_SCORE).all()


@pytest.fixture(scope="module")
def lite_model():
    return medmem.build_model("medmem_lite_256", pretrained=True, device="cpu")


def _ellipsoid():
    z, y, x = np.mgrid[:16, :64, :64]
    r = ((z - 6) / 3.6) ** 2 + ((y - 30) / 8) ** 2 + ((x - 34) / 7) ** 2
    vol = np.where(r < 1, 200, 40).astype(np.uint8)
    vol += np.random.default_rng(0).integers(0, 20, vol.shape).astype(np.uint8)
    return vol, r < 1


def _with(model, **kw):
    m = medmem.build_model("medmem_lite_256", pretrained=False, device="cpu")
    m.load_state_dict(model.state_dict())
    m.cfg = replace(model.cfg, **kw)
    return m.eval()


def test_region_of_the_whole_slice_equals_whole_slice_tracking(lite_model):
    """With the region as large as the slice (region_size = the model's input), region tracking decodes the
    same features the same way as whole-slice tracking: the same logits on every slice."""
    vol, _ = _ellipsoid()
    out = []
    for m in (lite_model, _with(lite_model, region_size=256, region_context=100.0)):
        sess = medmem.VolumeSession(m, vol)
        sess.add_prompt(6, 1, box=[26.0, 22.0, 42.0, 38.0])
        list(sess.propagate("both"))
        out.append((torch.stack([sess.objects[1].results[s].low_res.float() for s in sorted(sess.objects[1].results)]),
                    sess.masks(1), sess.features))
    (lw, mw, fw), (lr, mr, fr) = out
    assert fr.encoded_regions > 0 and fw.encoded_regions == 0
    assert lw.shape == lr.shape and float((lw - lr).abs().max()) < 1e-2
    assert (mw != mr).sum() <= 5


def test_region_tracking_follows_the_object_and_encodes_only_regions(lite_model):
    """region_size 128: the ellipsoid on slices 3..9 is followed to its ends and no further; only the prompted
    slice is encoded whole, every tracked slice (and the prototypes) as a 128² region."""
    vol, gt = _ellipsoid()
    m = _with(lite_model, region_size=128)
    sess = medmem.VolumeSession(m, vol)
    sess.add_prompt(6, 1, box=[26.0, 22.0, 42.0, 38.0])
    list(sess.propagate("both"))
    pred = sess.masks(1)
    present = gt.reshape(16, -1).any(1)
    assert dice(pred, gt) > 0.8 and not pred[~present].any()
    assert sess.features.encoded == 1
    tracked = [s for s, r in sess.objects[1].results.items() if not r.prompted and r.iou > 0]
    assert sess.features.encoded_regions == len(tracked) + 1  # + the prompted slice's region (prototypes)


def _drifting_cylinder(n: int = 20, after: int = 6):
    """A cylinder on slices 0..n-1 whose intensity drifts from 220 to 50 (through its ring's 120), inside a
    ring that goes on for `after` more slices without it."""
    z, y, x = np.mgrid[:n + after, :64, :64]
    r = np.sqrt((y - 32) ** 2 + (x - 32) ** 2)
    inner = (r < 8) & (z < n)
    ring = (r < 14) & ~inner
    v = np.where(inner, 220 - 170 * np.minimum(z / (n - 1), 1), np.where(ring, 120, 30)).astype(np.float32)
    v += np.random.default_rng(0).normal(0, 4, v.shape)
    return np.clip(v, 0, 255).astype(np.uint8), inner


def test_prototypes_follow_an_object_whose_look_drifts(lite_model):
    """prototype_momentum: with the prompted slice's prototypes only, the cylinder is declared absent once it
    looks like its ring (slice 9 on); with prototypes that follow it (0.3), it is tracked to its last slice,
    and still not beyond (the ring alone is absent)."""
    vol, gt = _drifting_cylinder()
    lengths = {}
    for a in (0.0, 0.3):
        sess = medmem.VolumeSession(_with(lite_model, region_size=128, prototype_momentum=a), vol)
        sess.add_prompt(1, 1, box=[24.0, 24.0, 40.0, 40.0])
        list(sess.propagate("both"))
        pred = sess.masks(1)
        lengths[a] = int(pred.reshape(len(pred), -1).any(1).sum())
        if a > 0:
            assert dice(pred, gt) > 0.9 and not pred[20:].any()
    assert lengths[0.0] < 12 and lengths[0.3] == 20
