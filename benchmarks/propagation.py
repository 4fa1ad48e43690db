"""Propagation speed and peak memory: medmem's VolumeSession (torch, fp32) vs the official SAM 2.1 video predictor.

One run measures, side by side:

1. speed at 512² and 1024² (SAM 2.1 tiny, the same random weights, the same synthetic frames and box on frame 0,
   forward propagation): slices/s of the propagation loop, by wall clock and by CPU time, and whether the
   outputs are equal (max |logit difference| over all frames at frame resolution, share of mask pixels that
   differ). For equal inputs medmem gets the model inputs the official loader makes (`load_video_frames`);
   frame 0's features are computed before the clock starts on both sides (the official predictor caches them
   when prompted; medmem's feature cache keeps only that slice);
2. peak memory for 1,000 vs 50 slices at 128² (each side reading the frames its own way: the official
   predictor loads every frame at init, medmem streams them from the uint8 volume).

Each (implementation, setting) runs in its own child process (clean peak RSS = ru_maxrss); by default the two
implementations of a setting run at the same time with one torch thread each (`--threads`), so that both see the
same load of a shared machine; CPU time per slice is the steadier number there.

    python benchmarks/propagation.py                  # writes benchmarks/results_cpu.json (about 10-15 min, 2 cores)
    python benchmarks/propagation.py --sizes 512 --slices 8 --memory-sizes 20,100   # a quick look
    python benchmarks/propagation.py --readme         # the README table of the JSON

Needs the official `sam2` package (scripts/setup.sh --test). Builds everything itself (`official_pair.py`).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
HERE = Path(__file__).resolve().parent
MODEL = "sam2.1_hiera_tiny"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(impl: str, size: int, frames_dir: str, inputs: str, out_npy: str, weights: str) -> dict:
    """One propagation in this process → timings, peak RSS; frame-resolution logits written to out_npy.
    medmem loads the official model's weights from `weights` (it never builds the official model)."""
    import torch

    from official_pair import box_of, build_medmem, build_official, read_frames

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    frames = read_frames(Path(frames_dir))
    n, h, w = frames.shape[:3]
    box = box_of((h, w))
    logits, count = [], 0
    with torch.inference_mode():
        if impl == "official":
            off = build_official(MODEL, size)
            base = _rss_mb()
            t0, c0 = time.perf_counter(), time.process_time()
            state = off.init_state(video_path=frames_dir)
            off.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=box)
            t1, c1 = time.perf_counter(), time.process_time()
            for _, _, m in off.propagate_in_video(state):
                if inputs == "official":  # kept for the output comparison (not in memory runs: it would grow RSS)
                    logits.append(m[0, 0].float().numpy())
                count += 1
        else:
            from medmem.allocator import tune_allocator
            from medmem.engine.volume import VolumeSession

            tune_allocator()  # what medmem.build_model does on the CPU
            model = build_medmem(MODEL, size, torch.load(weights, weights_only=True))
            if inputs == "official":  # the very model inputs the official loader makes
                from sam2.utils.misc import load_video_frames

                images = load_video_frames(frames_dir, size, False, compute_device=torch.device("cpu"))[0]
            base = _rss_mb()
            t0, c0 = time.perf_counter(), time.process_time()
            if inputs == "official":
                sess = VolumeSession.from_model_inputs(model, images, (h, w), policy="fifo", chunk=8)
            else:
                sess = VolumeSession(model, frames, policy="fifo", chunk=8)
            if os.environ.get("BENCH_PLAIN"):  # medmem without the fast memory path (for comparison)
                sess.memory_caches = None
            sess.add_prompt(0, 1, box=box)
            # the prompt encoded a chunk of slices; keep only the prompted slice, as the official predictor does
            for k in [k for k in sess.features._cache if k != 0]:
                del sess.features._cache[k]
            t1, c1 = time.perf_counter(), time.process_time()
            for s, _ in sess.propagate("forward"):
                if inputs == "official":
                    logits.append(sess.logits(1, s).float().numpy())
                count += 1
    t2, c2 = time.perf_counter(), time.process_time()
    np.save(out_npy, np.stack(logits).astype(np.float32) if logits else np.zeros(0, np.float32))
    rss = _rss_mb()
    return dict(impl=impl, image_size=size, slices=n, threads=torch.get_num_threads(), inputs=inputs,
                frames=count, total_s=round(t2 - t0, 2), propagate_s=round(t2 - t1, 2),
                propagate_cpu_s=round(c2 - c1, 2), slices_per_s=round(count / (t2 - t1), 3),
                slices_per_cpu_s=round(count / (c2 - c1), 3), peak_rss_mb=round(rss, 1),
                rss_growth_mb=round(rss - base, 1))


def _run_pair(n: int, size: int, inputs: str, tmp: Path, threads: int, parallel: bool) -> dict:
    from official_pair import make_frames, write_frames

    import torch

    from official_pair import build_official

    d = write_frames(make_frames(n), tmp / f"n{n}_s{size}")
    weights = tmp / f"weights_{size}.pt"
    if not weights.exists():  # the official model's random weights (built with the same seed in its child)
        torch.save(build_official(MODEL, size).state_dict(), weights)
    env = dict(os.environ, BENCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    cmds = {impl: [sys.executable, __file__, "--child", impl, str(size), str(d), inputs,
                   str(tmp / f"{impl}_n{n}_s{size}.npy"), str(weights)] for impl in ("official", "medmem")}
    runs = {}
    if parallel:
        procs = {i: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for i, c in cmds.items()}
        outs = {i: (*p.communicate(), p.returncode) for i, p in procs.items()}
    else:
        outs = {}
        for i, c in cmds.items():
            r = subprocess.run(c, capture_output=True, text=True, env=env)
            outs[i] = (r.stdout, r.stderr, r.returncode)
    for impl, (so, se, rc) in outs.items():
        runs[impl] = json.loads(so.strip().splitlines()[-1]) if rc == 0 else dict(impl=impl, error=se[-2000:])
        print(json.dumps(runs[impl]), flush=True)
    o, m = runs["official"], runs["medmem"]
    row = dict(slices=n, image_size=size, inputs=inputs, official=o, medmem=m)
    if "error" not in o and "error" not in m:
        row.update(speedup_wall=round(m["slices_per_s"] / o["slices_per_s"], 3),
                   speedup_cpu=round(m["slices_per_cpu_s"] / o["slices_per_cpu_s"], 3))
    if "error" not in o and "error" not in m and inputs == "official":
        a, b = np.load(tmp / f"official_n{n}_s{size}.npy"), np.load(tmp / f"medmem_n{n}_s{size}.npy")
        row.update(max_abs_logit_diff=float(np.abs(a - b).max()) if a.shape == b.shape else None,
                   mask_pixels_differing=float(((a > 0) != (b > 0)).mean()) if a.shape == b.shape else None,
                   mask_pixels_official=int((a > 0).sum()))
    return row


def readme_table(data: dict) -> str:
    lines = ["| setting | official slices/s | medmem slices/s | ratio (wall) | ratio (CPU time) | "
             "max logit diff | official peak RSS | medmem peak RSS |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["speed"] + data["memory"]:
        if "speedup_wall" not in r:
            continue
        o, m = r["official"], r["medmem"]
        diff = f"{r['max_abs_logit_diff']:.1e}" if r["inputs"] == "official" else "(own inputs)"
        lines.append(f"| {r['image_size']}², {r['slices']} slices | {o['slices_per_s']:.3f} | {m['slices_per_s']:.3f} | "
                     f"{r['speedup_wall']:.2f}× | {r['speedup_cpu']:.2f}× | {diff} | "
                     f"{o['peak_rss_mb']:.0f} MB | {m['peak_rss_mb']:.0f} MB |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512,1024", help="image sizes of the speed comparison")
    ap.add_argument("--slices", default="12,8", help="slices per speed size (one value, or one per size)")
    ap.add_argument("--memory-sizes", default="50,1000", help="volume lengths of the memory comparison (128²)")
    ap.add_argument("--memory-image-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per implementation")
    ap.add_argument("--sequential", action="store_true", help="run the two implementations one after the other")
    ap.add_argument("--out", default=str(HERE / "results_cpu.json"))
    ap.add_argument("--readme", action="store_true", help="print the README table of --out and exit")
    ap.add_argument("--child", nargs=6, metavar=("IMPL", "SIZE", "FRAMES", "INPUTS", "NPY", "WEIGHTS"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        impl, size, d, inputs, npy, weights = a.child
        print(json.dumps(child(impl, int(size), d, inputs, npy, weights)))
        return
    if a.readme:
        print(readme_table(json.loads(Path(a.out).read_text())))
        return
    sizes = [int(s) for s in a.sizes.split(",") if s]
    slices = [int(s) for s in a.slices.split(",")]
    slices = slices * len(sizes) if len(slices) == 1 else slices
    data = {"model": MODEL, "threads_per_implementation": a.threads, "parallel": not a.sequential,
            "machine": f"{os.cpu_count()} cores", "speed": [], "memory": []}
    with tempfile.TemporaryDirectory() as tmp:
        for size, n in zip(sizes, slices):
            data["speed"].append(_run_pair(n, size, "official", Path(tmp), a.threads, not a.sequential))
            Path(a.out).write_text(json.dumps(data, indent=2))  # kept as it grows
        mem = [int(s) for s in a.memory_sizes.split(",") if s]
        for n in mem:
            data["memory"].append(_run_pair(n, a.memory_image_size, "own", Path(tmp), a.threads, not a.sequential))
            Path(a.out).write_text(json.dumps(data, indent=2))
    if len(mem) >= 2:
        by = {r["slices"]: r for r in data["memory"]}
        lo, hi = by[min(mem)], by[max(mem)]
        for impl in ("official", "medmem"):
            if "peak_rss_mb" in lo[impl] and "peak_rss_mb" in hi[impl]:
                data[f"{impl}_peak_ratio_{max(mem)}_vs_{min(mem)}"] = round(
                    hi[impl]["peak_rss_mb"] / lo[impl]["peak_rss_mb"], 3)
    Path(a.out).write_text(json.dumps(data, indent=2))
    print(json.dumps({k: v for k, v in data.items() if k not in ("speed", "memory")}))
    print(readme_table(data))


if __name__ == "__main__":
    main()
