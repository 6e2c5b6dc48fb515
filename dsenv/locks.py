"""Host-wide exclusive locks (flock on a file): one GPU choice at a time, one build of an environment at a time.
Standard library only, so the GPU module can use it on a bare GPU host."""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def lock_path(name: str) -> Path:
    """A lock file for a name, in the host's temporary folder (shared by every user of the same daemon)."""
    safe = hashlib.sha256(name.encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"dsenv-{safe}.lock"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on path (created world-writable if missing) for the with-block."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
