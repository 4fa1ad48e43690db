"""`medmem eval-interactive`: the CVPR 2025 interactive protocol on npz cases or a MedBank-mini split."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("eval-interactive")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="weights (default: bundled model)")
@click.option("--config", "config", help="model config name (default: inferred from the checkpoint)")
@click.option("--model", "model_name", default=None,
              help="a pretrained model by name instead (default: the default model; see `medmem models`)")
@click.option("--device", default=None, help="cpu | cuda | mps")
@click.option("--policy", default="fifo", type=click.Choice(["fifo", "self_sorting", "confidence"]))
@click.option("--policy-opt", "policy_opts", multiple=True, metavar="KEY=VALUE",
              help="memory-policy option, repeatable (e.g. k=4, capacity=16, rule=released)")
@click.option("--clicks", "n_clicks", default=5, show_default=True, type=int)
@click.option("--split", default="test", show_default=True, help="manifest split to evaluate")
@click.option("--task", "tasks", multiple=True, help="manifest task(s) to evaluate (default: all 3D tasks)")
@click.option("--max-cases", type=int, default=0, help="stop after this many cases (0 = all)")
@click.option("--intensity", default="auto",
              help="scaling to [0, 1]: auto | percentile | minmax | a CT window name (soft_tissue, lung, bone, ...) [auto]")
@click.option("--seed", default=42, show_default=True, type=int, help="seed of the click tie-breaks")
@click.option("--out", type=click.Path(path_type=Path), help="JSON with every case's steps and the summary")
def eval_interactive_cmd(data, checkpoint, config, model_name, device, policy, policy_opts, n_clicks, split, tasks,
                         max_cases, intensity, seed, out):
    """CVPR 2025 protocol: box, then corrective clicks with re-propagation; DSC/NSD per step, AUCs, time."""
    from ..engine.cli import _load_model
    from ..io.overlay import write_json_atomic
    from ..memory.policies import parse_policy_options
    from .protocol import iter_cases, run_case, summarize

    try:
        opts = parse_policy_options(policy_opts, policy)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--policy-opt")
    model = _load_model(checkpoint, config, device, model_name)
    results = []
    for name, image, gts, spacing, boxes in iter_cases(data, split, tasks):
        r = run_case(model, image, gts, spacing, policy=policy, policy_options=opts, n_clicks=n_clicks, seed=seed,
                     boxes=boxes, intensity=intensity)
        r["case"] = name
        results.append(r)
        curve = " ".join(f"{s['dsc']:.3f}" for s in r["steps"])
        click.echo(f"{name}: DSC {curve}  DSC_AUC {r['dsc_auc']:.3f} "
                   f"NSD_AUC {r['nsd_auc']:.3f}  final {r['dsc_final']:.3f}/{r['nsd_final']:.3f}  "
                   f"{r['seconds_per_class']:.1f} s/class")
        if max_cases and len(results) >= max_cases:
            break
    if not results:
        raise click.ClickException(f"{data}: no 3D case to evaluate")
    summ = summarize(results)
    click.echo(f"{summ['cases']} cases, policy {policy}: DSC_AUC {summ['dsc_auc']:.4f}  NSD_AUC {summ['nsd_auc']:.4f}  "
               f"DSC_Final {summ['dsc_final']:.4f}  NSD_Final {summ['nsd_final']:.4f}  "
               f"{summ['seconds_per_class']:.2f} s/class")
    if out is not None:
        write_json_atomic({"model": model.cfg.name, "policy": policy,
                           "policy_options": opts, "summary": summ, "cases": results}, out)


commands = [eval_interactive_cmd]
