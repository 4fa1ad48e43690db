"""Clicks read through boxes for box-trained decoders (model/click_box.py): the pure selection rule, and
LiteMedSAM's decoder answering a click with a mask where, given the click itself, it returns nothing."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import medmem
from medmem.engine.image import ImagePredictor
from medmem.model.click_box import adjusted_boxes, candidate_boxes, choose_box, has_clicks, mask_box, split_prompt


def test_prompts_with_clicks_are_read_and_box_corners_split_off():
    labels = torch.tensor([[1, 0, -1], [2, 3, -1], [0, -1, -1], [2, 3, 1]])
    assert has_clicks(labels).tolist() == [True, False, True, True]
    coords = torch.tensor([[10.0, 20.0], [50.0, 60.0], [30.0, 40.0]])
    box, c, lab = split_prompt(coords, labels[3])
    assert box.tolist() == [10, 20, 50, 60] and c.tolist() == [[30, 40]] and lab.tolist() == [1]


def test_a_prior_box_grows_to_positive_clicks_and_is_cut_past_negative_ones():
    box = torch.tensor([40.0, 40.0, 120.0, 120.0])
    grown = adjusted_boxes(box, torch.tensor([[150.0, 80.0]]), torch.tensor([1]), 256)
    assert grown.shape == (1, 4) and grown[0].tolist() == [40, 40, 154, 120]
    cut = adjusted_boxes(box, torch.tensor([[100.0, 60.0]]), torch.tensor([0]), 256)
    assert cut.shape == (5, 4)  # the box itself, then cut on the left, right, top, bottom
    assert cut[1, 0] == 104 and cut[2, 2] == 96 and cut[3, 1] == 64 and cut[4, 3] == 56
    two = adjusted_boxes(box, torch.tensor([[100.0, 60.0], [50.0, 110.0]]), torch.tensor([0, 0]), 256)
    assert two.shape[0] == 1 + 16 - 2  # every pair of cuts, less the two that leave no box
    # with the prior's mask: the cuts go past the mask's run through the click (columns 80-111, rows 40-79)
    m = torch.full((64, 64), -1.0)
    m[10:20, 20:28] = 1
    runs = adjusted_boxes(box, torch.tensor([[100.0, 60.0]]), torch.tensor([0]), 256, m)
    assert runs[1:].tolist() == [[115, 40, 120, 120], [40, 40, 76, 120], [40, 83, 120, 120]]  # bottom: no box left
    assert mask_box(torch.full((64, 64), -1.0), 256) is None
    m = torch.full((64, 64), -1.0)
    m[10:20, 30:40] = 1
    assert mask_box(m, 256).tolist() == [120, 40, 159, 79]


def test_candidates_hold_every_positive_click_and_stay_in_the_input():
    coords = torch.tensor([[10.0, 200.0], [60.0, 230.0], [250.0, 5.0]])
    labels = torch.tensor([1, 1, 0])
    boxes = candidate_boxes(coords, labels, 256)
    assert boxes.shape == (21, 4) and boxes.min() >= 0 and boxes.max() <= 255
    assert (boxes[:, 0] <= 10).all() and (boxes[:, 2] >= 60).all()
    assert (boxes[:, 1] <= 200).all() and (boxes[:, 3] >= 230).all()


def test_the_chosen_box_holds_the_positive_and_not_the_negative_click():
    masks = torch.full((3, 64, 64), -1.0)
    masks[0, 10:20, 10:20] = 1    # holds the positive click only: the answer, though its score is lowest
    masks[1, :, :] = 1            # holds both clicks
    masks[2, 40:50, 40:50] = 1    # holds neither
    scores = torch.tensor([0.2, 0.9, 0.8])
    coords = torch.tensor([[15.0 * 4, 15.0 * 4], [45.0 * 4, 45.0 * 4]])   # model pixels (256 over a 64 grid)
    assert choose_box(masks, scores, coords, torch.tensor([1, 0]), 256) == 0
    # no candidate satisfies every click: the most satisfied, then the highest predicted IoU
    assert choose_box(masks[2:], scores[2:], coords[:1], torch.tensor([1]), 256) == 0
    assert choose_box(masks[1:], scores[1:], coords, torch.tensor([1, 0]), 256) == 0


@pytest.fixture(scope="module")
def lite_ft():
    return medmem.build_model("medmem_lite_ft_256", pretrained=True, device="cpu")


def _disc_image():
    yy, xx = np.mgrid[:160, :160]
    gt = (yy - 70) ** 2 + (xx - 90) ** 2 < 22 ** 2
    rng = np.random.default_rng(0)
    img = (40 + 20 * rng.random((160, 160)) + 140 * gt).astype(np.float32)
    return img, gt


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_a_click_on_a_box_trained_decoder_finds_the_object(lite_ft):
    img, gt = _disc_image()
    p = ImagePredictor(lite_ft)
    p.set_image(img)
    masks, _, _ = p.predict(point_coords=[[90, 70]], point_labels=[1], multimask_output=False)
    assert _dice(masks[0], gt) > 0.85
    # the same decoder given the click itself (the rule off) returns (nearly) nothing: the rule is what works
    raw = ImagePredictor(medmem.build_model(replace(lite_ft.cfg, click_boxes=False), device="cpu"))
    raw.model.load_state_dict(lite_ft.state_dict())
    raw.set_image(img)
    masks, _, _ = raw.predict(point_coords=[[90, 70]], point_labels=[1], multimask_output=False)
    assert _dice(masks[0], gt) < 0.2


def _two_discs():
    yy, xx = np.mgrid[:160, :160]
    a = (yy - 70) ** 2 + (xx - 60) ** 2 < 20 ** 2
    b = (yy - 70) ** 2 + (xx - 112) ** 2 < 20 ** 2
    rng = np.random.default_rng(1)
    return (40 + 20 * rng.random((160, 160)) + 140 * (a | b)).astype(np.float32), a, b


def test_corrective_clicks_move_the_box_of_a_box_trained_decoder(lite_ft):
    """A box around two discs gives both; a negative click on one leaves the other. A box over half a disc gives
    half of it; a positive click on the rest gives the whole disc. Without the rule the clicks change nothing."""
    img, a, b = _two_discs()
    raw = ImagePredictor(medmem.build_model(replace(lite_ft.cfg, click_boxes=False), device="cpu"))
    raw.model.load_state_dict(lite_ft.state_dict())
    p = ImagePredictor(lite_ft)
    for pred in (p, raw):
        pred.set_image(img)
    both, _, _ = p.predict(box=[36, 46, 136, 94], multimask_output=False)
    assert _dice(both[0], a | b) > 0.85
    cut, _, _ = p.predict(box=[36, 46, 136, 94], point_coords=[[112, 70]], point_labels=[0], multimask_output=False)
    assert _dice(cut[0], a) > 0.85 and cut[0][b].mean() < 0.05
    unread, _, _ = raw.predict(box=[36, 46, 136, 94], point_coords=[[112, 70]], point_labels=[0],
                               multimask_output=False)
    assert _dice(unread[0], a) < 0.85
    half, _, _ = p.predict(box=[36, 46, 60, 94], multimask_output=False)
    assert _dice(half[0], a) < 0.8
    whole, _, _ = p.predict(box=[36, 46, 60, 94], point_coords=[[74, 70]], point_labels=[1], multimask_output=False)
    assert _dice(whole[0], a) > 0.85


def test_a_click_prompt_propagates_through_a_volume(lite_ft):
    img, gt = _disc_image()
    vol = np.stack([img] * 6)
    from medmem.engine.volume import VolumeSession

    vs = VolumeSession(lite_ft, vol)
    vs.add_prompt(2, 1, points=[[90, 70]], labels=[1])
    masks = {s: m[1] for s, m in vs.propagate()}
    assert sorted(masks) == list(range(6))
    assert min(_dice(masks[s], gt) for s in range(6)) > 0.85
    # a negative click on a tracked slice is a correction of its mask's box: a second disc there is cut away
    img2, a, b = _two_discs()
    vs = VolumeSession(lite_ft, np.stack([img2] * 4))
    vs.add_prompt(0, 1, box=[36, 46, 136, 94])
    list(vs.propagate())
    assert _dice(vs.mask(1, 2), a | b) > 0.85
    fixed = vs.add_prompt(2, 1, points=[[112, 70]], labels=[0])
    assert _dice(fixed, a) > 0.85 and fixed[b].mean() < 0.05


def test_box_tracking_takes_each_slice_from_its_nearest_prompted_slice(lite_ft):
    """Without memory, a slice between two prompted slices is tracked from the nearer one (forward from one
    before it, backward from one after it; ties forward), not all forward from the first."""
    img, gt = _disc_image()
    from medmem.engine.volume import VolumeSession

    vs = VolumeSession(lite_ft, np.stack([img] * 9))
    vs.add_prompt(1, 1, box=[66, 46, 114, 94])
    vs.add_prompt(7, 1, box=[66, 46, 114, 94])
    list(vs.propagate())
    d = vs.objects[1].tracked_dir
    assert [s for s in range(9) if s not in (1, 7) and d[s]] == [0, 5, 6]  # backward: from 1 (slice 0), from 7 (5, 6)
    assert all(_dice(vs.mask(1, s), gt) > 0.85 for s in range(9))
