"""The engine layer: the only module that speaks to Docker (docker-py). Every Docker failure becomes a DsenvError here."""
from __future__ import annotations

import http.client
import io
import json
import os
import re
import socket
import tarfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import BaseImageMissing, BuildError, DaemonPermissionDenied, DaemonUnavailable, EngineError

MANAGED_LABEL = "io.dsenv.spec.sha256"
_clients: dict[str, Any] = {}


@dataclass(frozen=True)
class ImageInfo:
    """What dsenv shows of an image: id, tags, labels, size, created."""

    id: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    size: int
    created: str


@dataclass(frozen=True)
class BuildEvent:
    """One step of build progress: step n of total, a log line, or the final image id."""

    step: int = 0
    total: int = 0
    line: str = ""
    image_id: str = ""


@contextmanager
def _translate(action: str) -> Iterator[None]:
    """Map docker-py / HTTP failures to DsenvErrors (the one place that does so)."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except docker.errors.ImageNotFound as e:
        raise EngineError(f"{action}: image not found ({e.explanation})", "check the image name with 'dsenv images'") from e
    except docker.errors.APIError as e:
        raise EngineError(f"{action}: the Docker daemon answered {e.status_code}: {e.explanation}",
                          "see the daemon's log for details") from e
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


def image_info(ref: str) -> ImageInfo | None:
    """The image a tag or id names, or None when there is no such image."""
    import docker.errors

    with _translate(f"inspecting {ref}"):
        try:
            d = client().inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None
    return _info(d)


def _info(d: dict) -> ImageInfo:
    labels = (d.get("Config") or {}).get("Labels") or d.get("Labels") or {}
    created = d.get("Created", "")
    if isinstance(created, int):
        import datetime

        created = datetime.datetime.fromtimestamp(created, datetime.timezone.utc).isoformat(timespec="seconds")
    return ImageInfo(d["Id"], tuple(d.get("RepoTags") or ()), dict(labels), int(d.get("Size", 0)), str(created))


def list_images(label: str = MANAGED_LABEL, filters: dict[str, str] | None = None) -> list[ImageInfo]:
    """Images carrying a label (by default: every image dsenv built), newest first."""
    wanted = [label] + [f"{k}={v}" for k, v in (filters or {}).items()]
    with _translate("listing images"):
        found = client().images(filters={"label": wanted})
    infos = [_info(d) for d in found]
    return sorted(infos, key=lambda i: i.created, reverse=True)


def ensure_base(ref: str) -> ImageInfo:
    """The base image, pulled when absent; BaseImageMissing when it cannot be had."""
    info = image_info(ref)
    if info:
        return info
    repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    try:
        with _translate(f"pulling {ref}"):
            client().pull(repo, tag=tag or "latest")
    except EngineError as e:
        if isinstance(e, (DaemonUnavailable, DaemonPermissionDenied)):
            raise
        raise BaseImageMissing(f"base image {ref} is not here and cannot be pulled ({e.message.split(': ', 2)[-1][:120]})") from e
    info = image_info(ref)
    if not info:
        raise BaseImageMissing(f"base image {ref} could not be pulled")
    return info


def make_context(files: dict[str, bytes], dockerfile: str) -> bytes:
    """An uncompressed tar build context with fixed times and owners (the same files give the same bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted({**files, "Dockerfile": dockerfile.encode()}.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name == "postBuild" else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(context: bytes, tag: str, labels: dict[str, str] | None = None, buildargs: dict[str, str] | None = None,
          on_event: Callable[[BuildEvent], None] | None = None, dockerfile: str = "Dockerfile",
          no_cache: bool = False) -> str:
    """Build a tar context with the classic builder, streaming progress; returns the image id. Tags only on success."""
    emit = on_event or (lambda e: None)
    tail: list[str] = []
    step_text, step, total, image_id = "the first step", 0, 0, ""
    with _translate(f"building {tag}"):
        stream = client().build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, labels=labels or None,
                                buildargs=buildargs, rm=True, forcerm=True, pull=False, decode=True, dockerfile=dockerfile,
                                nocache=no_cache)
        for event in _events(stream):
            if "error" in event or "errorDetail" in event:
                reason = (event.get("errorDetail") or {}).get("message") or event.get("error", "")
                raise BuildError(step_text, _short_reason(reason), tail)
            if "aux" in event and isinstance(event["aux"], dict) and event["aux"].get("ID"):
                image_id = event["aux"]["ID"]
            text = event.get("stream") or event.get("status") or ""
            for line in text.splitlines():
                m = re.match(r"^Step (\d+)/(\d+) : (.*)$", line)
                if m:
                    step, total = int(m.group(1)), int(m.group(2))
                    step_text = f"step {step}/{total} ({m.group(3)[:80]})"
                    tail = []
                elif line.strip():
                    tail = (tail + [line])[-20:]
                emit(BuildEvent(step=step, total=total, line=line))
    if not image_id:
        found = image_info(tag)
        if not found:
            raise BuildError(step_text, "the daemon reported no image", tail)
        image_id = found.id
    emit(BuildEvent(step=total, total=total, image_id=image_id))
    return image_id


_BUILDKIT_CLI: list[str | None] = []


def buildkit_cli() -> str | None:
    """A docker CLI that builds with BuildKit against this daemon (Debian's 20.10 CLI has it built in; newer ones need
    the buildx plugin), or None: then builds use docker-py's classic builder. DSENV_BUILDER=classic|buildkit decides."""
    if _BUILDKIT_CLI:
        return _BUILDKIT_CLI[0]
    choice = os.environ.get("DSENV_BUILDER", "auto")
    found = None
    if choice != "classic":
        import shutil
        import subprocess

        for cli in dict.fromkeys(p for p in (shutil.which("docker"), "/usr/bin/docker") if p and os.path.exists(p)):
            try:
                version = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"], capture_output=True,
                                         text=True, timeout=15).stdout.strip()
                major = int(version.split(".")[0]) if version[:1].isdigit() else 0
                if 18 <= major < 23 or subprocess.run([cli, "buildx", "version"], capture_output=True,
                                                      timeout=15).returncode == 0:
                    found = cli
                    break
            except (OSError, ValueError, subprocess.SubprocessError):
                continue
        if choice == "buildkit" and not found:
            raise EngineError("DSENV_BUILDER=buildkit but no docker CLI with BuildKit was found",
                              "install Debian's docker.io (or the buildx plugin), or unset DSENV_BUILDER")
    _BUILDKIT_CLI.append(found)
    return found


def build_with_buildkit(cli: str, files: dict[str, bytes], dockerfile: str, tag: str,
                        labels: dict[str, str] | None = None, on_event: Callable[[BuildEvent], None] | None = None,
                        no_cache: bool = False) -> str:
    """Build with BuildKit through a docker CLI (cache mounts work there), streaming its plain progress as steps;
    returns the image id. Tags only on success."""
    import subprocess
    import tempfile

    emit = on_event or (lambda e: None)
    with tempfile.TemporaryDirectory(prefix="dsenv-context-") as tmp:
        for name, data in {**files, "Dockerfile": dockerfile.encode()}.items():
            path = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, 0o755 if name == "postBuild" else 0o644)
        iid = os.path.join(tmp, ".iid")
        cmd = [cli, "build", "--progress=plain", "--iidfile", iid, "-t", tag]
        for key, value in sorted((labels or {}).items()):
            cmd += ["--label", f"{key}={value}"]
        if no_cache:
            cmd.append("--no-cache")
        env = {**os.environ, "DOCKER_BUILDKIT": "1", "BUILDKIT_PROGRESS": "plain"}
        try:
            proc = subprocess.Popen(cmd + [tmp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=env, errors="replace")
        except OSError as e:
            raise EngineError(f"building {tag}: cannot run {cli} ({e})", "unset DSENV_BUILDER to use the classic builder") from e
        steps: dict[str, tuple[int, int, str]] = {}
        step_text, step, total, tail, other, errors = "the first step", 0, 0, [], [], []
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                m = re.match(r"^#(\d+) \[(?:[\w-]+ )?(\d+)/(\d+)\] (.*)$", line)
                if m:
                    steps[m.group(1)] = (int(m.group(2)), int(m.group(3)), m.group(4))
                    step, total, text = steps[m.group(1)]
                    step_text = f"step {step}/{total} ({text[:80]})"
                    emit(BuildEvent(step=step, total=total, line=f"Step {step}/{total} : {text}"))
                    continue
                m = re.match(r"^#(\d+) (?:[\d.]+ )?(.*)$", line)
                if m and m.group(1) in steps:
                    step, total, text = steps[m.group(1)]
                    step_text = f"step {step}/{total} ({text[:80]})"
                    if m.group(2).startswith("ERROR"):
                        errors.append(m.group(2))
                    elif not m.group(2).startswith(("DONE", "CACHED")):
                        tail = (tail + [m.group(2)])[-20:]
                elif line.startswith(("error:", "ERROR:", "failed to", "failed ")):
                    errors.append(line)
                elif line.strip() and not line.startswith(("#", "------", " > [", "executor failed")):
                    other = (other + [line])[-20:]
                emit(BuildEvent(step=step, total=total, line=line))
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if code != 0:
            reason = errors[-1] if errors else (other[-1] if other else f"{os.path.basename(cli)} build exited with code {code}")
            if "Cannot connect to the Docker daemon" in " ".join(other + errors):
                raise DaemonUnavailable(f"building {tag}: cannot reach the Docker daemon")
            raise BuildError(step_text, _short_reason(reason), tail or other)
        with open(iid) as f:
            image_id = f.read().strip()
    emit(BuildEvent(step=total, total=total, image_id=image_id))
    return image_id


def _events(stream: Iterable[Any]) -> Iterator[dict]:
    for event in stream:
        if isinstance(event, dict):
            yield event


def _short_reason(reason: str) -> str:
    m = re.search(r"(?:returned a non-zero code|exit code): (\d+)", reason)
    return f"the command exited with code {m.group(1)}" if m else reason.strip().splitlines()[0][:200] if reason.strip() else "unknown error"


def import_rootfs(tar_stream: Any, repository: str, tag: str) -> str:
    """`docker import` of a root filesystem tar stream; returns the image id."""
    with _translate(f"importing {repository}:{tag}"):
        out = client().import_image_from_data(tar_stream, repository=repository, tag=tag)
    info = image_info(f"{repository}:{tag}")
    if not info:
        raise EngineError(f"importing {repository}:{tag} failed: {str(out)[:200]}", "see the daemon's log")
    return info.id


def run_once(image: str, command: list[str], timeout: int = 600) -> tuple[int, str]:
    """Run a command in a fresh container of an image, wait, return (exit code, output); the container is removed."""
    c = client()
    with _translate(f"running a check in {image}"):
        container = c.create_container(image, command=command, host_config=c.create_host_config(network_mode="none"),
                                       environment={"NVIDIA_VISIBLE_DEVICES": "void"}, labels={"io.dsenv.managed": "1"})
        try:
            c.start(container)
            code = c.wait(container, timeout=timeout).get("StatusCode", 1)
            output = c.logs(container).decode("utf-8", "replace")
        finally:
            c.remove_container(container, force=True)
    return int(code), output


def remove_image(ref: str) -> None:
    """Remove an image by tag or id (its other tags and children keep their layers)."""
    import docker.errors

    with _translate(f"removing {ref}"):
        try:
            client().remove_image(ref, noprune=False)
        except docker.errors.ImageNotFound:
            return


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
