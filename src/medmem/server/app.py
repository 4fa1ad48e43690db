"""The FastAPI application: the page, its API, the MONAI Label subset, errors as clear JSON."""
from __future__ import annotations

import logging
import tempfile
import threading
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from . import api, monai_label
from .config import ServerConfig
from .context import Context
from .models import load_model  # noqa: F401  (re-exported for the command)
from .security import Guard, is_loopback
from .store import Busy, SessionNotFound, SessionStore
from .uploads import TooLarge

log = logging.getLogger("medmem.server")
STATIC = ("index.html", "app.js", "app.css")


def _static(name: str) -> bytes:
    return (resources.files("medmem.server") / "static" / name).read_bytes()


def create_app(config: ServerConfig, model=None):
    """An ASGI app (the FastAPI app wrapped in the access guard)."""
    if model is None:
        model = load_model()
    root = config.work_dir or Path(tempfile.mkdtemp(prefix="medmem-serve-"))
    store = SessionStore(root, config.session_ttl_s, config.max_sessions,
                         threading.BoundedSemaphore(max(1, config.compute_slots)))
    ctx = Context(config, model, store, getattr(getattr(model, "cfg", None), "name", "model"))
    store.restorer = ctx.restore
    app = FastAPI(title="medmem", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx

    def err(status: int, msg: str) -> JSONResponse:
        return JSONResponse({"detail": msg}, status_code=status)

    @app.exception_handler(TooLarge)
    async def _too_large(_: Request, e: TooLarge):
        return err(413, str(e))

    @app.exception_handler(SessionNotFound)
    async def _nf(_: Request, e: SessionNotFound):
        return err(404, str(e.args[0]) if e.args else "not found")

    @app.exception_handler(KeyError)
    async def _key(_: Request, e: KeyError):
        return err(404, str(e.args[0]) if e.args else "not found")

    @app.exception_handler(Busy)
    async def _busy(_: Request, e: Busy):
        return err(409, str(e))

    @app.exception_handler(ValueError)   # UploadError, ImageReadError, ImageWriteError, bad prompts
    async def _bad(_: Request, e: ValueError):
        return err(400, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        parts = ["{}: {}".format(".".join(str(x) for x in d.get("loc", ())), d.get("msg")) for d in e.errors()]
        return err(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(Exception)
    async def _other(_: Request, e: Exception):
        log.exception("request failed")
        return err(500, f"internal error: {type(e).__name__}: {e}")

    @app.get("/", response_class=HTMLResponse)
    def index() -> Response:
        return Response(_static("index.html"), media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                                                            "style-src 'self'; script-src 'self'"})

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return err(404, f"no file {name!r}")
        media = {"js": "text/javascript", "css": "text/css", "html": "text/html"}[name.rsplit(".", 1)[1]]
        return Response(_static(name), media_type=media + "; charset=utf-8", headers={"Cache-Control": "no-store"})

    @app.get("/health")
    def health() -> dict:
        return {"ok": True, "sessions": len(store)}

    app.include_router(api.build_router(ctx))
    app.include_router(monai_label.build_router(ctx))
    guard = Guard(app, config.token, config.max_upload_bytes + (1 << 20),
                  loopback_only=is_loopback(config.host))
    guard.fastapi = app
    return guard
