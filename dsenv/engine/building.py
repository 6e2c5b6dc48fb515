"""Building images: docker-py's classic builder, or BuildKit through a docker CLI where one has it."""
from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import BuildError, DaemonUnavailable, EngineError
from .connection import _translate, client, host_environment
from .images import image_info

EXECUTABLES = {"postBuild", "uv"}  # context files that must keep their execute bit

@dataclass(frozen=True)
class BuildEvent:
    """One step of build progress: step n of total, a log line, or the final image id."""

    step: int = 0
    total: int = 0
    line: str = ""
    image_id: str = ""


def make_context(files: dict[str, bytes], dockerfile: str) -> bytes:
    """An uncompressed tar build context with fixed times and owners (the same files give the same bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted({**files, "Dockerfile": dockerfile.encode()}.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name in EXECUTABLES else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_network() -> str | None:
    """The network RUN steps use: DSENV_BUILD_NETWORK (e.g. host, for daemons whose bridge reaches no index), else
    the daemon's default."""
    return os.environ.get("DSENV_BUILD_NETWORK") or None


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
                                nocache=no_cache, network_mode=build_network())
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
                        no_cache: bool = False, secrets: dict[str, bytes] | None = None) -> str:
    """Build with BuildKit through a docker CLI (cache mounts work there), streaming its plain progress as steps;
    returns the image id. Tags only on success. secrets: id -> content, given to the build as BuildKit secrets
    (files readable by this user only, outside the context, removed afterwards; never in a layer)."""
    import subprocess
    import tempfile

    emit = on_event or (lambda e: None)
    with tempfile.TemporaryDirectory(prefix="dsenv-context-") as tmp, \
            tempfile.TemporaryDirectory(prefix="dsenv-secrets-") as secret_dir:
        for name, data in {**files, "Dockerfile": dockerfile.encode()}.items():
            path = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, 0o755 if name in EXECUTABLES else 0o644)
        iid = os.path.join(tmp, ".iid")
        cmd = [cli, "build", "--progress=plain", "--iidfile", iid, "-t", tag]
        for key, value in sorted((labels or {}).items()):
            cmd += ["--label", f"{key}={value}"]
        if no_cache:
            cmd.append("--no-cache")
        for ident, data in sorted((secrets or {}).items()):
            path = os.path.join(secret_dir, ident)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(data)
            cmd += ["--secret", f"id={ident},src={path}"]
        if build_network():
            cmd += ["--network", build_network()]
        env = {**os.environ, "DOCKER_BUILDKIT": "1", "BUILDKIT_PROGRESS": "plain", **host_environment()}
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
                m = re.match(r"^#(\d+) \[(?:[\w-]+\s+)?\s*(\d+)/(\d+)\] (.*)$", line)
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
