"""`medmem train`: the trainer from the command line (single process, or every rank under torchrun)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import click

from .config import RESUMABLE_FIELDS


def _csv(value: Optional[str]) -> Optional[tuple]:
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


@click.command("train")
@click.option("--data", type=click.Path(exists=True), multiple=True,
              help="MedBank-mini manifest (or its folder), or an MSD / nnU-Net / SAMed-2 PNG / CVPR-npz dataset "
              "folder; repeat to train on several sources at once.")
@click.option("--config", "model", help="model config name (`medmem models`) [the config of --init]")
@click.option("--init", type=click.Path(exists=True, dir_okay=False), help="starting weights (.pt / .safetensors)")
@click.option("--out", type=click.Path(file_okay=False), help="run folder [runs/train]")
@click.option("--steps", type=int, help="optimizer updates [1000]")
@click.option("--batch-size", type=int, help="samples per micro-batch and process [4]")
@click.option("--clip-len", type=int, help="slices/frames per 3D or video sample [8]")
@click.option("--lr", type=float, help="peak learning rate [1e-4]")
@click.option("--warmup", type=int, help="linear warm-up steps [100]")
@click.option("--weight-decay", type=float, help="AdamW weight decay [0.1]")
@click.option("--grad-clip", type=float, help="max gradient norm, 0 = off [0.1]")
@click.option("--freeze", help="comma list of: image_encoder, temporal_adapter, prompt_encoder, mask_decoder, memory, "
              "litemedsam")
@click.option("--encoder-cache", type=int, help="with a frozen image encoder, cache this many slices' features [0]")
@click.option("--encoder-cache-dir", help="also keep the cached features in this folder, for later runs")
@click.option("--layer-decay", type=float, help="layer-wise lr decay over the Hiera trunk [1.0 = off]")
@click.option("--accum", type=int, help="gradient accumulation micro-batches [1]")
@click.option("--amp", type=click.Choice(["auto", "bf16", "none"]), help="autocast [auto: bf16 on CUDA]")
@click.option("--adapter-frames", type=int, help="add a SAMed-2 temporal adapter with this clip length [0 = none]")
@click.option("--memory", type=click.Choice(["fifo", "confidence"]), help="memory in training [fifo]")
@click.option("--bank-capacity", type=int, help="confidence bank entries [640]")
@click.option("--bank-k", type=int, help="bank entries retrieved per frame [4]")
@click.option("--bank-threshold", type=float, help="minimum confidence to enter the bank [0.5]")
@click.option("--full-clip-prob", type=float,
              help="probability of a clip whose every slice contains the object; below 1, clips may run past the "
              "object's end, so the object-score head sees absent slices [1.0]")
@click.option("--correction-iters", type=int, help="corrective clicks per corrected frame [3]")
@click.option("--tasks", help="comma list of tasks (the task order for --schedule continual)")
@click.option("--schedule", type=click.Choice(["standard", "continual"]), help="[standard]")
@click.option("--steps-per-task", type=int, help="continual: steps per task")
@click.option("--noisy-labels/--clean-labels", default=None, help="train on the synthetic noisy labels [clean]")
@click.option("--label-noise", type=float, help="corrupt this fraction of training labels on the fly [0]")
@click.option("--intensity",
              help="scaling to [0, 1]: auto | percentile | minmax | a CT window name (soft_tissue, lung, bone, ...) [auto]")
@click.option("--val-every", type=int, help="validate every N steps (0 = at the end only) [0]")
@click.option("--val-cases", type=int, help="held-out cases per validation, 0 = all [32]")
@click.option("--save-every", type=int, help="checkpoint every N steps [100]")
@click.option("--stop-at", type=int, help="stop (with a checkpoint) after this step; the schedule still spans --steps")
@click.option("--resume", is_flag=True, help="continue from OUT/checkpoint.pt if it exists")
@click.option("--seed", type=int, help="[0]")
@click.option("--device", help="cpu, cuda, cuda:1, mps [auto; under torchrun cuda:LOCAL_RANK]")
@click.option("--progress/--no-progress", default=None, help="progress bar [on]")
def train_cmd(resume: bool, **opts) -> None:
    """Train or fine-tune a model with SAM 2 losses, simulated prompts and memory.

    \b
    medmem train --data medbank/manifest.json --config medmem_small_256 --steps 2000 --out runs/small
    torchrun --nproc_per_node 4 -m medmem.cli train --data ... --config medmem_small_256
    medmem train --data medbank --schedule continual --tasks ct_kidney,xray_chest,us_breast_lesion \\
        --steps-per-task 300 --memory confidence --noisy-labels --out runs/cont_conf
    """
    from .config import TrainConfig
    from .trainer import CHECKPOINT, train

    for key in ("freeze", "tasks"):
        opts[key] = _csv(opts[key])
    opts["data"] = (opts["data"][0] if len(opts["data"]) == 1 else list(opts["data"])) if opts["data"] else None
    given = {k: v for k, v in opts.items() if v is not None}
    out = Path(given.get("out", TrainConfig.out))
    resuming = resume and (out / CHECKPOINT).is_file()
    if resuming:
        ignored = sorted(k for k in given if k not in RESUMABLE_FIELDS)
        if ignored:
            click.echo(f"resuming from {out / CHECKPOINT}: the checkpoint's settings are used; ignoring "
                       f"{', '.join('--' + k.replace('_', '-') for k in ignored)}", err=True)
        given = {k: v for k, v in given.items() if k in RESUMABLE_FIELDS}
    elif not given.get("data"):
        raise click.UsageError("--data is required (unless --resume finds a checkpoint)")
    try:
        cfg = TrainConfig(**given)
        result = train(cfg, resume=resuming, overrides=given if resuming else None)
    except (TypeError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    _report(result)


def _report(result) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    if not result.finished:
        click.echo(f"stopped at step {result.step}; resume with --resume --out {result.out}")
        return
    last = result.last
    click.echo(f"trained {result.step} steps; last loss {last.get('loss', float('nan')):.4f}")
    if result.val:
        click.echo(f"validation: Dice {result.val['dice']:.4f}  NSD {result.val['nsd']:.4f} "
                   f"({result.val['objects']} objects)")
        for task, v in result.val["per_task"].items():
            click.echo(f"  {task:<24} Dice {v['dice']:.4f}  NSD {v['nsd']:.4f}  n={v['objects']}")
    if result.continual:
        c = result.continual
        click.echo("continual Dice (row: after task, column: task):")
        click.echo("  " + " ".join(f"{t[:10]:>10}" for t in c["tasks"]))
        for row in c["dice"]:
            click.echo("  " + " ".join(f"{'' if v is None else f'{v:.3f}':>10}" for v in row))
        click.echo("summary: " + json.dumps(c["summary"]["dice"]))
    if result.weights:
        click.echo(f"weights: {result.weights}")


commands = [train_cmd]
