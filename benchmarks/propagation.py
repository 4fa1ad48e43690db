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
    python benchmarks/propagation.py --fast-paths ""  # official vs medmem torch fp32 only
    python benchmarks/propagation.py --readme         # the README table of the JSON

3. medmem's fast paths beside them, in the same run and under the same load (`--fast-paths`): the
   onnxruntime backend (fp32 graphs), onnxruntime dynamic int8, and bf16 autocast on the CPU. Their graphs are
   exported before the clock starts (the export time is reported apart). Each is compared with the official
   outputs (max |logit difference|, pixels that differ, Dice of the masks). bf16 runs only the first
   `--bf16-slices` slices when the CPU lacks native bf16 (torch's CPU capability below AVX512): emulated bf16 is
   far slower there, and the cap keeps the run short; the capability is recorded. A capped run's CPU-time ratio
   is taken against the official predictor's CPU time for the same first frames (early frames attend to fewer
   memories, so they are cheaper than the average frame); its wall ratio is not given.

Needs the official `sam2` package (scripts/setup.sh --test) and, for the onnxruntime paths, the `onnx` extra.
Builds everything itself (`official_pair.py`).
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
FAST_PATHS = ("onnxruntime", "onnxruntime-int8", "bf16")


def cpu_capability() -> str:
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # older torch
        return "unknown"


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
    logits, count, backend, frame_cpu = [], 0, "torch", []
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
                frame_cpu.append(time.process_time())
        else:
            from medmem.allocator import tune_allocator
            from medmem.engine.volume import VolumeSession

            tune_allocator()  # what medmem.build_model does on the CPU
            model = build_medmem(MODEL, size, torch.load(weights, weights_only=True))
            fast = impl.split(":", 1)[1] if ":" in impl else ""
            backend = fast if fast.startswith("onnxruntime") else "torch"
            dtype = torch.bfloat16 if fast == "bf16" else None
            if backend != "torch":  # graphs exported (and int8 quantised) before the clock starts
                from medmem.export.backend import as_backend

                te = time.perf_counter()
                model = as_backend(model, backend)
                export_s = round(time.perf_counter() - te, 2)
            if inputs == "official":  # the very model inputs the official loader makes
                from sam2.utils.misc import load_video_frames

                images = load_video_frames(frames_dir, size, False, compute_device=torch.device("cpu"))[0]
            base = _rss_mb()
            t0, c0 = time.perf_counter(), time.process_time()
            kw = dict(policy="fifo", chunk=8, backend=backend, dtype=dtype)
            if inputs == "official":
                sess = VolumeSession.from_model_inputs(model, images, (h, w), **kw)
            else:
                sess = VolumeSession(model, frames, **kw)
            if os.environ.get("BENCH_PLAIN"):  # medmem without the fast memory path (for comparison)
                sess.memory_caches = None
            sess.add_prompt(0, 1, box=box)
            # the prompt encoded a chunk of slices; keep only the prompted slice, as the official predictor does
            for k in [k for k in sess.features._cache if k != 0]:
                del sess.features._cache[k]
            t1, c1 = time.perf_counter(), time.process_time()
            limit = int(os.environ.get("BENCH_LIMIT", "0")) or n
            for s, _ in sess.propagate("forward"):
                if inputs == "official":
                    logits.append(sess.logits(1, s).float().numpy())
                count += 1
                frame_cpu.append(time.process_time())
                if count >= limit:
                    break
    t2, c2 = time.perf_counter(), time.process_time()
    np.save(out_npy, np.stack(logits).astype(np.float32) if logits else np.zeros(0, np.float32))
    rss = _rss_mb()
    extra = {"export_s": export_s} if impl != "official" and backend != "torch" else {}
    return dict(impl=impl, image_size=size, slices=n, threads=torch.get_num_threads(), inputs=inputs, **extra,
                frames=count, total_s=round(t2 - t0, 2), propagate_s=round(t2 - t1, 2),
                propagate_cpu_s=round(c2 - c1, 2), slices_per_s=round(count / (t2 - t1), 3),
                slices_per_cpu_s=round(count / (c2 - c1), 3), peak_rss_mb=round(rss, 1),
                cumulative_cpu_s=[round(c - c1, 3) for c in frame_cpu],
                rss_growth_mb=round(rss - base, 1))


def _compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Outputs of two runs (logits (N, H, W) at frame resolution; b may cover only the first frames)."""
    if b.ndim != 3 or a.ndim != 3 or a.shape[1:] != b.shape[1:] or len(b) > len(a):
        return {}
    from medmem.eval.metrics import dice

    a = a[:len(b)]
    ma, mb = a > 0, b > 0
    return dict(frames_compared=int(len(b)), max_abs_logit_diff=float(np.abs(a - b).max()),
                mask_pixels_differing=float((ma != mb).mean()), mask_pixels_official=int(ma.sum()),
                dice_vs_official=round(dice(mb, ma), 5))


def _run_pair(n: int, size: int, inputs: str, tmp: Path, threads: int, parallel: bool,
              fast_paths=(), bf16_slices: int = 0) -> dict:
    """Official vs medmem (torch fp32), plus medmem's fast paths, on one setting; all at the same time
    (`parallel`) or one after the other."""
    import torch

    from official_pair import build_official, make_frames, write_frames

    d = write_frames(make_frames(n), tmp / f"n{n}_s{size}")
    weights = tmp / f"weights_{size}.pt"
    if not weights.exists():  # the official model's random weights (built with the same seed in its child)
        torch.save(build_official(MODEL, size).state_dict(), weights)
    env = dict(os.environ, BENCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MEDMEM_ONNX_CACHE=str(tmp / "onnx"))
    impls = ["official", "medmem"] + [f"medmem:{f}" for f in fast_paths]
    npy = {i: tmp / f"{i.replace(':', '_')}_n{n}_s{size}.npy" for i in impls}
    cmds = {i: [sys.executable, __file__, "--child", i, str(size), str(d), inputs, str(npy[i]), str(weights)]
            for i in impls}
    envs = {i: dict(env, BENCH_LIMIT=str(bf16_slices)) if i == "medmem:bf16" and bf16_slices else env
            for i in impls}
    runs = {}
    if parallel:
        procs = {i: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=envs[i])
                 for i, c in cmds.items()}
        outs = {i: (*p.communicate(), p.returncode) for i, p in procs.items()}
    else:
        outs = {}
        for i, c in cmds.items():
            r = subprocess.run(c, capture_output=True, text=True, env=envs[i])
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
        row.update({k: v for k, v in _compare(np.load(npy["official"]), np.load(npy["medmem"])).items()
                    if k != "frames_compared"})
    if fast_paths:
        row["fast_paths"] = {}
        for f in fast_paths:
            r = runs[f"medmem:{f}"]
            if "error" not in r and "error" not in o:
                r = dict(r, speedup_wall=round(r["slices_per_s"] / o["slices_per_s"], 3),
                         speedup_cpu=round(r["slices_per_cpu_s"] / o["slices_per_cpu_s"], 3))
                k = r["frames"]
                if k < o["frames"]:  # a capped run: against the official CPU time of the same first k frames
                    # (the first frames attend to fewer memories, so they are cheaper than the average)
                    r.update(speedup_wall=None, speedup_cpu=round(o["cumulative_cpu_s"][k - 1] / r["propagate_cpu_s"], 3))
                if inputs == "official":
                    r.update(_compare(np.load(npy["official"]), np.load(npy[f"medmem:{f}"])))
            row["fast_paths"][f] = r
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
    fast = [(r, f, x) for r in data["speed"] for f, x in r.get("fast_paths", {}).items()]
    if fast:
        lines += ["", "| setting | medmem fast path | slices/s | ratio to official (wall) | ratio (CPU time) | "
                  "max logit diff | mask Dice vs official | export s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r, f, x in fast:
            if "speedup_cpu" not in x:
                lines.append(f"| {r['image_size']}², {r['slices']} slices | {f} | failed: "
                             f"{x.get('error', '?').strip().splitlines()[-1][:80]} | | | | | |")
                continue
            part = f" (first {x['frames']})" if x["frames"] < r["slices"] else ""
            wall = "—" if x["speedup_wall"] is None else f"{x['speedup_wall']:.2f}×"
            lines.append(f"| {r['image_size']}², {r['slices']} slices{part} | {f} | {x['slices_per_s']:.3f} | "
                         f"{wall} | {x['speedup_cpu']:.2f}× | "
                         f"{x.get('max_abs_logit_diff', float('nan')):.1e} | {x.get('dice_vs_official', float('nan')):.4f} | "
                         f"{x.get('export_s', 0):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512,1024", help="image sizes of the speed comparison")
    ap.add_argument("--slices", default="12,8", help="slices per speed size (one value, or one per size)")
    ap.add_argument("--memory-sizes", default="50,1000", help="volume lengths of the memory comparison (128²)")
    ap.add_argument("--memory-image-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per implementation")
    ap.add_argument("--sequential", action="store_true", help="run the implementations one after the other")
    ap.add_argument("--fast-paths", default=",".join(FAST_PATHS),
                    help=f"medmem fast paths beside the pair, comma list of {', '.join(FAST_PATHS)} ('' for none)")
    ap.add_argument("--bf16-slices", type=int, default=2,
                    help="on a CPU without native bf16, propagate only this many slices in bf16 (0: all)")
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
    fast = [f for f in a.fast_paths.split(",") if f]
    bad = [f for f in fast if f not in FAST_PATHS]
    if bad:
        sys.exit(f"unknown fast path(s) {bad}; choose from {', '.join(FAST_PATHS)}")
    cap = cpu_capability()
    native_bf16 = cap.startswith("AVX512") or cap.startswith("AMX")
    bf16_slices = 0 if native_bf16 else a.bf16_slices
    data = {"model": MODEL, "threads_per_implementation": a.threads, "parallel": not a.sequential,
            "machine": f"{os.cpu_count()} cores", "torch_cpu_capability": cap,
            "command": "python benchmarks/propagation.py " + " ".join(sys.argv[1:]),
            "bf16_slices_cap": bf16_slices or None, "speed": [], "memory": []}
    with tempfile.TemporaryDirectory() as tmp:
        for size, n in zip(sizes, slices):
            data["speed"].append(_run_pair(n, size, "official", Path(tmp), a.threads, not a.sequential,
                                           fast, bf16_slices))
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
