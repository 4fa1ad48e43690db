"""What the routes share: settings, the model, the session store, and source resolution."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from .config import ServerConfig
from .store import SessionStore
from .uploads import UploadError, read_input, resolve_data_file


@dataclass
class Context:
    config: ServerConfig
    model: object
    store: SessionStore
    model_name: str

    def open_named(self, source: str) -> Tuple[object, dict]:
        """A volume from `sample:NAME` or `data:RELATIVE/PATH` (under --data); never a client path."""
        from ..io import list_samples, sample_path

        if source.startswith("sample:"):
            name = source.split(":", 1)[1]
            if name not in volume_samples():
                raise UploadError(f"no bundled sample {name!r}; samples: {', '.join(volume_samples())}")
            return read_input(Path(sample_path(name)), source), {"kind": "sample", "name": source}
        if source.startswith("data:"):
            rel = source.split(":", 1)[1]
            p = resolve_data_file(self.config.data_dir, rel)
            return read_input(p, rel), {"kind": "data", "name": rel}
        raise UploadError("source must be sample:NAME or data:RELATIVE/PATH (or upload a file)")


def volume_samples() -> List[str]:
    """The bundled samples that are images (not masks or licences)."""
    from ..io import list_samples

    return [s for s in list_samples() if s.startswith("mni152_t1")]
