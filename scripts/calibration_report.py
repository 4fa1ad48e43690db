#!/usr/bin/env python
"""How well the confidence heads say how good a slice is (issue 13, item 4): predicted IoU vs the
actual IoU of each propagated slice, and predicted presence (object score > 0) vs the object being
on the slice, for a pretrained model on held-out synthetic 3D cases and on the bundled MRI.

Each object: a box on its largest slice, `segment_volume` both ways (the CLI's path, fifo); for
every slice the confidence row's predicted IoU and presence (object score > 0 and a non-empty
mask, as the engine reports it) against the ground truth.

    python scripts/calibration_report.py --model medmem_small_256 --data runs/mech/manifest.json \
        --out docs/calibration_medmem_small_256.json
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import medmem
from medmem.atomic import atomic_path
from medmem.data.prompt_sim import mask_to_box
from medmem.data.synth import load_manifest
from medmem.engine.pipeline import segment_volume
from medmem.io import Volume, read_volume, sample_path
from medmem.io.prompts import BoxPrompt, ObjectPrompts


def slice_rows(model, vol: Volume, gt: np.ndarray) -> list:
    """Per slice (D rows): predicted iou / object score / present, actual iou / present."""
    s = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    box = tuple(float(v) for v in mask_to_box(gt[s]))
    res = segment_volume(model, vol, [ObjectPrompts(id=1, prompts=[BoxPrompt(s, box)], axis=0)])
    pred = res.sliced == 1
    rows = []
    for r in res.confidence(1):
        z = r["slice"]
        if not r.get("segmented"):
            continue
        inter, union = (pred[z] & gt[z]).sum(), (pred[z] | gt[z]).sum()
        rows.append({"slice": z, "prompted": r["prompted"], "pred_iou": r["iou"], "object_score": r["object_score"],
                     "pred_present": bool(r["present"]), "true_present": bool(gt[z].any()),
                     "pred_pixels": int(pred[z].sum()),
                     "iou": float(inter / union) if union else 1.0})
    return rows


def summarize(rows: list) -> dict:
    """Calibration of predicted IoU (on slices where the object is) and presence accuracy (all slices)."""
    on = [r for r in rows if r["true_present"] and not r["prompted"]]
    p, a = np.array([r["pred_iou"] for r in on]), np.array([r["iou"] for r in on])
    bins = []
    for lo in np.arange(0, 1.0, 0.2):
        m = (p >= lo) & (p < lo + 0.2 if lo < 0.8 else p <= 1.0)
        if m.any():
            bins.append({"pred_iou": [round(float(lo), 1), round(float(lo + 0.2), 1)], "slices": int(m.sum()),
                         "mean_pred": round(float(p[m].mean()), 3), "mean_actual": round(float(a[m].mean()), 3)})
    tp = sum(r["pred_present"] and r["true_present"] for r in rows)
    fp = sum(r["pred_present"] and not r["true_present"] for r in rows)
    fn = sum(not r["pred_present"] and r["true_present"] for r in rows)
    tn = sum(not r["pred_present"] and not r["true_present"] for r in rows)
    return {"slices_with_object": len(on),
            "mean_pred_iou": round(float(p.mean()), 3) if len(on) else None,
            "mean_actual_iou": round(float(a.mean()), 3) if len(on) else None,
            "pearson_r": round(float(np.corrcoef(p, a)[0, 1]), 3) if len(on) > 2 and p.std() > 0 else None,
            "expected_calibration_error": round(float(sum(b["slices"] * abs(b["mean_pred"] - b["mean_actual"])
                                                          for b in bins) / max(len(on), 1)), 3),
            "bins": bins,
            "presence": {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
                         "absent_slices_marked_absent": round(tn / max(tn + fp, 1), 3),
                         "present_slices_marked_present": round(tp / max(tp + fn, 1), 3)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", required=True, help="MedBank-mini manifest (its 3D test cases)")
    ap.add_argument("--max-objects", type=int, default=0, help="0 = all")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    model = medmem.build_model(a.model, pretrained=True, device="cpu")
    synth = []
    n = 0
    for c in load_manifest(a.data, split="test"):
        if c.dims != 3:
            continue
        vol = Volume(np.asarray(c.image), spacing=tuple(c.spacing_array_order[::-1]))
        for lab in sorted(int(v) for v in np.unique(c.label) if v != 0):
            if a.max_objects and n >= a.max_objects:
                break
            synth += [dict(r, case=c.id, label=lab) for r in slice_rows(model, vol, np.asarray(c.label) == lab)]
            n += 1
    mni = read_volume(sample_path("mni152_t1"))
    mni_rows = slice_rows(model, mni, read_volume(sample_path("mni152_brain_mask")).array > 0)
    out = {"model": model.cfg.name,
           "command": "python scripts/calibration_report.py " + " ".join(sys.argv[1:]),
           "synthetic_3d_test": {"objects": n, **summarize(synth)},
           "bundled_mri": summarize(mni_rows), "bundled_mri_rows": mni_rows}
    with atomic_path(a.out) as tmp:
        tmp.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "bundled_mri_rows"}, indent=1))


if __name__ == "__main__":
    main()
