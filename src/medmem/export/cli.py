"""`medmem export`: write the model as ONNX graphs plus a manifest."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ..engine.cli import _model_option


@click.command("export")
@click.option("--onnx", "out_dir", required=True, type=click.Path(path_type=Path),
              help="folder for the graphs and manifest.json (created; files in it are replaced atomically)")
@_model_option
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="weights (.pt/.safetensors)")
@click.option("--config", "config", default=None,
              help="model config name: with --checkpoint, its config; alone, that config with random weights")
@click.option("--int8", "int8", is_flag=True, help="also write ORT dynamic-int8 copies (<graph>.int8.onnx)")
def export_cmd(out_dir: Path, model_name: Optional[str], checkpoint: Optional[str], config: Optional[str],
               int8: bool) -> None:
    """Export the image encoder, mask decoder, memory attention and memory encoder as ONNX graphs.

    Needs the onnx extra (pip install 'medmem[onnx]'). The manifest names the config, each graph's
    inputs and outputs with their shapes (dynamic axes by name), the opset, the weights hash and the
    medmem version; `--backend onnxruntime` runs them (docs/export.md).
    """
    from ..build import build_model
    from ..engine.cli import _load_model, _one_line
    from .onnx import OnnxUnavailable, export_onnx, require_onnx

    if out_dir.exists() and not out_dir.is_dir():
        raise click.ClickException(f"--onnx {out_dir} is a file; give a folder")
    try:
        require_onnx("onnx")
        require_onnx("onnxruntime")
    except OnnxUnavailable as e:
        raise click.ClickException(str(e)) from None
    if config is not None and checkpoint is None and model_name is None:
        try:
            model = build_model(config, device="cpu")
        except KeyError as e:
            raise click.ClickException(_one_line(e).strip("'\"")) from None
        click.echo(f"note: {config} with random weights (no --checkpoint)", err=True)
    else:
        model = _load_model(checkpoint, config, "cpu", model_name)
    try:
        man = export_onnx(model, out_dir, precisions=("fp32", "int8") if int8 else ("fp32",))
    except (OnnxUnavailable, ValueError, OSError) as e:
        raise click.ClickException(_one_line(e)) from None
    for name, g in man["graphs"].items():
        size = (out_dir / g["file"]).stat().st_size / 1e6
        extra = f", int8 {(out_dir / man['int8'][name]).stat().st_size / 1e6:.1f} MB" if name in man["int8"] else ""
        click.echo(f"{name:<18} {g['file']:<26} {size:7.1f} MB{extra}")
    click.echo(f"{man['config']} (weights {man['weights_sha256']}) -> {out_dir / 'manifest.json'}")


commands = [export_cmd]
