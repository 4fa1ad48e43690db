"""Native-library chatter: C/C++ readers (ITK's MetaIO, libpng, GDCM) print to file descriptor 2.

:func:`native_stderr` sends that output to a temporary file while a native call runs. If the call
succeeds, what it printed is passed on to the real stderr unchanged; if it raises, the text is
dropped, because the caller turns the failure into one clear :class:`ImageReadError`
(the command line promises one line per error).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from typing import Iterator

_LOCK = threading.Lock()  # fd 2 is process-wide: one redirect at a time


@contextlib.contextmanager
def native_stderr() -> Iterator[None]:
    """Capture what native code writes to fd 2 during the block (see the module docstring)."""
    try:
        fd = sys.stderr.fileno() if sys.stderr is not None else 2
    except (AttributeError, OSError, ValueError):  # a replaced sys.stderr (pytest capture, notebooks)
        fd = 2
    with _LOCK, tempfile.TemporaryFile() as sink:
        try:
            saved = os.dup(fd)
        except OSError:  # no fd 2 at all (some daemons): nothing to capture
            yield
            return
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                os.dup2(saved, fd)
        finally:
            os.close(saved)
        sink.seek(0)
        text = sink.read()
    if text:  # only reached on success
        os.write(fd, text)
