"""The `medmem` command line."""
from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="medmem")
def main() -> None:
    """medmem: promptable medical image segmentation with memory."""


@main.command("models")
def models_cmd() -> None:
    """List the registered model configs with their parameter counts."""
    from .config import get_config, list_models
    from .model.sam2 import SAM2Model

    click.echo(f"{'name':<26} {'params':>10}  {'image size':>10}  description")
    for name in list_models():
        cfg = get_config(name)
        n = SAM2Model.count_parameters(cfg)
        click.echo(f"{name:<26} {n / 1e6:>9.2f}M  {cfg.image_size:>10}  {cfg.description}")
    from .pretrained import DEFAULT_MODEL, PRETRAINED

    click.echo("\npretrained (`--model NAME`, `medmem.build_model(NAME, pretrained=True)`):")
    for name, p in PRETRAINED.items():
        mark = " (default)" if name == DEFAULT_MODEL else ""
        click.echo(f"  {name:<24} {p.summary}{mark}")


def _register_subgroups() -> None:
    import importlib

    from .data.cli import data_group

    main.add_command(data_group)
    # commands that live next to their subsystem; each module exposes `commands` (a list of click commands)
    for mod in ("medmem.train.cli", "medmem.engine.cli", "medmem.eval.cli", "medmem.export.cli"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:  # subsystem not present in this checkout
            if e.name != mod:
                raise
            continue
        for cmd in m.commands:
            main.add_command(cmd)
    main.add_command(importlib.import_module("medmem.server.cli").serve_cmd)  # needs medmem[serve] only when run


_register_subgroups()

if __name__ == "__main__":
    main()
