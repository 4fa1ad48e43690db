#!/usr/bin/env python
"""One click per object against one box per object, on 2D synthetic images, for each model named.

The click is the object's most interior pixel (`medmem.data.prompt_sim.interior_click`), given as the only
prompt through `ImagePredictor` (single mask out); the box is the object's tight box. For box-trained decoders
(`SAM2Config.click_boxes`: the LiteMedSAM-based models) the click is read through candidate boxes
(`medmem/model/click_box.py`). Beside them the model-free baseline of the box protocol (Otsu in the tight box,
the connected part: `medmem.eval.baseline`), which needs a box, not a click.

    python scripts/click_prompts.py --model medmem_lite_ft_256 --model medmem_small_256 \\
        --data runs/lite2d/manifest.json runs/val2d/manifest.json --out docs/click_prompts.json

Data: runs/lite2d and runs/val2d as in scripts/compare_default_models.py's docstring (every case of both).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="a pretrained model name (repeatable)")
    ap.add_argument("--data", nargs="+", required=True, help="MedBank-mini manifests (2D cases of every split)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import medmem
    from medmem.data.prompt_sim import interior_click, mask_to_box
    from medmem.data.synth import load_manifest
    from medmem.engine.image import ImagePredictor
    from medmem.eval.baseline import threshold_box_2d

    def dice(p, g):
        return float(2 * (p & g).sum() / max(p.sum() + g.sum(), 1))

    out = dict(command="python scripts/click_prompts.py " + " ".join(f"--model {m}" for m in a.model)
               + " --data " + " ".join(a.data) + " --out " + a.out, models={})
    for name in a.model:
        model = medmem.build_model(name, pretrained=True, device="cpu")
        pred = ImagePredictor(model)
        per_set = {}
        for man in a.data:
            rows = {}
            for case in load_manifest(man, split=None):
                if case.dims != 2:
                    continue
                pred.set_image(case.image)
                gray = case.image if case.image.ndim == 2 else case.image.mean(-1)
                for lab in sorted(int(v) for v in np.unique(case.label) if v != 0):
                    gt = case.label == lab
                    x, y = interior_click(gt).point[:2]
                    t0 = time.perf_counter()
                    mc, _, _ = pred.predict(point_coords=[[x, y]], point_labels=[1], multimask_output=False)
                    secs = time.perf_counter() - t0
                    box = np.asarray(mask_to_box(gt), dtype=float)
                    mb, _, _ = pred.predict(box=box, multimask_output=False)
                    rows[f"{case.id}:{lab}"] = dict(
                        click=[int(x), int(y)], click_dice=round(dice(mc[0], gt), 4),
                        box_dice=round(dice(mb[0], gt), 4),
                        baseline_box_dice=round(dice(threshold_box_2d(gray, box) > 0, gt), 4),
                        click_seconds=round(secs, 3))
            per_set[man] = dict(objects=len(rows), **{k: round(float(np.mean([r[k] for r in rows.values()])), 4)
                                                     for k in ("click_dice", "box_dice", "baseline_box_dice")},
                                median_click_seconds=round(float(np.median(
                                    [r["click_seconds"] for r in rows.values()])), 3),
                                cases=rows)
            print(json.dumps({name: {man: {k: v for k, v in per_set[man].items() if k != "cases"}}}), flush=True)
        out["models"][name] = per_set
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
