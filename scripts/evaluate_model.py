#!/usr/bin/env python
"""Evaluate a model the way the README's main job uses it: one box, propagate, compare.

- Real sample: the bundled MNI152 T1 with its brain mask; a box around the brain on the axial
  slice where the mask is largest; propagation both ways (each memory policy); Dice, NSD@2 mm, HD95.
- MedBank-mini held-out cases (test split, every label of every task): 3D cases as in the real
  sample (box on the largest slice, propagate); 2D cases through the image predictor with the box.

    python scripts/evaluate_model.py --checkpoint src/medmem/assets/default_model.safetensors \\
        --data runs/medbank/manifest.json --out docs/default_model_eval.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import medmem
from medmem.atomic import atomic_path
from medmem.eval.metrics import dice, hd95, nsd
from medmem.data.prompt_sim import mask_to_box
from medmem.eval.one_box import evaluate_manifest, largest_slice, propagate_from_box
from medmem.io import read_volume, sample_path


def segment_3d(model, image, gt, policy="fifo", intensity="auto"):
    """Box on the largest slice of gt (axis 0), propagate both ways → (S, H, W) bool, seconds, slice."""
    s = largest_slice(gt)
    opts = {} if policy == "fifo" else dict(capacity=16)
    pred, secs, _ = propagate_from_box(model, image, s, mask_to_box(gt[s]), policy, intensity,
                                       session_kwargs=dict(policy_kwargs=opts))
    return pred, secs, s


def evaluate_mni(model) -> dict:
    vol = read_volume(sample_path("mni152_t1"))
    gt = read_volume(sample_path("mni152_brain_mask")).array > 0
    out = {"case": "MNI152 2009a T1 (2 mm), brain mask", "slices": int(vol.array.shape[0])}
    sp = vol.spacing_zyx
    for policy in ("fifo", "self_sorting", "confidence"):
        pred, secs, s = segment_3d(model, vol.array, gt, policy)
        out[policy] = dict(dice=round(dice(pred, gt), 4), nsd_2mm=round(nsd(pred, gt, sp, 2.0), 4),
                           hd95_mm=round(hd95(pred, gt, sp), 2), seconds=round(secs, 2), prompt_slice=s,
                           box=list(mask_to_box(gt[s])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--config", default=None)
    ap.add_argument("--data", default=None, help="MedBank-mini manifest for the held-out synthetic tasks")
    ap.add_argument("--max-per-task", type=int, default=4)
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-mni", action="store_true", help="skip the bundled MNI152 sample (synthetic tasks only)")
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.checkpoint.endswith("checkpoint.pt"):  # a trainer checkpoint of our own run (trusted, local)
        from medmem.checkpoint import load_weights
        from medmem.config import SAM2Config

        ck = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
        model = medmem.SAM2Model(SAM2Config.from_dict(ck["model_config"])).eval()
        load_weights(model, ck["model"])
        print(f"trainer checkpoint at step {ck['step']}")
    else:
        model = medmem.build_model(a.config, checkpoint=a.checkpoint, device="cpu")
    res = {"checkpoint": a.checkpoint, "model": model.cfg.name}
    if not a.no_mni:
        res["mni152"] = evaluate_mni(model)
        print(json.dumps(res["mni152"]), flush=True)
    if a.data:
        res["medbank_mini_test"] = evaluate_manifest(model, a.data, a.max_per_task)
        print(json.dumps(res["medbank_mini_test"]), flush=True)
    if a.out:
        with atomic_path(a.out) as tmp:
            tmp.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
