"""The ssh command lines dsenv runs (the system ssh client: the user's keys, agent and ~/.ssh/config apply), with
host-key checking on, no password prompts and timeouts; and the small `ssh` wrapper docker-py's SSH transport runs."""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
from pathlib import Path

from ..errors import RemoteDockerMissing
from .hosts import Host


def state_dir() -> Path:
    """Where dsenv keeps runtime state (tunnels, sync manifests): DSENV_STATE_DIR, else $XDG_STATE_HOME/dsenv."""
    if os.environ.get("DSENV_STATE_DIR"):
        return Path(os.environ["DSENV_STATE_DIR"])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "dsenv"


def connect_timeout() -> int:
    """Seconds ssh waits for a connection (DSENV_SSH_TIMEOUT, default 10)."""
    try:
        return max(1, int(os.environ.get("DSENV_SSH_TIMEOUT", "10")))
    except ValueError:
        return 10


def ssh_binary() -> str:
    """The system ssh client."""
    found = shutil.which("ssh", path=os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                                     if "ssh-shim" not in p)) or "/usr/bin/ssh"
    if not os.path.exists(found):
        raise RemoteDockerMissing("no ssh client on this machine", "install openssh-client")
    return found


def options(host: Host, *, quiet: bool = False, shared: bool = True) -> list[str]:
    """ssh options for a host, without the destination: strict host keys, batch mode, timeouts, keep-alives, the
    host's identity, DSENV_SSH_CONFIG as -F, and (shared) connection sharing."""
    opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={connect_timeout()}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
    if os.environ.get("DSENV_SSH_CONFIG"):
        opts = ["-F", os.environ["DSENV_SSH_CONFIG"], *opts]
    if host.identity:
        opts += ["-i", host.identity, "-o", "IdentitiesOnly=yes"]
    if quiet:
        opts += ["-o", "LogLevel=ERROR"]
    return opts + (control_options() if shared else [])


def control_options() -> list[str]:
    """Connection sharing: the first ssh to a host becomes a master that later ones (each Docker API connection
    is one) reuse for DSENV_SSH_PERSIST seconds (default 30; 0 turns sharing off)."""
    try:
        persist = int(os.environ.get("DSENV_SSH_PERSIST", "30"))
    except ValueError:
        persist = 30
    if persist <= 0:
        return []
    folder = state_dir() / "cm"
    if len(str(folder)) > 60:  # unix socket paths are short: %C adds 40 characters
        folder = Path("/tmp") / f"dsenv-cm-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={folder}/%C", "-o", f"ControlPersist={persist}"]


def destination(host: Host) -> list[str]:
    """Port and user@host, as the last arguments before a remote command."""
    return [*(["-p", str(host.port)] if host.port else []), "--", host.target]


def command(host: Host, remote: list[str] | None = None, *, quiet: bool = False) -> list[str]:
    """A full ssh command line running REMOTE (words, quoted for the remote shell) on the host."""
    return [ssh_binary(), *options(host, quiet=quiet), *destination(host), *([shlex.join(remote)] if remote else [])]


def forward_command(host: Host, local_port: int, remote_port: int) -> list[str]:
    """ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE on a connection of its own (not the shared master: killing it
    drops just this forward), failing at once when the forward cannot be set up."""
    return [ssh_binary(), *options(host, quiet=True, shared=False), "-o", "ControlMaster=no", "-o",
            "ControlPath=none", "-N", "-o", "ExitOnForwardFailure=yes", "-L",
            f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}", *destination(host)]


def shim_dir(host: Host) -> Path:
    """A folder holding an `ssh` that runs the system ssh with this host's options: docker-py's SSH transport runs
    plain `ssh -l USER -p PORT -- HOST docker system dial-stdio` from PATH, and this puts our options in front."""
    opts = options(host, quiet=True)
    digest = hashlib.sha256("\0".join([ssh_binary(), *opts]).encode()).hexdigest()[:16]
    folder = state_dir() / "ssh-shim" / digest
    script = folder / "ssh"
    text = f"#!/bin/sh\nexec {shlex.quote(ssh_binary())} {shlex.join(opts)} \"$@\"\n"
    if not script.is_file() or script.read_text() != text:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "ssh.tmp"
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, script)
    return folder


def put_shim_first(host: Host) -> None:
    """Put the host's ssh wrapper first on this process's PATH (replacing another host's)."""
    folder = str(shim_dir(host))
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and "ssh-shim" not in p]
    os.environ["PATH"] = os.pathsep.join([folder, *rest])
