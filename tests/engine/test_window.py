"""Mask windows (engine/window.py): masks stay inside the prompt box (grown) and near the previous slice's mask."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

import medmem
from medmem.engine.window import clip_to_window, grow_box, mask_box, prompt_windows
from medmem.model import NO_OBJ_SCORE


def test_grow_box_mask_box_and_clip():
    assert grow_box([10, 20, 29, 39], 0.1, 64) == [8.0, 18.0, 31.0, 41.0]  # 2 px floor on a 20 px side
    assert grow_box([0, 0, 63, 63], 0.5, 64) == [0.0, 0.0, 63.0, 63.0]  # within the image
    lg = torch.full((1, 1, 16, 16), -5.0)
    lg[..., 4:8, 2:6] = 3.0  # low-res cells 4 model pixels wide (image side 64)
    assert mask_box(lg, 64) == [8.0, 16.0, 23.0, 31.0]
    assert mask_box(torch.full((16, 16), -1.0), 64) is None
    out = clip_to_window(torch.ones(1, 1, 16, 16), [8.0, 16.0, 23.0, 31.0], 64)
    assert (out[..., 4:8, 2:6] == 1).all() and int((out == 1).sum()) == 16 and (out[..., :4, :] == NO_OBJ_SCORE).all()
    pts = (torch.tensor([[[8.0, 16.0], [23.0, 31.0]]]), torch.tensor([[2, 3]]))
    assert prompt_windows(pts, 0.0, 64) is None and prompt_windows(pts, 0.5, 64) == [[0.0, 8.0, 31.0, 39.0]]
    assert prompt_windows((pts[0], torch.tensor([[1, 1]])), 0.5, 64) is None  # clicks only: no window


def test_image_predictor_keeps_masks_inside_the_grown_box():
    torch.manual_seed(0)
    model = medmem.build_model("test_tiny", device="cpu").eval()
    img = np.random.default_rng(0).integers(0, 255, (128, 128)).astype(np.uint8)
    box = [40.0, 50.0, 69.0, 79.0]
    free = medmem.ImagePredictor(model)
    free.set_image(img)
    wide = free.predict(box=box, multimask_output=False, return_logits=True)[0][0]
    model.cfg = replace(model.cfg, mask_window=0.1)
    pred = medmem.ImagePredictor(model)
    pred.set_image(img)
    got = pred.predict(box=box, multimask_output=False, return_logits=True)[0][0]
    inside = np.zeros_like(got, bool)
    inside[43:87, 33:77] = True  # the box grown by 3 px (10 % of 30), plus one low-res cell (4 px) of slack
    assert (got[~inside] <= 0).all() and (wide[~inside] > 0).any()  # without the window it leaks there
    core = np.zeros_like(got, bool)
    core[50:80, 40:70] = True
    assert np.allclose(got[core], wide[core], atol=1e-4)  # nothing changes inside the box
