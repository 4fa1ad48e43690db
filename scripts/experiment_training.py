#!/usr/bin/env python
"""Training-time experiments of issue 6 (item 5): temporal adapter, label noise × confidence memory,
continual learning × memory. Every run fine-tunes the same pre-trained weights (stage 1 of
`scripts/train_default_model.sh`) at 128² on a separate MedBank-mini draw (seed 1), one CPU
thread per run, and is evaluated on that draw's held-out test split (clean labels):
3D cases by one box on the largest slice + propagation both ways, 2D cases by the box.

    python scripts/experiment_training.py --pretrained runs/default/model.safetensors \\
        --out runs/exp --json docs/experiments_training.json

Runs already finished in ``--out`` are re-used (delete a run folder to redo it). Prints the
Markdown tables that docs/results.md holds.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import medmem
from medmem.eval.one_box import evaluate_manifest

TASKS_3D = ("ct_liver_tumor", "ct_kidney", "ct_aorta", "ct_lung_nodule", "ct_abdomen_multi", "ct_vertebrae",
            "mri_brain_tumor", "mri_hippocampus", "mri_cardiac", "mri_prostate", "us_echo_lv")
TASKS_NOISE = ("ct_kidney", "ct_liver_tumor", "mri_prostate", "us_breast_lesion", "xray_chest", "dermoscopy_lesion")
TASKS_CONTINUAL = ("ct_kidney", "xray_chest", "us_breast_lesion", "mri_cardiac", "dermoscopy_lesion")


def run_train(out: Path, args, extra: list, seed: int = 0) -> Path:
    weights = out / "model.safetensors"
    if weights.is_file():
        return weights
    cmd = [str(Path(sys.executable).with_name("medmem")), "train", "--data", str(args.data), "--config", args.config,
           "--init", str(args.pretrained), "--out", str(out), "--batch-size", "4", "--clip-len", "3",
           "--lr", "1e-4", "--warmup", "20", "--correction-iters", "1", "--save-every", "50", "--seed", str(seed),
           "--no-progress", "--resume", *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "stdout.log", "a") as log:
        subprocess.run(cmd, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    print(f"  trained in {time.perf_counter() - t0:.0f} s", flush=True)
    return weights


def evaluate(weights: Path, data: Path, tasks, cache: Path = None) -> dict:
    """Test-split Dice of ``weights`` on ``tasks``; cached beside a run's weights (delete to redo)."""
    cache = cache or weights.parent / "eval_test.json"
    if cache.is_file() and cache.stat().st_mtime >= weights.stat().st_mtime:
        return json.loads(cache.read_text())
    model = medmem.build_model(checkpoint=weights, device="cpu")
    res = evaluate_manifest(model, str(data), max_per_task=0, split="test", tasks=tasks)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrained", required=True, help="stage-1 weights (runs/default/model.safetensors)")
    ap.add_argument("--data", default="runs/medbank_exp/manifest.json")
    ap.add_argument("--config", default="medmem_small_128")
    ap.add_argument("--out", default="runs/exp")
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--steps-per-task", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--which", default="adapter,noise,continual")
    ap.add_argument("--seeds", default="0,1", help="training seeds of the adapter and noise runs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_file():
        subprocess.run([str(Path(sys.executable).with_name("medmem")), "data", "synth", str(data.parent), "--seed", "1",
                        "--size", "128", "--cases-per-task", "16"], check=True)
    out = Path(args.out)
    which = set(args.which.split(","))
    seeds = [int(v) for v in args.seeds.split(",")]
    results = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).is_file() else {}
    results["setup"] = dict(pretrained=str(args.pretrained), data=str(data), config=args.config, steps=args.steps,
                            steps_per_task=args.steps_per_task, threads=args.threads)
    common = ["--steps", str(args.steps), "--val-every", "0", "--val-cases", "1"]

    if "adapter" in which:
        rows = {}
        rows["stage-1 weights, no fine-tuning (at their 256²)"] = evaluate(Path(args.pretrained), data, TASKS_3D,
                                                                           out / "pretrained_eval_test.json")
        for name, extra in (("fine-tuned, no adapter", []), ("fine-tuned, temporal adapter (T=3)",
                                                               ["--adapter-frames", "3"])):
            for seed in seeds:
                w = run_train(out / (("adapter_on" if extra else "adapter_off") + _dir_suffix(seed)), args,
                              common + ["--tasks", ",".join(TASKS_3D)] + extra, seed)
                rows[name + _suffix(seed)] = evaluate(w, data, TASKS_3D)
        results["adapter"] = rows
        _save(args, results)

    if "noise" in which:
        rows = {}
        for noise in (0.0, 0.3):
            for memory in ("fifo", "confidence"):
                for seed in seeds:
                    name = f"noise{int(noise * 100)}_{memory}"
                    w = run_train(out / (name + _dir_suffix(seed)), args, common + [
                        "--tasks", ",".join(TASKS_NOISE), "--label-noise", str(noise), "--memory", memory], seed)
                    rows[name + _suffix(seed)] = evaluate(w, data, TASKS_NOISE)
        results["noise"] = rows
        _save(args, results)

    if "continual" in which:
        rows = {}
        for memory in ("fifo", "confidence"):
            for seed in seeds:
                name = f"continual_{memory}"
                steps = args.steps_per_task * len(TASKS_CONTINUAL)
                w = run_train(out / (name + _dir_suffix(seed)), args, [
                    "--steps", str(steps), "--steps-per-task", str(args.steps_per_task), "--schedule", "continual",
                    "--tasks", ",".join(TASKS_CONTINUAL), "--memory", memory, "--val-cases", "0"], seed)
                cont = json.loads((w.parent / "continual.json").read_text())
                rows[name + _suffix(seed)] = dict(continual=cont, test=evaluate(w, data, TASKS_CONTINUAL))
        results["continual"] = rows
        _save(args, results)
    print_tables(results)


def _suffix(seed: int) -> str:
    return "" if seed == 0 else f" seed{seed}"


def _dir_suffix(seed: int) -> str:
    return "" if seed == 0 else f"_seed{seed}"


def _by_setting(rows: dict) -> dict:
    """{"name" / "name seedN": result} -> {name: [mean Dice per seed, ...]}"""
    out: dict = {}
    for k, v in rows.items():
        out.setdefault(k.split(" seed")[0], []).append(v["mean_dice"])
    return out


def _save(args, results) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


def print_tables(r: dict) -> None:
    if "adapter" in r:
        rows = r["adapter"]
        tasks = sorted(next(iter(rows.values()))["tasks"])
        print("\n| model (seed) | mean 3D Dice | " + " | ".join(tasks) + " |")
        print("|---|---|" + "---|" * len(tasks))
        for name, v in rows.items():
            print(f"| {name} | {v['mean_dice']:.3f} | " + " | ".join(f"{v['tasks'][t]['dice']:.3f}" for t in tasks)
                  + " |")
        print("\n| model | mean 3D Dice per seed | mean over seeds |")
        print("|---|---|---|")
        for name, vals in _by_setting(rows).items():
            print(f"| {name} | {', '.join(f'{x:.3f}' for x in vals)} | {np.mean(vals):.3f} |")
    if "noise" in r:
        print("\n| label noise | memory in training | mean Dice per seed (clean test labels) | mean over seeds |")
        print("|---|---|---|---|")
        for name, vals in _by_setting(r["noise"]).items():
            noise, memory = name[len("noise"):].split("_", 1)
            print(f"| {noise}% | {memory} | {', '.join(f'{x:.3f}' for x in vals)} | {np.mean(vals):.3f} |")
    if "continual" in r:
        print("\n| memory (seed) | final mean val Dice | avg. forgetting | per-task forgetting | test Dice after all tasks |")
        print("|---|---|---|---|---|")
        for name, v in r["continual"].items():
            s = (v["continual"] or {}).get("summary", {}).get("dice", {})
            forget = s.get("forgetting", {})
            print(f"| {name.split('_', 1)[1]} | {_fmt(s.get('final_mean'))} | "
                  f"{_fmt(s.get('avg_forgetting'))} | " + ", ".join(f"{k} {_fmt(x)}" for k, x in forget.items())
                  + f" | {v['test']['mean_dice']:.3f} |")


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


if __name__ == "__main__":
    main()
