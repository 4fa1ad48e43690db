"""`medmem serve`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ..pretrained import PRETRAINED


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind; any non-loopback address requires a token")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="weights (default: bundled model)")
@click.option("--model", "model_name", type=click.Choice(sorted(PRETRAINED)), default=None,
              help="a pretrained model by name instead (default: the default model; see `medmem models`)")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="a folder whose images the page may open (read only)")
@click.option("--token", default=None, help="required on every request (generated when --host is not loopback)")
@click.option("--max-upload-mb", default=512, show_default=True, type=click.IntRange(1, 1 << 16))
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="folder for per-session files (default: a new temporary folder)")
@click.option("--session-ttl", default=3600, show_default=True, type=click.IntRange(10),
              help="seconds an idle session is kept")
@click.option("--device", default=None, help="cpu | cuda | mps (default: best available)")
def serve_cmd(host: str, port: int, checkpoint: Optional[str], data_dir: Optional[Path], token: Optional[str],
              max_upload_mb: int, workdir: Optional[Path], session_ttl: int, device: Optional[str],
              model_name: Optional[str]) -> None:
    """Serve the interactive page and a MONAI Label-compatible API (3D Slicer)."""
    try:
        import uvicorn

        from .app import create_app, load_model
    except ModuleNotFoundError as e:
        raise click.ClickException(f"'medmem serve' needs the serve extra ({e.name} is missing): "
                                   "pip install 'medmem[serve]'")
    from .config import ServerConfig
    from .security import is_loopback, new_token

    if token is not None and len(token) < 8:
        raise click.ClickException("--token must be at least 8 characters")
    if not is_loopback(host) and not token:
        token = new_token()
    cfg = ServerConfig(host=host, port=port, data_dir=data_dir, work_dir=workdir, token=token,
                       max_upload_mb=max_upload_mb, session_ttl_s=float(session_ttl))
    try:
        from ..allocator import limit_arenas

        limit_arenas(2)  # memory goes back down as sessions come and go (see medmem.allocator)
        model = load_model(checkpoint, device, model_name)
    except (ValueError, OSError, RuntimeError) as e:
        raise click.ClickException(str(e))
    app = create_app(cfg, model)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    click.echo(f"medmem serve: open {url}")
    if token:
        click.echo("  every request needs the token (3D Slicer: MONAI Label login, any user name, the token as password)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


commands = [serve_cmd]
