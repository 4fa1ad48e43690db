"""Where the time of one propagated slice goes: image encoder, memory attention, mask decoder (+ prompt encoder),
memory encoder, pre/post-processing, and the rest (Python, memory selection, bookkeeping).

Runs (each in its own child process): SAM 2.1 tiny (random weights) at 256², 512², 1024² through medmem's
VolumeSession (fast path, and plain path with `--plain`) and through the official video predictor (same weights,
same frames and box), and the default model (`medmem.build_model("default")`) at its size. A synthetic 13-slice
volume, a box on slice 0, forward propagation; per-slice times are averaged over slices 8-11 (the memory is full
from slice 7; medmem encodes slices 8-15 as one chunk, counted over the slices it serves). Stage times are
exclusive (a stage called inside another is not counted twice). Op-level tables (torch.profiler) of one encoder
call and one memory-attention call with a full memory come with each medmem run.

    python benchmarks/profile_step.py                       # all runs, writes benchmarks/results_profile_cpu.json
    python benchmarks/profile_step.py --sizes 512 --impls medmem,official --threads 1
    python benchmarks/profile_step.py --table               # the markdown table of the JSON (docs/speed.md)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES = ["image_encoder", "memory_attention", "mask_decoder", "memory_encoder", "pre_post", "overhead"]
N_SLICES, WINDOW = 13, range(8, 12)
HERE = Path(__file__).resolve().parent


def clock() -> float:
    """The timer: this thread's CPU time with one torch thread (robust to other processes on a shared machine:
    what the slice costs, not how long it waited for a core), else wall time."""
    import torch

    return time.thread_time() if torch.get_num_threads() == 1 else time.perf_counter()


class StageTimer:
    """Exclusive time (`clock`) per stage of wrapped callables."""

    def __init__(self) -> None:
        self.total: Dict[str, float] = defaultdict(float)
        self._stack: List[float] = []

    def wrap(self, obj, attr: str, stage: str) -> None:
        f: Callable = getattr(obj, attr)

        def timed(*a, **k):
            t0 = clock()
            self._stack.append(0.0)
            try:
                return f(*a, **k)
            finally:
                d = clock() - t0
                inner = self._stack.pop()
                self.total[stage] += d - inner
                if self._stack:
                    self._stack[-1] += d

        setattr(obj, attr, timed)

    def snapshot(self) -> Dict[str, float]:
        return dict(self.total)


def _per_slice(marks: Dict[int, tuple]) -> dict:
    """Mean per-slice ms of each stage over WINDOW from (time, stage totals) marks taken at each yield."""
    acc = defaultdict(float)
    for s in WINDOW:
        (t0, a), (t1, b) = marks[s - 1], marks[s]
        wall = t1 - t0
        staged = 0.0
        for k in STAGES[:-1]:
            d = b.get(k, 0.0) - a.get(k, 0.0)
            acc[k] += d
            staged += d
        acc["overhead"] += wall - staged
        acc["total"] += wall
    n = len(WINDOW)
    return {k: round(1000 * acc[k] / n, 1) for k in STAGES + ["total"]}


def _top_ops(fn: Callable, k: int = 6) -> list:
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as p:
        fn()
    ev = sorted(p.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    tot = sum(e.self_cpu_time_total for e in ev) or 1.0
    del torch
    return [dict(op=e.key, ms=round(e.self_cpu_time_total / 1000, 1), share=round(e.self_cpu_time_total / tot, 3))
            for e in ev[:k]]


def child(impl: str, model_name: str, size: int, frames_dir: str) -> dict:
    import numpy as np
    import torch

    from official_pair import box_of, build_medmem, build_official, read_frames

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    frames = read_frames(Path(frames_dir))
    box = box_of(frames.shape[1:3])
    timer = StageTimer()
    marks: Dict[int, tuple] = {}
    res = dict(impl=impl, model=model_name, image_size=size, threads=torch.get_num_threads(),
               clock="thread CPU time" if torch.get_num_threads() == 1 else "wall")
    with torch.inference_mode():
        if impl == "official":
            off = build_official(model_name, size)
            for attr, stage in [("forward_image", "image_encoder"),
                                ("_prepare_memory_conditioned_features", "memory_attention"),
                                ("_forward_sam_heads", "mask_decoder"), ("_use_mask_as_output", "mask_decoder"),
                                ("_encode_new_memory", "memory_encoder"), ("_get_orig_video_res_output", "pre_post")]:
                timer.wrap(off, attr, stage)
            state = off.init_state(video_path=frames_dir)
            off.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=box)
            marks[-1] = (clock(), timer.snapshot())
            for s, _, _ in off.propagate_in_video(state):
                marks[s] = (clock(), timer.snapshot())
        else:
            import medmem
            from medmem.engine import volume as volume_mod
            from medmem.engine.volume import VolumeSession

            if model_name == "default":
                model = medmem.build_model("default", device="cpu")
                size = res["image_size"] = model.image_size
            else:
                from medmem.allocator import tune_allocator

                tune_allocator()  # as medmem.build_model does on the CPU
                model = build_medmem(model_name, size, build_official(model_name, size).state_dict())
            for attr, stage in [("encode_image", "image_encoder"), ("condition_on_memory", "memory_attention"),
                                ("sam_heads", "mask_decoder"), ("encode_memory", "memory_encoder")]:
                timer.wrap(model, attr, stage)
            timer.wrap(volume_mod, "looks_present", "pre_post")
            sess = VolumeSession(model, frames, policy="fifo", chunk=8)
            if impl == "medmem_plain":
                sess.memory_caches = None
            for attr in ("mask", "_result", "_entry", "_previous_box"):
                timer.wrap(sess, attr, "pre_post")
            timer.wrap(sess.frames, "get", "pre_post")
            sess.add_prompt(0, 1, box=box)
            marks[-1] = (clock(), timer.snapshot())
            for s, _ in sess.propagate("forward"):
                marks[s] = (clock(), timer.snapshot())
            if impl == "medmem":  # op-level split of the two big stages, outside the session
                from medmem.model import MaskMemory, ObjectPointer
                from medmem.model.memory_attention import MemoryKVCache

                cfg = model.cfg
                x = torch.randn(1, 3, size, size)
                feats = model.encode_image(x)
                g = model.memory_grid(feats.vision_feats).shape[-1]
                mems = [MaskMemory(torch.randn(1, cfg.mem_dim, g, g).bfloat16(), torch.randn(1, cfg.mem_dim, g, g), t)
                        for t in range(cfg.num_maskmem)]
                ptrs = [ObjectPointer(torch.randn(1, cfg.hidden_dim), t) for t in range(1, 16)]
                cache = MemoryKVCache(max_idle=10)
                res["ops_image_encoder"] = _top_ops(lambda: model.encode_image(x))
                res["ops_memory_attention"] = _top_ops(lambda: model.condition_on_memory(feats, mems, ptrs, 15, cache))
                res["ops_memory_attention_plain"] = _top_ops(lambda: model.condition_on_memory(feats, mems, ptrs, 15))
    res["image_size"] = size
    res["per_slice_ms"] = _per_slice(marks)
    res["slices_averaged"] = [WINDOW.start, WINDOW.stop - 1]
    del np
    return res


def table(data: dict) -> str:
    """Markdown table of per-slice stage times (ms and share of the slice)."""
    head = ("| model | size | implementation | image encoder | memory attention | mask decoder + prompt | "
            "memory encoder | pre/post | rest (Python, selection) | total ms/slice |")
    lines = [head, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["runs"]:
        if "error" in r:
            continue
        p = r["per_slice_ms"]
        cells = [f"{p[k]:.0f} ({100 * p[k] / p['total']:.0f}%)" for k in STAGES]
        lines.append(f"| {r['model']} | {r['image_size']}² | {r['impl']} | " + " | ".join(cells)
                     + f" | {p['total']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--impls", default="official,medmem")
    ap.add_argument("--plain-sizes", default="512", help="sizes also run through medmem's plain memory path")
    ap.add_argument("--no-default", action="store_true", help="skip the default model's run")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per run (default 1: times are then the thread's CPU time, robust to other "
                         "processes; more threads: wall time)")
    ap.add_argument("--out", default=str(HERE / "results_profile_cpu.json"))
    ap.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    ap.add_argument("--child", nargs=4, metavar=("IMPL", "MODEL", "SIZE", "FRAMES_DIR"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        impl, model, size, d = a.child
        print(json.dumps(child(impl, model, int(size), d)))
        return
    if a.table:
        print(table(json.loads(Path(a.out).read_text())))
        return
    from official_pair import make_frames, write_frames

    env = dict(os.environ)
    env["BENCH_THREADS"] = str(a.threads)
    runs = [(impl, a.model, int(s)) for s in a.sizes.split(",") for impl in a.impls.split(",")]
    runs += [("medmem_plain", a.model, int(s)) for s in a.plain_sizes.split(",") if s]
    if not a.no_default:
        runs.append(("medmem", "default", 0))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        d = write_frames(make_frames(N_SLICES), Path(tmp) / "frames")
        for impl, model, size in runs:
            cmd = [sys.executable, __file__, "--child", impl, model, str(size), str(d)]
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode != 0:
                res = dict(impl=impl, model=model, image_size=size, error=r.stderr.strip().splitlines()[-3:])
            else:
                res = json.loads(r.stdout.strip().splitlines()[-1])
            print(json.dumps({k: v for k, v in res.items() if not k.startswith("ops_")}), flush=True)
            results.append(res)
            Path(a.out).write_text(json.dumps(dict(partial=True, runs=results), indent=2))
    data = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "torch_threads": a.threads, "slices": N_SLICES,
            "clock": "thread CPU time (1 torch thread)" if a.threads == 1 else "wall time",
            "note": "shared machine (other processes ran); ratios within one run are what count",
            "runs": results}
    Path(a.out).write_text(json.dumps(data, indent=2))
    print(table(data))


if __name__ == "__main__":
    main()
