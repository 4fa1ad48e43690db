"""Region tracking vs whole-slice box tracking (medmem_lite_256), side by side in one process.

A phantom volume (S slices of 256 × 256, noise, a bright ellipsoid of about 30 px across through most of the
slices and a larger dim structure around it): one box on the middle slice, propagate both ways. Each variant
runs once to warm up and then --repeat times (best kept): seconds per tracked slice, slices and regions
encoded, Dice against the phantom's truth and between the two variants. JSON to stdout and --out.

    python benchmarks/region_tracking.py --out benchmarks/results_region_tracking_cpu.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time

import numpy as np
import torch

import medmem
from medmem.data.prompt_sim import mask_to_box
from medmem.eval.metrics import dice


def phantom(slices: int, seed: int = 0):
    z, y, x = np.mgrid[:slices, :256, :256]
    c = (slices - 1) / 2
    small = ((z - c) / (0.4 * slices)) ** 2 + ((y - 120) / 15) ** 2 + ((x - 140) / 13) ** 2 < 1
    large = ((y - 128) / 100) ** 2 + ((x - 128) / 90) ** 2 < 1
    vol = np.where(large, 90, 30) + np.where(small, 120, 0)
    vol = vol + np.random.default_rng(seed).normal(0, 8, vol.shape)
    return np.clip(vol, 0, 255).astype(np.uint8), small


def run(model, vol, box, mid) -> dict:
    t0 = time.perf_counter()
    sess = medmem.VolumeSession(model, vol)
    sess.add_prompt(mid, 1, box=box)
    list(sess.propagate("both"))
    sec = time.perf_counter() - t0
    tracked = sum(1 for r in sess.objects[1].results.values() if not r.prompted)
    return dict(seconds=round(sec, 3), tracked_slices=tracked, seconds_per_slice=round(sec / max(tracked, 1), 4),
                slices_encoded_whole=sess.features.encoded, regions_encoded=sess.features.encoded_regions,
                masks=sess.masks(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--region-size", type=int, default=128)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    vol, gt = phantom(a.slices)
    mid = a.slices // 2
    box = [float(v) for v in mask_to_box(gt[mid])]
    whole = medmem.build_model("medmem_lite_256", pretrained=True, device="cpu")
    region = medmem.build_model("medmem_lite_256", pretrained=True, device="cpu")
    region.cfg = dataclasses.replace(region.cfg, region_size=a.region_size)
    res = {"command": "python " + " ".join(sys.argv), "threads": torch.get_num_threads(), "machine": platform.machine(),
           "slices": a.slices, "box": box}
    masks = {}
    for name, model in (("whole_slice", whole), (f"region_{a.region_size}", region)):
        run(model, vol[:3], box, 1)  # warm-up
        best = min((run(model, vol, box, mid) for _ in range(a.repeat)), key=lambda r: r["seconds"])
        masks[name] = best.pop("masks")
        best["dice"] = round(float(dice(masks[name], gt)), 4)
        res[name] = best
        print(json.dumps({name: best}), flush=True)
    w, r = res["whole_slice"], res[f"region_{a.region_size}"]
    res["speedup_per_slice"] = round(w["seconds_per_slice"] / r["seconds_per_slice"], 2)
    res["dice_between_variants"] = round(float(dice(*masks.values())), 4)
    print(json.dumps({k: res[k] for k in ("speedup_per_slice", "dice_between_variants")}))
    if a.out:
        from medmem.atomic import atomic_path

        with atomic_path(a.out) as tmp:
            tmp.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
