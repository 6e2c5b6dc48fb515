"""SSH local forwards to ports on a remote host's 127.0.0.1, kept by a small detached process each: it re-opens the
forward when the SSH connection drops, and ends (closing it) when the container stops. One JSON file per forward
under the state folder says what is open; `dsenv tunnels` reads them."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import atomic
from ..errors import TunnelError
from . import ssh
from .hosts import Host, resolve

KEEPER = "dsenv.remote.tunnels"


@dataclass
class Tunnel:
    """One forward: 127.0.0.1:local_port here -> 127.0.0.1:remote_port on host, for a container there."""

    id: str
    host: str
    url: str
    container: str
    container_id: str
    local_port: int
    remote_port: int
    pid: int = 0
    ssh_pid: int = 0
    state: str = "starting"
    reconnects: int = 0
    started: float = 0.0

    @property
    def path(self) -> Path:
        """Its state file."""
        return tunnels_dir() / f"{self.id}.json"

    def save(self) -> None:
        """Write its state file (atomically)."""
        atomic.write_text(self.path, json.dumps(asdict(self)), mode=0o600)


def tunnels_dir() -> Path:
    """Where the forwards' state files live."""
    return ssh.state_dir() / "tunnels"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _is_keeper(pid: int) -> bool:
    try:
        return KEEPER in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _read(path: Path) -> Tunnel | None:
    try:
        return Tunnel(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def list_tunnels(container_id: str | None = None) -> list[Tunnel]:
    """The forwards dsenv keeps (those whose keeper died are cleaned up and not listed)."""
    out = []
    for path in sorted(tunnels_dir().glob("*.json")) if tunnels_dir().is_dir() else ():
        t = _read(path)
        if t is None:
            continue
        if t.pid and not _is_keeper(t.pid):
            path.unlink(missing_ok=True)
            continue
        if container_id is None or t.container_id == container_id:
            out.append(t)
    return out


def local_ports(container_id: str) -> dict[int, int]:
    """Remote port -> local port of the container's open forwards."""
    return {t.remote_port: t.local_port for t in list_tunnels(container_id)}


def open_forward(host_arg: str, container: str, container_id: str, remote_port: int, local_port: int | None = None,
                 wait: float | None = None) -> Tunnel:
    """Start a keeper that forwards a free local port (or local_port) to remote_port on the host's 127.0.0.1; returns
    once the local port answers. TunnelError (and nothing left running) when it does not come up."""
    host = resolve(host_arg)
    t = Tunnel(secrets.token_hex(4), host_arg, host.url, container, container_id, local_port or free_port(),
               remote_port, started=time.time())
    t.save()
    with open(tunnels_dir() / f"{t.id}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", KEEPER, str(t.path)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, close_fds=True)
    t.pid = proc.pid
    deadline = time.monotonic() + (wait or ssh.connect_timeout() + 10)
    while time.monotonic() < deadline:
        current = _read(t.path)
        if current and current.state == "up" and _answers(t.local_port):
            return current
        if proc.poll() is not None or (current and current.state == "failed"):
            break
        time.sleep(0.05)
    _end(proc.pid)
    proc.wait(timeout=10)
    t.path.unlink(missing_ok=True)
    why = _log_tail(t.id)
    raise TunnelError(f"could not forward 127.0.0.1:{t.local_port} to {host.name}:{remote_port}" + (f" ({why})" if why else ""),
                      "check that 'ssh USER@HOST' works and that AllowTcpForwarding is on in the remote's sshd_config")


def _log_tail(tid: str) -> str:
    path = tunnels_dir() / f"{tid}.log"
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    finally:
        path.unlink(missing_ok=True)
    return lines[-1][:160] if lines else ""


def _end(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass


def close(tunnel: Tunnel, timeout: float = 5.0) -> None:
    """End a forward: its keeper closes the SSH connection and removes the state file."""
    if tunnel.pid and _is_keeper(tunnel.pid):
        _end(tunnel.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _is_keeper(tunnel.pid) and _zombie(tunnel.pid) is False:
            time.sleep(0.05)
    tunnel.path.unlink(missing_ok=True)
    (tunnels_dir() / f"{tunnel.id}.log").unlink(missing_ok=True)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def close_matching(ident: str | None = None, container_id: str | None = None) -> list[Tunnel]:
    """Close the forward with this id (or every one with None), or every one of a container; those closed."""
    found = [t for t in list_tunnels(container_id) if ident is None or t.id == ident or t.container == ident]
    if ident is not None and not found:
        raise TunnelError(f"no open forward {ident}")
    for t in found:
        close(t)
    return found


def _container_running(t: Tunnel) -> bool:
    """False once the container is stopped or gone; True while it runs or while that cannot be told."""
    from .. import engine
    from ..errors import ContainerNotFound, DsenvError

    try:
        with engine.use_host(t.host):
            return engine.inspect(t.container_id).status in ("running", "created", "restarting", "paused")
    except ContainerNotFound:
        return False
    except DsenvError:
        return True


def keep(path: Path) -> None:
    """The keeper's loop: run `ssh -N -L`, start it again when it ends, stop when the container does or on SIGTERM."""
    stopping: list[bool] = []
    current: list[subprocess.Popen] = []

    def on_term(*_: object) -> None:  # close the forward at once, whatever the loop is waiting for
        stopping.append(True)
        for proc in current:
            if proc.poll() is None:
                proc.terminate()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    t = _read(path)
    if t is None:
        return
    t.pid = os.getpid()
    host: Host = resolve(t.host)
    failures = 0
    try:
        while not stopping:
            started = time.monotonic()
            proc = subprocess.Popen(ssh.forward_command(host, t.local_port, t.remote_port), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL)
            current[:] = [proc]
            t.ssh_pid = proc.pid
            t.save()
            checked = time.monotonic()
            while proc.poll() is None and not stopping:
                if t.state != "up" and _answers(t.local_port):
                    t.state = "up"
                    t.save()
                time.sleep(0.2)
                if time.monotonic() - checked > 5:
                    checked = time.monotonic()
                    if not _container_running(t):
                        stopping.append(True)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            if stopping:
                break
            if not _container_running(t):
                break
            failures = failures + 1 if time.monotonic() - started < 3 else 0
            if t.state == "starting" and failures >= 3:  # never came up: tell open_forward, stop trying
                t.state = "failed"
                t.save()
                return
            t.state, t.reconnects = "reconnecting", t.reconnects + 1
            t.save()
            time.sleep(min(0.5 * 2 ** failures, 10) if failures else 0.2)
    finally:
        for proc in current:
            if proc.poll() is None:
                proc.terminate()
        if t.state != "failed":
            path.unlink(missing_ok=True)
            (path.parent / f"{t.id}.log").unlink(missing_ok=True)


if __name__ == "__main__":  # the keeper: python -m dsenv.remote.tunnels STATE_FILE
    keep(Path(sys.argv[1]))
