"""Live test servers and test volumes for the server tests (a module of its own: test modules import
from here, never from `conftest`, whose name other test folders share)."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest


def need_serve_extra() -> None:
    """Skip the calling test module where the serve extra is missing (never at conftest level)."""
    for mod in ("fastapi", "uvicorn", "multipart"):
        pytest.importorskip(mod, reason="the serve extra is not installed (pip install 'medmem[serve]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A uvicorn server in a thread; `.url`, `.ctx` (the app context), `.stop()`."""

    def __init__(self, config, model) -> None:
        import uvicorn

        from medmem.server import create_app

        self.app = create_app(config, model)
        self.ctx = self.app.fastapi.state.ctx
        self.port = config.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        t0 = time.time()
        while not self.server.started:
            if time.time() - t0 > 30 or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_server(model, tmp: Path, **kw) -> LiveServer:
    from medmem.server import ServerConfig

    cfg = ServerConfig(port=_free_port(), work_dir=tmp / "work", **kw)
    return LiveServer(cfg, model)


def blob_volume(z: int = 8, h: int = 48, w: int = 40) -> np.ndarray:
    """(Z, H, W) float32: an ellipsoid of intensity ~200 on a noisy background of ~20."""
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[0:z, 0:h, 0:w]
    inside = ((zz - z / 2) / (z / 2.2)) ** 2 + ((yy - h / 2) / (h / 3.5)) ** 2 + ((xx - w / 2) / (w / 3.5)) ** 2 < 1
    return (20 + 180 * inside + rng.normal(0, 5, inside.shape)).astype(np.float32)
