"""What the routes share: settings, the model, the session store, and source resolution."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from .config import ServerConfig
from .session import EditSession
from .store import Entry, SessionStore
from .uploads import UploadError, read_input, resolve_data_file


@dataclass
class Context:
    config: ServerConfig
    model: object
    store: SessionStore
    model_name: str

    def open_named(self, source: str) -> Tuple[object, dict]:
        """A volume from `sample:NAME` or `data:RELATIVE/PATH` (under --data); never a client path."""
        from ..io import sample_path

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

    def restore(self, sid: str, folder: Path, saved: dict) -> Entry:
        """Rebuild a saved session (after a server restart): reopen its image, reload the objects and
        the prompt log, and replay the log as a background job."""
        src = dict(saved["source"])
        if src["kind"] == "sample":
            vol, _ = self.open_named(src["name"])
        elif src["kind"] == "data":
            vol, _ = self.open_named("data:" + src["name"])
        else:
            p = (folder / src["stored"]).resolve()
            if folder.resolve() not in p.parents:
                raise ValueError("saved input lies outside its session folder")
            vol = read_input(p, src["name"])
        edit = EditSession(self.model, vol, policy=self.config.policy)
        edit.load_json(saved.get("edit", {}))
        entry = Entry(sid, folder, edit, src, created=float(saved.get("created", 0.0)))
        if edit.history:
            self.store.start_job(entry, "restore", lambda progress: edit.replay_all(progress))
        return entry


def volume_samples() -> List[str]:
    """The bundled samples that are images (not masks or licences)."""
    from ..io import list_samples

    return [s for s in list_samples() if s.startswith("mni152_t1")]
