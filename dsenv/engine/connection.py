"""The connection to the Docker daemon: docker-py's client, the one place Docker failures become DsenvErrors, and a
standard-library quick path for the 'nothing changed' check."""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..errors import (DaemonPermissionDenied, DaemonUnavailable, EngineError, RemoteAuthRefused, RemoteDockerMissing,
                      RemoteError, RemoteHostKeyUnknown, RemoteUnreachable)

_clients: dict[str, Any] = {}


@contextmanager
def _translate(action: str) -> Iterator[None]:
    """Map docker-py / HTTP failures to DsenvErrors (the one place that does so)."""
    import http.client

    import docker.errors
    import requests.exceptions
    import urllib3.exceptions

    try:
        yield
    except docker.errors.ImageNotFound as e:
        raise EngineError(f"{action}: image not found ({e.explanation})", "check the image name with 'dsenv images'") from e
    except docker.errors.APIError as e:
        raise EngineError(f"{action}: the Docker daemon answered {e.status_code}: {e.explanation}",
                          "see the daemon's log for details") from e
    except (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError, http.client.IncompleteRead) as e:
        raise DaemonUnavailable(f"{action}: the Docker daemon went away in the middle ({_short(e)})",
                                "start dockerd again (its log says why it stopped) and rerun: finished steps are "
                                "reused, nothing half-built was tagged") from e
    except (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError) as e:
        if current_host():
            raise RemoteUnreachable(f"{action}: the SSH connection to {current_host()} failed ({_short(e)})",
                                    "check that 'ssh USER@HOST docker version' works, then rerun") from e
        raise DaemonUnavailable(f"{action}: cannot reach the Docker daemon ({_short(e)})") from e
    except PermissionError as e:
        raise DaemonPermissionDenied(f"{action}: permission denied on the Docker socket") from e
    except docker.errors.DockerException as e:
        text = _short(e)
        if "Permission denied" in text:
            raise DaemonPermissionDenied(f"{action}: permission denied on the Docker socket") from e
        raise DaemonUnavailable(f"{action}: cannot reach the Docker daemon ({text})") from e


def _short(e: BaseException) -> str:
    text = str(e)
    m = re.search(r"(\[Errno[^\]]*\][^')\"]*|No such file or directory|Connection refused|Permission denied)", text)
    return (m.group(1) if m else text.splitlines()[0] if text else type(e).__name__)[:160]


_host: ContextVar[str | None] = ContextVar("dsenv_docker_host", default=None)


def current_host() -> str | None:
    """The remote host dsenv acts on: the one chosen with use_host()/set_host() (a name from hosts.toml or an ssh://
    URL), else DOCKER_HOST when it is an ssh:// URL; None for the local daemon."""
    chosen = _host.get()
    if chosen is not None:
        return chosen or None
    env = os.environ.get("DOCKER_HOST", "")
    return env if env.startswith("ssh://") else None


def set_host(name_or_url: str | None) -> None:
    """Act on this host from now on in this context (the CLI's --host); '' or None: DOCKER_HOST's daemon."""
    _host.set(name_or_url or None)


@contextmanager
def use_host(name_or_url: str | None) -> Iterator[None]:
    """Act on this host inside the block (a name from hosts.toml or an ssh:// URL; '' means the local daemon,
    whatever DOCKER_HOST says)."""
    token = _host.set("" if name_or_url is None else name_or_url)
    try:
        yield
    finally:
        _host.reset(token)


def client() -> Any:
    """A low-level docker-py client (docker.APIClient) for the chosen host, DOCKER_HOST or the default socket,
    checked with a ping. Remote hosts go through the system ssh client (docker-py's use_ssh_client)."""
    import docker

    remote = current_host()
    if remote:
        return _ssh_client(remote)
    key = "" if _host.get() == "" else os.environ.get("DOCKER_HOST", "")
    if key not in _clients:
        with _translate("connecting"):
            kwargs = docker.utils.kwargs_from_env() if key else {}
            c = docker.APIClient(**kwargs, version="auto", timeout=600)
            c.ping()
        _clients[key] = c
    return _clients[key]


def host_environment() -> dict[str, str]:
    """DOCKER_HOST for a docker CLI run on dsenv's behalf, so it acts on the same daemon as client()."""
    remote = current_host()
    if remote:
        from ..remote import hosts

        client()  # checked once, and the ssh wrapper with the host's options is first on PATH
        return {"DOCKER_HOST": hosts.resolve(remote).url, "PATH": os.environ["PATH"]}
    if _host.get() == "":
        return {"DOCKER_HOST": "unix:///var/run/docker.sock"}
    return {}


def _ssh_client(name_or_url: str) -> Any:
    import subprocess

    import docker

    from ..remote import hosts, ssh

    host = hosts.resolve(name_or_url)
    key = f"{host.url}#{host.identity or ''}"
    if key not in _clients:
        import importlib.util

        if importlib.util.find_spec("paramiko") is None:  # docker-py's ssh transport imports it, even shelling out
            raise RemoteError("ssh:// hosts need the paramiko package (docker-py's SSH support imports it)",
                              "pip install 'docker[ssh]'")
        try:  # one ssh round trip first: its exit code and stderr say exactly what is wrong
            probe = subprocess.run(ssh.command(host, ["docker", "version", "--format", "{{.Server.Version}}"]),
                                   capture_output=True, text=True, timeout=ssh.connect_timeout() + 20,
                                   stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise RemoteUnreachable(f"{host.name}: no answer over SSH within {ssh.connect_timeout() + 20} s") from e
        if probe.returncode != 0:
            _translate_ssh(host.name, probe.returncode, probe.stderr)
        ssh.put_shim_first(host)
        with _translate(f"connecting to {host.name}"):
            c = docker.APIClient(base_url=host.url, use_ssh_client=True, version="auto", timeout=600)
            c.ping()
        _clients[key] = c
    return _clients[key]


def _translate_ssh(where: str, code: int, stderr: str) -> None:
    """Map a failed `ssh HOST docker version` to one clear DsenvError (called from client(); raises always)."""
    text = " ".join(line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("Warning:"))
    low = text.lower()
    if "host key verification failed" in low or "no matching host key" in low or "identification has changed" in low:
        changed = "changed" in low
        raise RemoteHostKeyUnknown(f"{where}: the host key is " + ("different from the one known_hosts holds (it changed, or "
                                   "someone is in between)" if changed else "not in known_hosts, so it is not trusted"))
    if "permission denied (" in low or "too many authentication failures" in low or "no supported authentication" in low:
        raise RemoteAuthRefused(f"{where}: the SSH server refused the key(s) offered ({_short_ssh(text)})")
    if code == 255 and any(s in low for s in ("connection refused", "timed out", "no route to host", "could not resolve",
                                              "network is unreachable", "name or service not known",
                                              "connection closed", "connection reset", "kex_exchange")):
        raise RemoteUnreachable(f"{where}: cannot reach the SSH server ({_short_ssh(text)})")
    if code == 127 or "command not found" in low or "docker: not found" in low:
        raise RemoteDockerMissing(f"{where}: there is no docker command on the remote host")
    if "permission denied" in low and "docker" in low:
        raise DaemonPermissionDenied(f"{where}: permission denied on the remote host's Docker socket",
                                     "add the SSH user to the 'docker' group there (then reconnect), or log in as a "
                                     "user who may use it")
    if "cannot connect to the docker daemon" in low or "is the docker daemon running" in low:
        raise RemoteDockerMissing(f"{where}: the Docker daemon on the remote host is not running",
                                  "start it there (e.g. 'sudo systemctl start docker')")
    if code == 255:
        raise RemoteUnreachable(f"{where}: ssh failed ({_short_ssh(text) or 'exit 255'})")
    raise RemoteError(f"{where}: 'docker version' over SSH failed with exit {code} ({_short_ssh(text)})",
                      "run 'ssh USER@HOST docker version' to see why")


def _short_ssh(text: str) -> str:
    text = re.sub(r"^ssh: ", "", text.strip())
    return text[:160]


def server_info() -> dict[str, Any]:
    """The daemon's version and architecture."""
    with _translate("reading the daemon's version"):
        v = client().version()
    return {"version": v.get("Version", "?"), "api": v.get("ApiVersion", "?"), "arch": v.get("Arch", "amd64")}


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _quick_get(path: str) -> tuple[int, bytes]:
    """GET a daemon API path over the local unix socket with the standard library only (no docker-py import: the
    'nothing changed' path stays fast). Raises LookupError where this does not apply (non-unix DOCKER_HOST, TLS, no
    socket); callers then go through docker-py."""
    default = "unix:///var/run/docker.sock"
    host = default if _host.get() == "" else os.environ.get("DOCKER_HOST", default)
    if current_host() or not host.startswith("unix://") or os.environ.get("DOCKER_TLS_VERIFY"):
        raise LookupError("the quick path needs a local unix socket")
    conn = _UnixHTTPConnection(host[len("unix://"):], timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError as e:
        raise LookupError(str(e)) from e
    finally:
        conn.close()


def quick_image_id(ref: str) -> str | None:
    """The id of a local image (None when absent) through the quick path; LookupError where it does not apply."""
    from urllib.parse import quote

    status, body = _quick_get(f"/images/{quote(ref, safe='/:@')}/json")
    if status == 404:
        return None
    if status != 200:
        raise LookupError(f"daemon answered {status}")
    return json.loads(body)["Id"]


def architecture() -> str:
    """The daemon's CPU architecture (amd64, arm64, ...)."""
    try:
        status, body = _quick_get("/version")
        if status == 200:
            return json.loads(body).get("Arch", "amd64")
    except (LookupError, ValueError):
        pass
    return server_info()["arch"]
