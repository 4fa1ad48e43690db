"""Sessions of the server: one folder each, a lock, an optional background job, expiry."""
from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from ..atomic import atomic_path
from .session import EditSession

_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class SessionNotFound(KeyError):
    """No such session (never created, deleted or expired)."""


class Busy(RuntimeError):
    """The session is running a job (propagation, undo, ...)."""


@dataclass
class Job:
    """A background job of one session, with its progress."""

    kind: str
    state: str = "running"          # running | done | error
    done: int = 0
    total: int = 0
    error: Optional[str] = None
    started: float = field(default_factory=time.time)
    finished: Optional[float] = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "state": self.state, "done": self.done, "total": self.total,
                "error": self.error, "seconds": round((self.finished or time.time()) - self.started, 3)}


@dataclass
class Entry:
    """A stored session: the editing state, its folder and bookkeeping."""

    sid: str
    folder: Path
    edit: EditSession
    source: dict
    lock: threading.RLock = field(default_factory=threading.RLock)
    job: Optional[Job] = None
    last_access: float = field(default_factory=time.time)
    created: float = field(default_factory=time.time)

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.state == "running"

    def save(self) -> None:
        """Autosave the objects and the prompt log (atomic)."""
        data = {"sid": self.sid, "source": self.source, "created": self.created, "edit": self.edit.to_json()}
        with atomic_path(self.folder / "session.json") as tmp:
            tmp.write_text(json.dumps(data), encoding="utf-8")


class SessionStore:
    """All sessions; expired ones (idle longer than `ttl_s`) are removed with their folder."""

    def __init__(self, root: Path, ttl_s: float = 3600.0, max_sessions: int = 32,
                 compute: Optional[threading.Semaphore] = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl_s, self.max_sessions = ttl_s, max_sessions
        self.compute = compute or threading.BoundedSemaphore(1)
        self._sessions: Dict[str, Entry] = {}
        self._lock = threading.Lock()
        # rebuilds a session from its folder after a restart (set by the app): (sid, folder, saved) -> Entry
        self.restorer: Optional[Callable[[str, Path, dict], Entry]] = None
        self._restoring = threading.Lock()
        self._sweep_stale()

    def _sweep_stale(self) -> None:
        """Remove session folders that an earlier server left and that have outlived the TTL."""
        now = time.time()
        for d in self.root.iterdir():
            saved = d / "session.json"
            if d.is_dir() and _ID.match(d.name) and saved.is_file() and now - saved.stat().st_mtime > self.ttl_s:
                shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ lifecycle
    def new_folder(self) -> Tuple[str, Path]:
        """A fresh session id and its (empty) folder; the caller fills it, then calls `add`."""
        self.expire()
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                self._evict_one()
        sid = secrets.token_urlsafe(18)
        folder = self.root / sid
        folder.mkdir(parents=True)
        return sid, folder

    def add(self, sid: str, folder: Path, edit: EditSession, source: dict) -> Entry:
        entry = Entry(sid, folder, edit, source)
        entry.save()
        with self._lock:
            self._sessions[sid] = entry
        return entry

    def discard(self, folder: Path) -> None:
        """Remove a folder whose session was never added (a failed upload)."""
        if folder.parent == self.root:
            shutil.rmtree(folder, ignore_errors=True)

    def get(self, sid: str) -> Entry:
        if not isinstance(sid, str) or not _ID.match(sid):
            raise SessionNotFound(f"no session {sid!r}")
        self.expire()
        with self._lock:
            entry = self._sessions.get(sid)
        if entry is None:
            entry = self._restore(sid)
        if entry is None:
            raise SessionNotFound(f"no session {sid!r} (it may have expired)")
        entry.last_access = time.time()
        return entry

    def _restore(self, sid: str) -> Optional[Entry]:
        """A session saved by an earlier server on the same work folder, or None."""
        saved = self.root / sid / "session.json"
        if self.restorer is None or not saved.is_file():
            return None
        if time.time() - saved.stat().st_mtime > self.ttl_s:
            shutil.rmtree(saved.parent, ignore_errors=True)
            return None
        with self._restoring:
            with self._lock:
                if sid in self._sessions:      # restored by a concurrent request meanwhile
                    return self._sessions[sid]
            try:
                data = json.loads(saved.read_text(encoding="utf-8"))
                entry = self.restorer(sid, saved.parent, data)
            except (ValueError, KeyError, OSError, TypeError):
                return None
            with self._lock:
                self._sessions[sid] = entry
            return entry

    def remove(self, sid: str) -> None:
        entry = self.get(sid)
        with self._lock:
            self._sessions.pop(sid, None)
        shutil.rmtree(entry.folder, ignore_errors=True)
        del entry
        _release_memory()

    def expire(self) -> int:
        """Drop sessions idle for longer than the TTL (not while a job runs); returns how many."""
        now = time.time()
        with self._lock:
            old = [e for e in self._sessions.values() if now - e.last_access > self.ttl_s and not e.busy]
            for e in old:
                self._sessions.pop(e.sid, None)
        for e in old:
            shutil.rmtree(e.folder, ignore_errors=True)
        if old:
            _release_memory()
        return len(old)

    def _evict_one(self) -> None:
        idle = sorted((e for e in self._sessions.values() if not e.busy), key=lambda e: e.last_access)
        if not idle:
            raise Busy(f"the server holds {self.max_sessions} busy sessions; try again later")
        e = idle[0]
        self._sessions.pop(e.sid, None)
        shutil.rmtree(e.folder, ignore_errors=True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def ids(self) -> list:
        with self._lock:
            return list(self._sessions)

    # ------------------------------------------------------------------ work
    def run_locked(self, entry: Entry, fn: Callable[[], object]):
        """Run a light read or edit (no model run) under the session lock only; Busy if a job runs."""
        if entry.busy:
            raise Busy(f"session is busy ({entry.job.kind} running); wait for it to finish")
        with entry.lock:
            if entry.busy:
                raise Busy(f"session is busy ({entry.job.kind} running)")
            out = fn()
            entry.save()
            return out

    def run_sync(self, entry: Entry, fn: Callable[[], object]):
        """Run a short edit now (under the session lock and the compute slot); Busy if a job runs."""
        if entry.busy:
            raise Busy(f"session is busy ({entry.job.kind} running); wait for it to finish")
        with entry.lock:
            if entry.busy:
                raise Busy(f"session is busy ({entry.job.kind} running)")
            with self.compute:
                out = fn()
            entry.save()
            return out

    def start_job(self, entry: Entry, kind: str, fn: Callable[[Callable[[int, int], None]], object]) -> Job:
        """Run `fn(progress)` in a background thread; Busy if another job of this session runs."""
        with entry.lock:
            if entry.busy:
                raise Busy(f"session is busy ({entry.job.kind} running); wait for it to finish")
            job = Job(kind)
            entry.job = job

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        def work() -> None:
            try:
                with entry.lock, self.compute:
                    fn(progress)
                    entry.edit.label_volume()    # ready for the viewer
                    entry.save()
                job.state = "done"
            except (ValueError, KeyError) as e:
                job.state, job.error = "error", str(e)
            except Exception as e:  # keep serving; report the failure to the client
                job.state, job.error = "error", f"{type(e).__name__}: {e}"
            finally:
                job.finished = time.time()
                entry.last_access = time.time()

        threading.Thread(target=work, name=f"medmem-{kind}-{entry.sid[:6]}", daemon=True).start()
        return job


def _release_memory() -> None:
    """Give freed heap pages back to the system (glibc keeps them per thread arena otherwise)."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
