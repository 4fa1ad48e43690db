"""`medmem data ...` sub-commands."""
from __future__ import annotations

import time

import click


@click.group("data")
def data_group() -> None:
    """Data sets: synthetic MedBank-mini, layouts."""


@data_group.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same data).")
@click.option("--size", type=click.IntRange(min=32), default=128, show_default=True,
              help="Image size in pixels (2D: size x size; 3D: size x size x slices, slices scaled with size).")
@click.option("--noise", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Fraction of each task's cases that also get a corrupted label in labels_noisy/.")
@click.option("--cases-per-task", type=click.IntRange(min=1), default=None,
              help="Cases per task (default 8: 6 train, 1 val, 1 test).")
@click.option("--tasks", default=None, help="Comma-separated subset of task names (default: all).")
def synth_cmd(out: str, seed: int, size: int, noise: float, cases_per_task: int | None, tasks: str | None) -> None:
    """Write the synthetic MedBank-mini set to OUT (manifest.json + NIfTI/PNG cases)."""
    from .synth import DEFAULT_CASES_PER_TASK, generate

    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    t0 = time.perf_counter()
    try:
        path = generate(out, seed=seed, size=size, noise=noise,
                        cases_per_task=cases_per_task or DEFAULT_CASES_PER_TASK, tasks=names)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    click.echo(f"wrote {path} in {time.perf_counter() - t0:.1f} s")


@data_group.command("synth-tasks")
def synth_tasks_cmd() -> None:
    """List the MedBank-mini tasks."""
    from .synth import TASKS

    click.echo(f"{'task':<22} {'modality':<11} {'dims':>4}  labels")
    for spec in TASKS.values():
        labels = ", ".join(f"{k}={v}" for k, v in spec.labels.items())
        click.echo(f"{spec.name:<22} {spec.modality:<11} {spec.dims:>4}  {labels}")
