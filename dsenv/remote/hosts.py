"""Remote host addresses (ssh://user@host:port) and the named hosts kept in hosts.toml beside the user config."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..config import config_path
from ..errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

URL = re.compile(r"ssh://(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9a-fA-F:]+\])(?::(?P<port>\d+))?/?")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@dataclass(frozen=True)
class Host:
    """A remote Docker host: its name (or its URL when unnamed), ssh:// URL and optional identity file."""

    name: str
    url: str
    identity: str | None = None

    @property
    def user(self) -> str | None:
        """The login user, if the URL names one."""
        return parse_url(self.url)[0]

    @property
    def hostname(self) -> str:
        """The host name or address."""
        return parse_url(self.url)[1]

    @property
    def port(self) -> int | None:
        """The SSH port, if the URL names one."""
        return parse_url(self.url)[2]

    @property
    def target(self) -> str:
        """user@host as ssh takes it."""
        return f"{self.user}@{self.hostname}" if self.user else self.hostname


def parse_url(url: str) -> tuple[str | None, str, int | None]:
    """'ssh://user@host:port' -> (user, host, port); UsageError for anything else."""
    m = URL.fullmatch(url.strip())
    if not m:
        raise UsageError(f"{url}: not an ssh:// address", "write ssh://USER@HOST[:PORT], e.g. ssh://alice@gpu-box:22")
    port = int(m.group("port")) if m.group("port") else None
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"{url}: port {port} is out of range", "use a port between 1 and 65535")
    return m.group("user"), m.group("host"), port


def hosts_path() -> Path:
    """hosts.toml beside the user config (DSENV_CONFIG's folder, else ~/.config/dsenv)."""
    return config_path().parent / "hosts.toml"


def load_hosts() -> dict[str, Host]:
    """The named hosts, by name."""
    path = hosts_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid TOML ({e})", f"fix or remove {path}") from e
    out = {}
    for name, entry in (data.get("hosts") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise UsageError(f"{path}: host {name} has no url", f"fix {path}, or 'dsenv hosts rm {name}'")
        out[name] = Host(name, entry["url"], entry.get("identity"))
    return out


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def save_hosts(hosts: dict[str, Host]) -> Path:
    """Write the named hosts (the whole file; written to a temporary file and renamed)."""
    path = hosts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Remote Docker hosts for dsenv (dsenv hosts add/rm edit this file)"]
    for name in sorted(hosts):
        h = hosts[name]
        lines += ["", f"[hosts.{_toml_string(name)}]", f"url = {_toml_string(h.url)}"]
        if h.identity:
            lines.append(f"identity = {_toml_string(h.identity)}")
    atomic.write_text(path, "\n".join(lines) + "\n", mode=0o600)
    return path


def add_host(name: str, url: str, identity: str | None = None) -> Host:
    """Add (or replace) a named host; the URL is checked, the identity made absolute and required to exist."""
    if not NAME.fullmatch(name) or name.startswith("ssh"):
        raise UsageError(f"{name}: not a host name dsenv accepts", "use letters, digits, . _ -, not starting with 'ssh'")
    parse_url(url)
    if identity:
        identity = str(Path(identity).expanduser().resolve())
        if not Path(identity).is_file():
            raise UsageError(f"--identity {identity}: no such file", "give the private key file, e.g. ~/.ssh/id_ed25519")
    hosts = load_hosts()
    hosts[name] = Host(name, url.strip().rstrip("/"), identity)
    save_hosts(hosts)
    return hosts[name]


def remove_host(name: str) -> None:
    """Forget a named host."""
    hosts = load_hosts()
    if name not in hosts:
        raise UsageError(f"no host named {name}", "list them with 'dsenv hosts ls'")
    del hosts[name]
    save_hosts(hosts)


def resolve(name_or_url: str) -> Host:
    """A named host from hosts.toml, or an ssh:// URL as an unnamed host."""
    text = name_or_url.strip()
    if text.startswith("ssh://"):
        parse_url(text)
        for h in load_hosts().values():  # a URL that a named host has keeps that host's identity
            if h.url == text.rstrip("/"):
                return h
        return Host(text, text.rstrip("/"))
    hosts = load_hosts()
    if text not in hosts:
        raise UsageError(f"--host {text}: no such host", "add it with 'dsenv hosts add NAME ssh://USER@HOST', or give "
                         "an ssh:// URL")
    return hosts[text]


def run_on(host: Host, words: list[str], timeout: float = 30) -> tuple[int, str, str]:
    """Run a command on the host over ssh: (exit code, stdout, stderr)."""
    import subprocess

    from . import ssh

    try:
        proc = subprocess.run(ssh.command(host, words), check=False, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, "", f"no answer within {timeout:.0f} s"
    return proc.returncode, proc.stdout, proc.stderr


def gpu_uuids(host: Host) -> list[tuple[str, str]]:
    """(UUID, name) of the host's NVIDIA GPUs (nvidia-smi there); empty when it has none or no nvidia-smi."""
    code, out, _ = run_on(host, ["nvidia-smi", "--query-gpu=uuid,name", "--format=csv,noheader"])
    if code != 0:
        return []
    return [(u.strip(), n.strip()) for u, _, n in (line.partition(",") for line in out.splitlines()) if u.strip()]


def remote_gpus(name_or_url: str, request: str, held: set[str]) -> list[str]:
    """GPU UUIDs on a remote host for --gpus N|all|UUIDs, skipping those in held."""
    from ..errors import GpuError

    host = resolve(name_or_url)
    found = [u for u, _ in gpu_uuids(host)]
    if not found:
        raise GpuError(f"{host.name} has no NVIDIA GPU that nvidia-smi lists", "run without --gpus, or pick a GPU host")
    if request == "all":
        return found
    if request.isdigit():
        free = [u for u in found if u not in held]
        if len(free) < int(request):
            raise GpuError(f"{host.name}: {request} GPU(s) asked for, {len(free)} free",
                           "wait for another run to stop, or pass --share-gpu")
        return free[:int(request)]
    wanted = [g.strip() for g in request.split(",") if g.strip()]
    missing = [g for g in wanted if g not in found]
    if missing:
        raise GpuError(f"{host.name} has no GPU {missing[0]}", f"'dsenv hosts check {host.name}' lists its GPUs")
    return wanted
