"""CPU allocator tuning: keep large freed blocks in the heap instead of returning them to the OS.

glibc serves blocks above its mmap threshold (at most 32 MiB by default) with fresh mmap'd pages and
unmaps them on free, so every large activation (a 256-channel 256 × 256 map is 64 MiB) page-faults
its way in again on the next slice; on the development VM that made element-wise ops 5× slower than
writing into reused memory. Raising the mmap and trim thresholds keeps those blocks for reuse:
outputs are bit-identical, peak memory is unchanged (the same blocks are reused), only the release
of memory back to the OS after a peak is deferred. Linux/glibc only; set MEDMEM_KEEP_MALLOC=1 to opt out.
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_done = False


def tune_allocator(threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap/trim thresholds once per process; True if applied."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("MEDMEM_KEEP_MALLOC"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    _done = ok
    return ok


def limit_arenas(n: int = 2) -> bool:
    """For long-running multi-threaded processes (the server): at most `n` glibc heap arenas, and large
    blocks returned to the OS (no threshold raise), so memory goes back down as sessions come and go.
    Call before any worker thread allocates; True if applied. Measured with `benchmarks/server_load.py`
    (8 clients x 3 rounds): RSS after each round 1197 / 1323 / 1415 MB before, 841 / 857 / 874 MB with this."""
    global _done
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_ARENA_MAX, int(n)))
    except (OSError, AttributeError):
        return False
    _done = True  # keep glibc's own mmap/trim thresholds: tune_allocator() becomes a no-op in this process
    return ok
