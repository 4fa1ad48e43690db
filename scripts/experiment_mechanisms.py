#!/usr/bin/env python
"""The papers' mechanisms measured with the defaults users get (issue 12, item 8).

Every run goes through the code paths of the CLI and the public API, with no policy option set
(the defaults `medmem segment --policy P` uses), and reports each bank's fill level:

1. policies_3d: every 3D test case and label of a MedBank-mini set; a box on the largest slice,
   `segment_volume` both ways with fifo / self_sorting / confidence (`medmem segment --policy P`);
   Dice beside the model-free baseline (Otsu in the box, extruded).
2. one_prompt: per 2D task, all its images as one unordered set; a box on the first image only,
   the rest from memory (`ImageSetSession`, as `medmem segment-set`): self_sorting, confidence, and
   "prompt only" (the same session with the bank never updated); mean Dice over unprompted images.
3. multi_axis: every 3D test object from its CVPR 2025 3D box, one axis (`medmem segment` with a
   box3d prompt) vs three axes x two directions fused (`medmem segment --axes axial,coronal,sagittal`).
4. interactive: the CVPR 2025 protocol (`medmem eval-interactive`: box, 5 corrective clicks,
   re-propagation) on the 3D test cases, with each policy.

    source scripts/task_sets.sh   # MEDBANK24_TASKS: the 24 tasks these figures were made on
    medmem data synth runs/mech --size 96 --cases-per-task 3 --seed 3 --tasks "$MEDBANK24_TASKS"
    medmem data synth runs/mech2d --size 96 --cases-per-task 10 --seed 3 --tasks <the 11 2D tasks>
    python scripts/experiment_mechanisms.py --data3d runs/mech/manifest.json \
        --data2d runs/mech2d/manifest.json --out docs/experiments_mechanisms.json
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

import medmem
from medmem.atomic import atomic_path
from medmem.data.prompt_sim import box_3d, mask_to_box
from medmem.data.synth import load_manifest
from medmem.engine.image_set import ImageSetSession
from medmem.engine.multi_axis import segment_multi_axis
from medmem.engine.pipeline import segment_volume
from medmem.eval.baseline import threshold_box_3d
from medmem.eval.metrics import dice
from medmem.eval.protocol import run_case, summarize
from medmem.io import Volume
from medmem.io.prompts import Box3DPrompt, BoxPrompt, ObjectPrompts

POLICIES = ("fifo", "self_sorting", "confidence")


def _mean(v) -> float:
    return round(float(np.mean(v)), 4) if len(v) else float("nan")


def _bank(stats: dict) -> dict:
    keep = ("bank_entries", "capacity", "k", "recent", "threshold", "offered", "admitted", "rejected_empty",
            "rejected_confidence", "retrieved_per_slice_mean", "slices_without_bank")
    return {k: stats[k] for k in keep if k in stats}


def objects_3d(manifest: str, split: str = "test"):
    """(case id, task, Volume, label id, (D, H, W) bool ground truth) for every 3D object of a split."""
    for c in load_manifest(manifest, split=split):
        if c.dims != 3:
            continue
        vol = Volume(np.asarray(c.image), spacing=tuple(c.spacing_array_order[::-1]))
        for lab in sorted(int(v) for v in np.unique(c.label) if v != 0):
            yield c.id, c.task, vol, lab, np.asarray(c.label) == lab


def policies_3d(model, manifest: str) -> dict:
    rows = []
    for cid, task, vol, lab, gt in objects_3d(manifest):
        s = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
        box = tuple(float(v) for v in mask_to_box(gt[s]))
        row = {"case": cid, "task": task, "label": lab, "slice": s,
               "baseline": round(dice(threshold_box_3d(vol.array.astype(np.float64), s, box), gt), 4)}
        for pol in POLICIES:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                res = segment_volume(model, vol, [ObjectPrompts(id=1, prompts=[BoxPrompt(s, box)], axis=0)],
                                     policy=pol)
            row[pol] = {"dice": round(dice(res.labels == 1, gt), 4), "seconds": res.report["seconds"],
                        "bank": _bank(res.report["objects"][0]["memory"]),
                        "empty_bank_warning": any("bank is empty" in str(x.message) for x in w)}
        rows.append(row)
        print(json.dumps({k: (v["dice"] if isinstance(v, dict) else v) for k, v in row.items()}), flush=True)
    summary = {"objects": len(rows), "baseline": _mean([r["baseline"] for r in rows])}
    for pol in POLICIES:
        summary[pol] = {"dice": _mean([r[pol]["dice"] for r in rows]),
                        "bank_entries_mean": _mean([r[pol]["bank"].get("bank_entries", 0) for r in rows]),
                        "retrieved_per_slice_mean": _mean([r[pol]["bank"].get("retrieved_per_slice_mean", 0)
                                                           for r in rows]),
                        "empty_bank_warnings": int(sum(r[pol]["empty_bank_warning"] for r in rows))}
    return {"summary": summary, "rows": rows}


def one_prompt(model, manifest: str) -> dict:
    by_task = defaultdict(list)
    for c in load_manifest(manifest):
        if c.dims == 2:
            by_task[c.task].append(c)
    rows = []
    for task, cases in sorted(by_task.items()):
        lab = int(min(v for v in np.unique(cases[0].label) if v != 0))
        cases = [c for c in cases if (np.asarray(c.label) == lab).any()]
        if len(cases) < 3:
            continue
        images = [np.asarray(c.image) for c in cases]
        gts = [np.asarray(c.label) == lab for c in cases]
        row = {"task": task, "label": lab, "images": len(images)}
        for name, pol, update in (("prompt_only", "confidence", False), ("self_sorting", "self_sorting", True),
                                  ("confidence", "confidence", True)):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sess = ImageSetSession(model, images, policy=pol, update_bank=update)
                sess.add_prompt(0, 1, box=list(mask_to_box(gts[0])))
                out = dict(sess.propagate())
            d = [dice(out[i][1], gts[i]) for i in range(1, len(images))]
            conf = sess.confidence(1)
            row[name] = {"dice": _mean(d), "seconds": round(time.perf_counter() - t0, 2),
                         "bank": _bank(sess.memory_stats(1)),
                         "retrieved_mean": _mean([r.get("retrieved", 0) for r in conf[1:]])}
        rows.append(row)
        print(json.dumps({k: (v["dice"] if isinstance(v, dict) else v) for k, v in row.items()}), flush=True)
    summary = {"sets": len(rows)}
    for name in ("prompt_only", "self_sorting", "confidence"):
        summary[name] = {"dice": _mean([r[name]["dice"] for r in rows]),
                         "bank_entries_mean": _mean([r[name]["bank"].get("bank_entries", 0) for r in rows])}
    return {"summary": summary, "rows": rows}


def multi_axis(model, manifest: str, first_label_only: bool = False) -> dict:
    rows = []
    for cid, task, vol, lab, gt in objects_3d(manifest):
        if first_label_only and any(r["case"] == cid for r in rows):
            continue
        b = box_3d(gt)
        prompt = Box3DPrompt(b.z_mid, (b.z_min, b.z_max), tuple(float(v) for v in b.box_2d))
        objs = [ObjectPrompts(id=1, prompts=[prompt], axis=0)]
        one = segment_volume(model, vol, objs)
        t0 = time.perf_counter()
        multi = segment_multi_axis(model, vol, objs)
        rows.append({"case": cid, "task": task, "label": lab,
                     "one_axis": round(dice(one.labels == 1, gt), 4), "one_axis_seconds": one.report["seconds"],
                     "three_axes": round(dice(multi.labels == 1, gt), 4),
                     "three_axes_seconds": round(time.perf_counter() - t0, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return {"summary": {"objects": len(rows), "one_axis": _mean([r["one_axis"] for r in rows]),
                        "three_axes": _mean([r["three_axes"] for r in rows])}, "rows": rows}


def interactive(model, manifest: str) -> dict:
    out = {}
    for pol in POLICIES:
        res = []
        for c in load_manifest(manifest, split="test"):
            if c.dims != 3:
                continue
            r = run_case(model, np.asarray(c.image), np.asarray(c.label), c.spacing_array_order, policy=pol)
            res.append(r)
        s = summarize(res)
        s["bank_entries_mean"] = _mean([m.get("bank_entries", 0) for r in res for m in r["memory"].values()])
        out[pol] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}
        print(pol, json.dumps(out[pol]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data3d", required=True, help="MedBank-mini manifest with 3D test cases")
    ap.add_argument("--data2d", required=True, help="MedBank-mini manifest with 2D tasks (image sets)")
    ap.add_argument("--model", default="default", help="pretrained model name (default: the default model)")
    ap.add_argument("--only", default="policies_3d,one_prompt,multi_axis,interactive")
    ap.add_argument("--first-label-only", action="store_true",
                    help="multi_axis: one object per case (the 6 runs per object are the slow part)")
    ap.add_argument("--out", required=True, help="JSON; experiments already in it are kept unless re-run")
    a = ap.parse_args()
    model = medmem.build_model(a.model, pretrained=True, device="cpu")
    result = json.loads(Path(a.out).read_text()) if Path(a.out).is_file() else {}
    if result.get("model", model.cfg.name) != model.cfg.name:
        raise SystemExit(f"{a.out} holds results of {result['model']}, not {model.cfg.name}")
    result.update({"model": model.cfg.name, "policy_options": "defaults (none set), as medmem segment / "
                   "segment-set / eval-interactive use them"})
    result.setdefault("commands", {})
    steps = {"policies_3d": lambda: policies_3d(model, a.data3d), "one_prompt": lambda: one_prompt(model, a.data2d),
             "multi_axis": lambda: multi_axis(model, a.data3d, a.first_label_only),
             "interactive": lambda: interactive(model, a.data3d)}
    for name in a.only.split(","):
        result["commands"][name] = (f"python scripts/experiment_mechanisms.py --data3d {a.data3d} --data2d {a.data2d} "
                                    f"--model {a.model} --only {name}"
                                    + (" --first-label-only" if a.first_label_only and name == "multi_axis" else "")
                                    + f" --out {a.out}")
        t0 = time.perf_counter()
        result[name] = steps[name]()
        result[name]["seconds_total"] = round(time.perf_counter() - t0, 1)
        with atomic_path(a.out) as tmp:  # written after every experiment: a long run keeps what it has
            tmp.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v.get("summary", v) if isinstance(v, dict) else v for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
