"""The trainer's validation of a model, run on its own (no training): what `medmem train` logs as val Dice / NSD.

Stage 2 of `scripts/train_default_model.sh` validates on the "val" split of both of its data sets
(MedBank-mini, the 22 original tasks, and the whole-organ tasks mri_brain and ct_body), up to 24 cases
taken round-robin over tasks (`--val-cases 24`): 2D objects from their tight box; 3D objects from the
box on their middle slice, propagated both ways over their z-range (`medmem.train.validate.evaluate`,
the code the trainer calls). Each object also gets the model-free baseline (Otsu in the same box on the
same slice, extruded over the same z-range: `medmem.eval.baseline`), at source resolution.

    medmem data synth runs/medbank --seed 0 --size 128 --tasks <the 22 tasks of scripts/train_default_model.sh>
    medmem data synth runs/medbank_whole --seed 0 --size 128 --tasks mri_brain,ct_body --cases-per-task 24
    python scripts/validate_default_model.py --data runs/medbank/manifest.json --data runs/medbank_whole/manifest.json \\
        --val-cases 24 --out docs/default_model_validation.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="weights (default: the bundled default model)")
    ap.add_argument("--data", action="append", required=True, help="a data source (repeatable)")
    ap.add_argument("--val-cases", type=int, default=24)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import medmem
    from medmem.data.prompt_sim import box_3d, mask_to_box
    from medmem.eval.baseline import threshold_box_2d, threshold_box_3d
    from medmem.eval.metrics import binary_metrics
    from medmem.train.data import load_raw_cases, prepare_case
    from medmem.train.validate import evaluate, pick_cases

    torch.manual_seed(0)
    model = (medmem.build_model("default", device="cpu") if a.checkpoint is None
             else medmem.build_model(checkpoint=a.checkpoint, device="cpu"))
    raws = load_raw_cases(a.data, (), ("val",))
    held = [prepare_case(r, model.image_size, keep_eval_label=True) for r in raws]
    res = evaluate(model, held, max_cases=a.val_cases)

    # the baseline on the same objects (the cases evaluate() picked), same boxes, same slices
    by_id = {r.id: r for r in raws}
    base = defaultdict(lambda: {"dice": [], "nsd": []})
    for c in pick_cases(held, a.val_cases):
        r = by_id[c.id]
        gray = r.image if r.image.ndim == 3 else r.image.mean(-1)
        spacing = c.spacing[1:] if c.dims == 2 else c.spacing
        for obj in sorted(int(v) for v in np.unique(c.eval_label) if v != 0):
            gt = c.eval_label == obj
            if c.dims == 2 or gt.shape[0] == 1:
                pred = threshold_box_2d(gray[0], mask_to_box(gt[0]))
                m = binary_metrics(pred, gt[0], spacing, 2.0, metrics=("dice", "nsd"))
            else:
                b = box_3d(gt)
                pred = np.zeros(gt.shape, bool)
                pred[b.z_min:b.z_max + 1] = threshold_box_3d(gray[b.z_min:b.z_max + 1], b.z_mid - b.z_min, b.box_2d)
                m = binary_metrics(pred, gt, spacing, 2.0, metrics=("dice", "nsd"))
            base[c.task]["dice"].append(m["dice"])
            base[c.task]["nsd"].append(m["nsd"])
    per_task = {}
    for t, v in res["per_task"].items():
        per_task[t] = dict(dice=round(v["dice"], 4), nsd=round(v["nsd"], 4), objects=v["objects"],
                           baseline_dice=round(float(np.mean(base[t]["dice"])), 4),
                           baseline_nsd=round(float(np.mean(base[t]["nsd"])), 4))
    out = dict(
        command="python scripts/validate_default_model.py " + " ".join(f"--data {d}" for d in a.data)
                + f" --val-cases {a.val_cases} --out {a.out}",
        checkpoint=a.checkpoint or "default (bundled)", model=model.cfg.name, split="val",
        objects=res["objects"], tasks=len(per_task),
        dice=round(res["dice"], 4), nsd=round(res["nsd"], 4),
        baseline_dice=round(float(np.mean([v["baseline_dice"] for v in per_task.values()])), 4),
        baseline_nsd=round(float(np.mean([v["baseline_nsd"] for v in per_task.values()])), 4),
        per_task=per_task,
    )
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "per_task"}))


if __name__ == "__main__":
    main()
