"""Speed of the bundled default model on the main job: one box, propagate both ways, label map out.

The bundled MNI152 T1 (94 axial slices of 116 × 98) and the same volume resampled along z to 200 and
400 slices (linear interpolation: a longer volume of the same anatomy), one box on the largest brain
slice; each length in its own child process, the model built before the clock starts. Prints one JSON
object per run, then a summary with seconds per slice and the ratio to the 94-slice run.

    python benchmarks/default_model.py --out benchmarks/results_default_model_cpu.json   # 94, 200, 400 slices
    BENCH_THREADS=2 python benchmarks/default_model.py --sizes 94,200
    python benchmarks/default_model.py --sizes 94 --model medmem_small_256,medmem_lite_ft_256   # side by side

--out writes exactly the lines printed (one JSON object per run, then the summary: JSON lines).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time


def run_one(n: int, policy: str, name: str = "default") -> dict:
    import numpy as np
    import torch
    from scipy import ndimage

    import medmem
    from medmem.data.prompt_sim import mask_to_box
    from medmem.engine.pipeline import segment_volume
    from medmem.io import BoxPrompt, ObjectPrompts, read_volume, sample_path

    threads = int(os.environ.get("BENCH_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    vol = read_volume(sample_path("mni152_t1"))
    gt = read_volume(sample_path("mni152_brain_mask")).array > 0
    if n != vol.array.shape[0]:
        z = n / vol.array.shape[0]
        arr = np.clip(ndimage.zoom(vol.array.astype(np.float32), (z, 1, 1), order=1), 0, 255).astype(np.uint8)
        gt = ndimage.zoom(gt.astype(np.uint8), (z, 1, 1), order=0) > 0
        vol = dataclasses.replace(vol, array=arr, spacing=(vol.spacing[0], vol.spacing[1], vol.spacing[2] / z))
    s = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    box = mask_to_box(gt[s])  # inclusive pixels (docs/io.md)
    model = medmem.build_model(name, pretrained=True, device="cpu")
    t0 = time.perf_counter()
    labels = segment_volume(model, vol, [ObjectPrompts(id=1, prompts=[BoxPrompt(slice=s, box=box)], axis=0)],
                            policy=policy).labels
    secs = time.perf_counter() - t0
    pred = labels == 1
    dice = 2 * (pred & gt).sum() / max(pred.sum() + gt.sum(), 1)
    return dict(model=model.cfg.name, slices=n, policy=policy, seconds=round(secs, 3),
                slices_per_second=round(n / secs, 2),
                dice=round(float(dice), 4), threads=torch.get_num_threads(),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="94,200,400")
    ap.add_argument("--policy", default="fifo")
    ap.add_argument("--model", default="default",
                    help="pretrained model names, comma-separated (each run in turn; ratios against the first row)")
    ap.add_argument("--out", default=None, help="also write the printed JSON lines to this file")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(run_one(a.child, a.policy, a.model)))
        return
    rows = []
    for name in a.model.split(","):
        for n in (int(v) for v in a.sizes.split(",")):
            out = subprocess.run([sys.executable, __file__, "--child", str(n), "--policy", a.policy, "--model", name],
                                 check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
            print(out, flush=True)
    base = rows[0]
    summary = json.dumps({"summary": [dict(model=r["model"], slices=r["slices"], seconds=r["seconds"],
                                           ms_per_slice=round(1000 * r["seconds"] / r["slices"], 1),
                                           time_ratio_vs_first=round(r["seconds"] / base["seconds"], 2),
                                           rss_ratio_vs_first=round(r["peak_rss_mb"] / base["peak_rss_mb"], 2))
                                      for r in rows]})
    print(summary)
    if a.out:
        with open(a.out, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows) + summary + "\n")


if __name__ == "__main__":
    main()
