"""Clicks read through boxes for box-trained decoders (model/click_box.py): the pure selection rule, and
LiteMedSAM's decoder answering a click with a mask where, given the click itself, it returns nothing."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import medmem
from medmem.engine.image import ImagePredictor
from medmem.model.click_box import candidate_boxes, choose_box, needs_box


def test_only_click_prompts_without_a_box_need_one():
    labels = torch.tensor([[1, 0], [2, 3], [0, -1], [2, 3]])
    labels[3] = torch.tensor([1, 1])
    assert needs_box(labels).tolist() == [True, False, False, True]


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
    # no candidate qualifies: the highest predicted IoU
    assert choose_box(masks[2:], scores[2:], coords[:1], torch.tensor([1]), 256) == 0


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


def test_a_click_prompt_propagates_through_a_volume(lite_ft):
    img, gt = _disc_image()
    vol = np.stack([img] * 6)
    from medmem.engine.volume import VolumeSession

    vs = VolumeSession(lite_ft, vol)
    vs.add_prompt(2, 1, points=[[90, 70]], labels=[1])
    masks = {s: m[1] for s, m in vs.propagate()}
    assert sorted(masks) == list(range(6))
    assert min(_dice(masks[s], gt) for s in range(6)) > 0.85
