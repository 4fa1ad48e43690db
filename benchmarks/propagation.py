"""Propagation speed and peak memory: medmem VolumeSession vs the official sam2 video predictor.

Same config (SAM 2.1 tiny, at a reduced input size so that 1,000 slices run in minutes on a CPU),
the same random weights, the same synthetic volume and the same box prompt, side by side in one
run. Each (implementation, length) runs in its own child process so that peak memory (max RSS)
is measured cleanly. Prints one JSON object per measurement, then a summary with ratios.

    python benchmarks/propagation.py                      # 50, 200, 1000 slices at 256² (CPU)
    BENCH_THREADS=1 python benchmarks/propagation.py --parallel   # both side by side, one core each
    python benchmarks/propagation.py --sizes 50,200 --image-size 512 --device cuda --dtype bf16

The official package is needed for its side (scripts/setup.sh --test installs it).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_frames(n: int, hw=(160, 160), seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) uint8: a slowly moving, breathing ellipse on a noisy background."""
    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.mgrid[:h, :w]
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        ph = 2 * np.pi * t / max(n, 1)
        img = 40 + rng.normal(0, 8, (h, w))
        cy, cx, r = h / 2 + 10 * np.sin(ph), w / 2 + 12 * np.cos(ph), 25 + 5 * np.sin(3 * ph)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 150
        out[t] = np.clip(img, 0, 255).astype(np.uint8)[..., None]
    return out


def build_pair(image_size: int, device: str):
    """The official video predictor and medmem's model with the same random weights."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from oracle import build_official, randomize_

    from medmem.config import get_config

    cfg = get_config("sam2.1_hiera_tiny").replace(image_size=image_size)
    torch.manual_seed(0)
    off = randomize_(build_official(cfg, video=True, fill_hole_area=0), seed=7)
    with torch.no_grad():
        off.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(8.0)
    return cfg, off


def child(impl: str, n: int, image_size: int, device: str, dtype: str, frames_dir: str) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    cfg, off = build_pair(image_size, device)
    frames = np.stack([np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(p).convert("RGB"))
                       for p in sorted(Path(frames_dir).glob("*.jpg"))])
    h, w = frames.shape[1:3]
    box = np.array([w / 2 - 35, h / 2 - 35, w / 2 + 35, h / 2 + 35], np.float32)
    dt = torch.bfloat16 if dtype == "bf16" else None
    if impl == "official":
        model = off.to(device)
    else:
        import gc

        from medmem.model import SAM2Model

        model = SAM2Model(cfg)
        model.load_state_dict(off.state_dict())
        model = model.to(device).eval()
        del off
        gc.collect()
    # the baseline: the process with its model built and the frames read; growth beyond it is the run's
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if impl == "official":
        ctx = torch.autocast(device_type=device.split(":")[0], dtype=dt) if dt else torch.autocast("cpu", enabled=False)
        with ctx:
            state = model.init_state(video_path=frames_dir)
            model.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=box)
            t1 = time.perf_counter()
            count = sum(1 for _ in model.propagate_in_video(state))
    else:
        from medmem.engine.volume import VolumeSession

        sess = VolumeSession(model, frames, policy="fifo", dtype=dt, chunk=8)
        sess.add_prompt(0, 1, box=box)
        t1 = time.perf_counter()
        count = sum(1 for _ in sess.propagate("forward"))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res = dict(impl=impl, slices=n, image_size=image_size, device=device, dtype=dtype, frames=count,
               total_s=round(t2 - t0, 3), propagate_s=round(t2 - t1, 3),
               slices_per_s=round(count / (t2 - t1), 3), peak_rss_mb=round(rss, 1),
               rss_growth_mb=round(rss - base_rss / 1024.0, 1))
    if device.startswith("cuda"):
        res["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50,200,1000")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--frame-hw", default="160,160")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--impls", default="official,medmem")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    ap.add_argument("--parallel", action="store_true",
                    help="run the implementations of one length at the same time (one thread each on a 2-core "
                         "machine: both see the same machine load)")
    ap.add_argument("--child", nargs=3, metavar=("IMPL", "N", "FRAMES_DIR"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        impl, n, d = a.child
        print(json.dumps(child(impl, int(n), a.image_size, a.device, a.dtype, d)))
        return
    hw = tuple(int(v) for v in a.frame_hw.split(","))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        from PIL import Image

        for n in [int(s) for s in a.sizes.split(",")]:
            d = Path(tmp) / f"n{n}"
            d.mkdir()
            for i, f in enumerate(make_frames(n, hw)):
                Image.fromarray(f).save(d / f"{i:05d}.jpg", quality=95)
            cmds = {impl: [sys.executable, __file__, "--child", impl, str(n), str(d), "--image-size", str(a.image_size),
                           "--device", a.device, "--dtype", a.dtype] for impl in a.impls.split(",")}
            if a.parallel:
                procs = {i: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                         for i, c in cmds.items()}
                outs = {i: (p.communicate(), p.returncode) for i, p in procs.items()}
            else:
                outs = {}
                for i, c in cmds.items():
                    r = subprocess.run(c, capture_output=True, text=True)
                    outs[i] = ((r.stdout, r.stderr), r.returncode)
            for impl, ((stdout, stderr), rc) in outs.items():
                if rc != 0:
                    res = dict(impl=impl, slices=n, error=stderr.strip().splitlines()[-1:])
                else:
                    res = json.loads(stdout.strip().splitlines()[-1])
                print(json.dumps(res), flush=True)
                results.append(res)
    summary = {"summary": []}
    by = {(r["impl"], r["slices"]): r for r in results if "error" not in r}
    sizes = sorted({r["slices"] for r in results})
    for n in sizes:
        o, m = by.get(("official", n)), by.get(("medmem", n))
        if o and m:
            summary["summary"].append(dict(slices=n, speedup=round(m["slices_per_s"] / o["slices_per_s"], 2),
                                           official_slices_per_s=o["slices_per_s"], medmem_slices_per_s=m["slices_per_s"],
                                           official_growth_mb=o["rss_growth_mb"], medmem_growth_mb=m["rss_growth_mb"],
                                           official_peak_mb=o["peak_rss_mb"], medmem_peak_mb=m["peak_rss_mb"]))
    for impl in ("official", "medmem"):
        small, big = by.get((impl, sizes[0])), by.get((impl, sizes[-1]))
        if small and big:
            summary[f"{impl}_peak_ratio_{sizes[-1]}_vs_{sizes[0]}"] = round(big["peak_rss_mb"] / small["peak_rss_mb"], 3)
    print(json.dumps(summary))
    if a.out:
        Path(a.out).write_text(json.dumps({"results": results, **summary}, indent=2))


if __name__ == "__main__":
    main()
