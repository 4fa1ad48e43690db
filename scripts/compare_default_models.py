#!/usr/bin/env python
"""Old vs new default model, each beside the model-free baseline, through the public API (one-box protocol).

Cases: the bundled MNI152 T1 with README command 1's box (axial slice 37), MedBank-mini 3D test volumes
(first label of each: one box on its largest slice, propagate both ways) and 2D test images (one box).
Every Dice stands beside the baseline (Otsu in the box, extruded: `medmem.eval.baseline`); with
--every-slice also beside "a box on every slice, no memory" (for medmem_lite_256 = LiteMedSAM itself).

    python scripts/compare_default_models.py --model small=pretrained:medmem_small_256 \\
        --model lite=pretrained:medmem_lite_256 --every-slice \\
        --data3d runs/lite3d/manifest.json --data2d runs/lite2d/manifest.json --out docs/default_model_compare.json

The data (test split of each): runs/lite3d as scripts/train_lite_model.sh makes it (13 3D tasks, seed 0, 96 px,
4 cases per task) and
    medmem data synth runs/lite2d --seed 1 --size 256 --cases-per-task 3 --tasks us_breast_lesion,\
      us_thyroid_nodule,xray_chest,xray_clavicle,endoscopy_polyp,endoscopy_instrument,dermoscopy_lesion,\
      fundus_disc_cup,microscopy_nuclei,microscopy_glands

A larger validation set, made only for comparing models (no model trains on these seeds; all cases count,
`--split all`): 39 3D volumes and 36 2D objects,
    source scripts/lite_data.sh   # LITE3D_TASKS (and runs/lite3d)
    medmem data synth runs/val3d --seed 21 --size 96 --cases-per-task 3 --tasks "$LITE3D_TASKS"
    medmem data synth runs/val2d --seed 22 --size 256 --cases-per-task 3 --tasks <the 10 tasks of runs/lite2d above>
    python scripts/compare_default_models.py --split all --model ... --data3d runs/val3d/manifest.json \
        --data2d runs/val2d/manifest.json --out ...
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

import medmem
from medmem.data.synth import load_manifest
from medmem.eval.one_box import evaluate_2d, evaluate_one_box
from medmem.io import read_volume, sample_path

README_BOX, README_SLICE = [14.0, 14.0, 85.0, 104.0], 37


def run_model(model, a) -> dict:
    out = {}
    vol = read_volume(sample_path("mni152_t1"))
    gt = read_volume(sample_path("mni152_brain_mask")).array > 0
    out["mni152_readme_box"] = evaluate_one_box(model, vol.array, gt, vol.spacing_zyx, slice_idx=README_SLICE,
                                                box=README_BOX)
    print(json.dumps({"mni152": out["mni152_readme_box"]}), flush=True)
    if a.data3d:
        rows = {}
        for case in load_manifest(a.data3d, split=_split(a.split)):
            if case.dims != 3:
                continue
            lab = min(int(v) for v in np.unique(case.label) if v != 0)
            rows[case.id] = evaluate_one_box(model, case.image, case.label == lab, every_slice=a.every_slice)
            print(json.dumps({case.id: rows[case.id]}), flush=True)
        out["synthetic_3d"] = dict(cases=rows, mean_dice=_mean(rows, "dice"), mean_baseline=_mean(rows, "baseline_dice"))
        if a.every_slice:
            out["synthetic_3d"]["mean_box_every_slice"] = _mean(rows, "box_every_slice_dice")
    if a.data2d:
        rows = {}
        for case in load_manifest(a.data2d, split=_split(a.split)):
            if case.dims != 2:
                continue
            for lab in sorted(int(v) for v in np.unique(case.label) if v != 0):
                rows[f"{case.id}:{lab}"] = evaluate_2d(model, case.image, case.label == lab)
        out["synthetic_2d"] = dict(cases=rows, mean_dice=_mean(rows, "dice"), mean_baseline=_mean(rows, "baseline_dice"))
        print(json.dumps({k: v for k, v in out["synthetic_2d"].items() if k != "cases"}), flush=True)
    return out


def _split(name: str):
    """The manifest split to evaluate: a split's name, or "all" (every case: a set made only for validation)."""
    return None if name == "all" else name


def _mean(rows: dict, key: str) -> float:
    return round(float(np.mean([r[key] for r in rows.values()])), 4) if rows else float("nan")


def _overrides(cfg, opts: str) -> dict:
    """"key=value,key=value" → config field overrides, typed as the field's current value."""
    out = {}
    for kv in filter(None, opts.split(",")):
        k, v = kv.split("=", 1)
        if not hasattr(cfg, k):
            raise SystemExit(f"{cfg.name} has no setting {k!r}")
        cur = getattr(cfg, k)
        out[k] = (v.lower() in ("1", "true", "yes")) if isinstance(cur, bool) else type(cur)(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True,
                    help="NAME=CHECKPOINT or NAME=pretrained:MODEL, optionally @key=value,... config settings "
                         "at inference (repeatable)")
    ap.add_argument("--data3d", default=None)
    ap.add_argument("--data2d", default=None)
    ap.add_argument("--every-slice", action="store_true")
    ap.add_argument("--split", default="test",
                    help="cases to evaluate: a split of the manifests, or 'all' (a set generated only for validation)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import sys

    res = {"command": "python " + " ".join(sys.argv), "threads": torch.get_num_threads()}
    for spec in a.model:
        name, path = spec.split("=", 1)
        path, _, opts = path.partition("@")
        torch.manual_seed(0)
        if path.startswith("pretrained:"):
            model = medmem.build_model(path.split(":", 1)[1], pretrained=True, device="cpu")
        else:
            model = medmem.build_model(checkpoint=path, device="cpu")
        overrides = _overrides(model.cfg, opts)
        if overrides:  # inference-time settings of the config (e.g. propagation_box_margin, stop_after_absent)
            model.cfg = dataclasses.replace(model.cfg, **overrides)
        t0 = time.perf_counter()
        res[name] = dict(checkpoint=path, config=model.cfg.name, overrides=overrides, **run_model(model, a),
                         seconds_total=round(time.perf_counter() - t0, 1))
        if a.out:  # kept as it grows
            Path(a.out).write_text(json.dumps(res, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
