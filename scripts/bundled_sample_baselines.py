"""README command 1's result beside model-free baselines, and with the box moved, resized or on other slices.

The bundled sample (MNI152 2009a T1 at 2 mm, skull-stripped template) is nearly a threshold task. This
script puts the default model's score next to:

- the Otsu-in-the-box baseline (`medmem.eval.baseline.threshold_box_3d`: Otsu inside the box on the
  prompted slice, the same threshold in the same box on every slice, the connected part) for every box;
- a global threshold of the T1 (`t1 > 40`, no model, no prompt).

Boxes are inclusive pixel indices [x0, y0, x1, y1] (docs/io.md) on axial slices. Variants of README
command 1's box (slice 37, [14, 14, 85, 104]): shifted by ±5 and ±10 px in x and in y, scaled to 80 % and
120 % of its size about its centre (clipped to the image), and the reference's tight box
(`medmem.data.prompt_sim.mask_to_box`). Other prompt slices use the reference's tight box on that slice.
`--axes coronal,sagittal` adds one case per axis: the reference's tight box on that axis's largest brain
slice, propagated along that axis (the model never saw this volume sliced that way in any choice we made).
The model runs as the CLI runs it: `medmem.build_model(--model, default "default")`, `segment_volume` with a
`BoxPrompt`,
fifo memory, propagation both ways; its Dice / NSD@2mm / HD95 are those `medmem segment --reference`
prints (`medmem.eval.reference.score_against_reference`).

    OMP_NUM_THREADS=1 python scripts/bundled_sample_baselines.py --axes coronal,sagittal --out docs/bundled_sample.json
    python scripts/bundled_sample_baselines.py --model medmem_small_256 --axes coronal,sagittal --out F.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

README_SLICE = 37
README_BOX = (14, 14, 85, 104)
THRESHOLD = 40


def _scaled(box, f, hw):
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw_x, hw_y = (x1 - x0) * f / 2, (y1 - y0) * f / 2
    h, w = hw
    return (max(0, int(round(cx - hw_x))), max(0, int(round(cy - hw_y))),
            min(w - 1, int(round(cx + hw_x))), min(h - 1, int(round(cy + hw_y))))


def _shifted(box, dx, dy, hw):
    h, w = hw
    x0, y0, x1, y1 = box
    return (min(max(x0 + dx, 0), w - 1), min(max(y0 + dy, 0), h - 1),
            min(max(x1 + dx, 0), w - 1), min(max(y1 + dy, 0), h - 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--slices", default="25,30,45,50", help="other prompt slices (reference's tight box)")
    ap.add_argument("--quick", action="store_true", help="README box only (a smoke run)")
    ap.add_argument("--model", default="default", help="a pretrained model name (default: the default model)")
    ap.add_argument("--axes", default="", help="other slicing axes (coronal, sagittal): one tight-box case each")
    a = ap.parse_args()

    import torch

    import medmem
    from medmem.data.prompt_sim import mask_to_box
    from medmem.engine.pipeline import segment_volume
    from medmem.eval.baseline import threshold_box_3d
    from medmem.eval.metrics import binary_metrics
    from medmem.eval.reference import score_against_reference
    from medmem.io import BoxPrompt, ObjectPrompts, read_volume, sample_path

    vol = read_volume(sample_path("mni152_t1"))
    ref = read_volume(sample_path("mni152_brain_mask"))
    views = {}

    def view_of(axis):
        """(image (S, H, W), reference (S, H, W) bool, spacing (slice, row, column) mm) in the model's order."""
        if axis not in views:
            v = vol.slices(axis)
            views[axis] = (np.asarray(v.array, dtype=np.float64), np.asarray(ref.slices(axis).array) > 0,
                           (v.slice_spacing, *v.pixel_spacing))
        return views[axis]

    img, gt, spacing = view_of("axial")
    hw = img.shape[1:]

    def score(pred, axis="axial"):
        _, g, sp = view_of(axis)
        m = binary_metrics(pred, g, spacing=sp, tolerance_mm=2.0)
        hd = m["hd95"]
        return dict(dice=round(float(m["dice"]), 4), nsd_2mm=round(float(m["nsd"]), 4),
                    hd95_mm=None if not np.isfinite(hd) else round(float(hd), 2))

    cases = [("README box", README_SLICE, README_BOX, "axial")]
    if not a.quick:
        for d in (5, 10):
            for sign in (-1, 1):
                cases.append((f"x {sign * d:+d} px", README_SLICE, _shifted(README_BOX, sign * d, 0, hw), "axial"))
                cases.append((f"y {sign * d:+d} px", README_SLICE, _shifted(README_BOX, 0, sign * d, hw), "axial"))
        cases.append(("80 % size", README_SLICE, _scaled(README_BOX, 0.8, hw), "axial"))
        cases.append(("120 % size", README_SLICE, _scaled(README_BOX, 1.2, hw), "axial"))
        cases.append(("reference's tight box", README_SLICE, tuple(mask_to_box(gt[README_SLICE])), "axial"))
        for s in (int(v) for v in a.slices.split(",") if v):
            cases.append((f"slice {s}, reference's tight box", s, tuple(mask_to_box(gt[s])), "axial"))
    for axis in (v.strip() for v in a.axes.split(",") if v.strip()):
        g = view_of(axis)[1]
        s = int(g.reshape(len(g), -1).sum(1).argmax())
        cases.append((f"{axis} axis, largest slice {s}, reference's tight box", s, tuple(mask_to_box(g[s])), axis))

    model = medmem.build_model(a.model, pretrained=True, device="cpu")
    rows = []
    for name, s, box, axis in cases:
        box = [int(v) for v in box]
        img, gt, _ = view_of(axis)
        objects = [ObjectPrompts(id=1, prompts=[BoxPrompt(slice=s, box=tuple(box))], axis=axis)]
        t0 = time.perf_counter()
        seg = segment_volume(model, vol, objects, policy="fifo", axis=axis)
        secs = time.perf_counter() - t0
        m = score_against_reference(seg.labels, vol, ref, [1])["objects"]["1"]
        pred_s = np.asarray(seg.sliced) == 1
        base = threshold_box_3d(img, s, box)
        row = dict(case=name, axis=axis, slice=s, box=box,
                   model=dict(dice=m["dice"], nsd_2mm=m["nsd"], hd95_mm=m["hd95"],
                              dice_prompt_slice=round(float(2 * (pred_s[s] & gt[s]).sum()
                                                            / max(pred_s[s].sum() + gt[s].sum(), 1)), 4),
                              seconds=round(secs, 2)),
                   otsu_in_box=score(base, axis))
        if name == "README box":  # is the model's confidence track usable for quality control here?
            conf = seg.report["objects"][0]["per_slice"]
            sd = [float(2 * (pred_s[z] & gt[z]).sum() / max(pred_s[z].sum() + gt[z].sum(), 1)) for z in range(len(gt))]
            good = [r["iou"] for z, r in enumerate(conf) if r.get("segmented") and gt[z].any() and sd[z] > 0.97]
            empty_ref = [z for z in range(len(gt)) if not gt[z].any()]
            row["confidence"] = dict(
                predicted_iou_on_slices_with_dice_above_0_97=dict(
                    slices=len(good), min=round(min(good), 4) if good else None,
                    max=round(max(good), 4) if good else None),
                reference_empty_slices=len(empty_ref),
                reference_empty_slices_with_positive_object_score=sum(float(conf[z].get("object_score", 0)) > 0
                                                                      for z in empty_ref),
                reference_empty_slices_flagged_present=sum(bool(conf[z].get("present")) for z in empty_ref),
                reference_empty_slices_with_predicted_voxels=sum(bool(pred_s[z].any()) for z in empty_ref),
                slices_to_review=len(seg.report["objects"][0]["slices_to_review"]))
        rows.append(row)
        print(json.dumps(row), flush=True)

    img, gt, _ = view_of("axial")
    glob = score(img > THRESHOLD)
    print(json.dumps({"global_threshold": glob}), flush=True)
    out = dict(
        command="python scripts/bundled_sample_baselines.py" + (f" --model {a.model}" if a.model != "default" else "")
                + (f" --axes {a.axes}" if a.axes else "") + " --out " + a.out,
        sample="sample:mni152_t1 vs sample:mni152_brain_mask (axial slices unless a row names another axis)",
        shape_slices_hw=[int(img.shape[0]), *map(int, hw)], spacing_mm=[float(v) for v in spacing],
        model=(a.model + (" (" + model.cfg.name + ")" if a.model != model.cfg.name else "")
               + ", fifo, propagate both ways"),
        box_convention="inclusive pixel indices [x0, y0, x1, y1]",
        global_threshold=dict(rule=f"t1 > {THRESHOLD}, whole volume, no prompt", **glob),
        rows=rows,
        machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                     torch_threads=torch.get_num_threads()),
    )
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
