"""A small detached process that removes a container once the process that owns it is gone: the kernel containers
of `%%dsenv run` cells outlive a notebook kernel that crashed or was killed (atexit never runs then) unless
something outside that kernel watches it. Run as `python -m dsenv.watchdog PID START CONTAINER [HOST]`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WATCHDOG = "dsenv.watchdog"
POLL = 0.5  # seconds between looks at the owner
CONTAINER_EVERY = 20  # polls between looks at the container (it may be removed by the owner's clean exit)


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), which tells a process from a
    later one that reuses its PID; None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(pid: int, started: str) -> bool:
    """Whether the process that had this PID and start time still runs (a zombie counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and fields[19] == started


def watch(container: str, owner: int | None = None, host: str | None = None) -> subprocess.Popen | None:
    """Start a watchdog removing container once owner (default: this process) exits; None where /proc is missing."""
    owner = owner or os.getpid()
    started = start_time(owner)
    if started is None:
        return None
    return subprocess.Popen([sys.executable, "-m", WATCHDOG, str(owner), started, container, *([host] if host else [])],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def _container_exists(container: str) -> bool:
    from . import containers
    from .errors import DsenvError

    try:
        return any(c.name == container for c in containers.ps())
    except DsenvError:
        return True  # the daemon cannot be asked now: keep watching


def main(argv: list[str]) -> int:
    """Wait for the owner to exit, then remove the container (on HOST when given)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the notebook is not for us
    owner, started, container = int(argv[0]), argv[1], argv[2]
    host = argv[3] if len(argv) > 3 else None
    from .api import on_host

    polls = 0
    while alive(owner, started):
        time.sleep(POLL)
        polls += 1
        if polls % CONTAINER_EVERY == 0:
            with on_host(host):
                if not _container_exists(container):
                    return 0
    from . import containers
    from .errors import DsenvError

    with on_host(host):
        try:
            containers.rm(container)
        except DsenvError:
            pass
    return 0


if __name__ == "__main__":  # pragma: no cover - the detached process
    sys.exit(main(sys.argv[1:]))
