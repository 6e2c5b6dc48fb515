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
from typing import Any

from ..errors import DaemonPermissionDenied, DaemonUnavailable, EngineError

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


def client() -> Any:
    """A low-level docker-py client (docker.APIClient) for DOCKER_HOST or the default socket, checked with a ping."""
    import docker

    key = os.environ.get("DOCKER_HOST", "")
    if key not in _clients:
        with _translate("connecting"):
            c = docker.APIClient(**docker.utils.kwargs_from_env(), version="auto", timeout=600)
            c.ping()
        _clients[key] = c
    return _clients[key]


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
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://") or os.environ.get("DOCKER_TLS_VERIFY"):
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
