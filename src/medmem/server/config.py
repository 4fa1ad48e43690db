"""Settings of one `medmem serve` process."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Optional[Path] = None       # files offered to open (read only; never written)
    work_dir: Optional[Path] = None       # session folders (default: a new temporary folder)
    token: Optional[str] = None           # required on every request when set
    max_upload_mb: int = 512
    session_ttl_s: float = 3600.0         # idle sessions expire after this
    max_sessions: int = 32
    compute_slots: int = 1                # model runs at once (the rest queue)
    policy: str = "fifo"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb) * (1 << 20)
