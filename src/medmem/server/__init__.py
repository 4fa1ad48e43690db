"""`medmem serve`: a web page and a MONAI Label-compatible server on engine sessions.

Needs the optional extra: ``pip install medmem[serve]`` (FastAPI, uvicorn, python-multipart).
"""
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]


def create_app(config: ServerConfig, model=None):
    """The ASGI app (imported lazily so `import medmem.server` works without FastAPI)."""
    from .app import create_app as _create

    return _create(config, model)
