"""Training speed on the CPU (docs/training.md): optimizer steps per second, one thread.

Steps of 4 samples with the default prompt settings, on MedBank-mini (`medmem data synth runs/medbank --seed 0
--size 128 --tasks ...`): a 3D task (clips of 8 slices) and a 2D task (single images), for `test_tiny` and
`medmem_small_256`, each from fresh random weights through `medmem.train.train`. The first step of each
run (warm-up: allocations, lazy initialisation) is not counted; the seconds per step come from the trainer's
own log (`metrics.jsonl`, key `time`). The machine's load average is recorded: on a shared machine the
figures are slower than on an idle one.

    python benchmarks/train_speed.py --data runs/medbank/manifest.json --out benchmarks/results_train_speed_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--task3d", default="ct_kidney")
    ap.add_argument("--task2d", default="xray_chest")
    ap.add_argument("--configs", default="test_tiny,medmem_small_256")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per run (after one warm-up step)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch

    from medmem.config import get_config
    from medmem.model.sam2 import SAM2Model
    from medmem.train.config import TrainConfig
    from medmem.train.trainer import train

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows = []
    for cfg_name in a.configs.split(","):
        for kind, task in (("3d_clips", a.task3d), ("2d_images", a.task2d)):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = TrainConfig(data=a.data, model=cfg_name, tasks=(task,), steps=a.steps + 1, batch_size=4,
                                  clip_len=8, out=tmp, val_every=0, save_every=10 ** 6, log_every=1, progress=False,
                                  device="cpu", seed=0)
                train(cfg)
                recs = [json.loads(ln) for ln in (Path(tmp) / "metrics.jsonl").read_text().splitlines() if ln.strip()]
                times = [r["time"] for r in recs if "time" in r and "val" not in r][1:]
            row = dict(config=cfg_name, parameters=SAM2Model.count_parameters(get_config(cfg_name)),
                       input=get_config(cfg_name).image_size, kind=kind, task=task, timed_steps=len(times),
                       seconds_per_step=round(sum(times) / len(times), 3),
                       steps_per_second=round(len(times) / sum(times), 3))
            rows.append(row)
            print(json.dumps(row), flush=True)
    res = dict(command=f"python benchmarks/train_speed.py --data {a.data} --out {a.out}", threads=1,
               batch_size=4, clip_len=8, rows=rows, cpus=os.cpu_count(), machine=platform.machine(),
               loadavg_before=[round(v, 2) for v in load_before], loadavg_after=[round(v, 2) for v in os.getloadavg()])
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
