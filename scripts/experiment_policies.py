#!/usr/bin/env python
"""Memory policies compared (issue 6, item 5): 3D propagation and One-Prompt image sets.

3D: every 3D case of the MedBank-mini test split, every label: a box on the largest slice, propagate
both ways with fifo / self_sorting / confidence; mean Dice per policy.
Image sets: per 2D task, the held-out (val + test) images of that task as one set; a box on the first image only,
every other image segmented from memory (self_sorting vs confidence); mean Dice over the unprompted images.

    python scripts/experiment_policies.py --checkpoint W.safetensors --data runs/medbank/manifest.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

import medmem
from medmem.data.prompt_sim import mask_to_box
from medmem.data.synth import load_manifest
from medmem.engine.image_set import ImageSetSession
from medmem.engine.volume import VolumeSession
from medmem.eval.metrics import dice

POLICY_KW = {"fifo": {}, "self_sorting": dict(capacity=16, iou_threshold=0.5), "confidence": dict(capacity=64, threshold=0.3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--all-splits", action="store_true",
                    help="use every case of --data (for a set generated with another seed than the training set)")
    a = ap.parse_args()
    model = medmem.build_model(checkpoint=a.checkpoint, device="cpu")
    splits = ("train", "val", "test") if a.all_splits else ("val", "test")
    cases = [c for sp in splits[-1:] if not a.all_splits for c in load_manifest(a.data, split=sp)] or \
        [c for sp in splits for c in load_manifest(a.data, split=sp)]
    held_out_2d = [c for sp in splits for c in load_manifest(a.data, split=sp) if c.dims == 2]
    res3d = defaultdict(list)
    for c in (c for c in cases if c.dims == 3):
        for lab in sorted(int(v) for v in np.unique(c.label) if v != 0):
            gt = c.label == lab
            s = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
            for pol, kw in POLICY_KW.items():
                sess = VolumeSession(model, c.image, policy=pol, policy_kwargs=kw)
                sess.add_prompt(s, 1, box=mask_to_box(gt[s]))
                for _ in sess.propagate("both"):
                    pass
                res3d[pol].append(dice(sess.masks(1), gt))
    sets = defaultdict(list)
    by_task = defaultdict(list)
    for c in held_out_2d:  # image sets: the held-out (val + test) images of each 2D task
        by_task[c.task].append(c)
    for task, cs in sorted(by_task.items()):
        lab = int(sorted(v for v in np.unique(cs[0].label) if v != 0)[0])
        cs = [c for c in cs if (c.label == lab).any()]
        if len(cs) < 2:
            continue
        for pol in ("prompt_only", "self_sorting", "confidence"):
            if pol == "prompt_only":  # baseline: memory = the prompted image only (no bank updates)
                sess = ImageSetSession(model, [c.image for c in cs], policy="confidence", update_bank=False)
            else:
                sess = ImageSetSession(model, [c.image for c in cs], policy=pol, policy_kwargs=POLICY_KW[pol])
            sess.add_prompt(0, 1, box=mask_to_box(cs[0].label == lab))
            out = dict(sess.propagate())
            sets[pol].append(float(np.mean([dice(out[i][1], cs[i].label == lab) for i in range(1, len(cs))])))
    result = {
        "propagation_3d": {p: dict(mean_dice=round(float(np.mean(v)), 4), objects=len(v)) for p, v in res3d.items()},
        "one_prompt_sets": {p: dict(mean_dice=round(float(np.mean(v)), 4), tasks=len(v)) for p, v in sets.items()},
    }
    print(json.dumps(result, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
