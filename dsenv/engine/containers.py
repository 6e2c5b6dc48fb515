"""Containers: create and start with ports, mounts, resources and GPU requests; list, inspect, stop, remove, logs,
exec; one-off checks."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ContainerNotFound, GpuUnavailable, NameInUse, PortInUse, RunError
from .connection import _translate, client

MANAGED = "io.dsenv.managed"


@dataclass(frozen=True)
class ContainerInfo:
    """What dsenv shows of a container: name, image, state, labels, published ports, environment, created."""

    id: str
    name: str
    image: str
    status: str
    labels: dict[str, str]
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    created: str = ""
    exit_code: int | None = None
    oom_killed: bool = False


@dataclass
class ContainerSpec:
    """Everything the engine needs to create a container (plain data, filled by the public API)."""

    image: str
    name: str
    command: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[int, tuple[str, int]] = field(default_factory=dict)  # container port -> (host ip, host port)
    binds: list[str] = field(default_factory=list)  # "host:container:rw|ro"
    memory: str | None = None
    nano_cpus: int | None = None
    shm_size: str | None = None
    user: str | None = None
    working_dir: str | None = None
    gpu_ids: list[str] | None = None  # GPU / MIG UUIDs, chosen by dsenv.gpu
    init: bool = True


def create_and_start(spec: ContainerSpec) -> str:
    """Create and start a container; returns its id. Port, name and GPU failures raise their own errors and leave
    no container behind."""
    cid = create(spec)
    start(cid, spec.name)
    return cid


def create(spec: ContainerSpec) -> str:
    """Create (not start) a container from a spec: ports, binds, resources, GPU device request; returns its id."""
    import docker.errors
    import docker.types

    c = client()
    device_requests = None
    if spec.gpu_ids:
        device_requests = [docker.types.DeviceRequest(driver="nvidia", device_ids=spec.gpu_ids,
                                                      capabilities=[["gpu"]])]
    host_config = c.create_host_config(
        port_bindings={f"{p}/tcp": [binding] for p, binding in spec.ports.items()}, binds=spec.binds or None,
        mem_limit=spec.memory, nano_cpus=spec.nano_cpus, shm_size=spec.shm_size, device_requests=device_requests,
        init=spec.init,
    )
    with _translate(f"creating {spec.name}"):
        try:
            created = c.create_container(
                spec.image, command=spec.command, name=spec.name, environment=spec.environment, labels=spec.labels,
                ports=[(p, "tcp") for p in spec.ports], host_config=host_config, user=spec.user,
                working_dir=spec.working_dir, detach=True,
            )
        except docker.errors.APIError as e:
            if e.status_code == 409:
                raise NameInUse(spec.name) from e
            raise
    return created["Id"]


def start(cid: str, name: str = "") -> None:
    """Start a created container; on failure it is removed and the failure named (port, GPU, other)."""
    import docker.errors

    name = name or cid[:12]
    try:
        with _translate(f"starting {name}"):
            try:
                client().start(cid)
            except docker.errors.APIError as e:
                text = str(e.explanation or e)
                port = re.search(r":(\d+)(?: failed)?: (?:bind: address already in use|port is already allocated)", text)
                if "address already in use" in text or "port is already allocated" in text:
                    raise PortInUse(int(port.group(1)) if port else 0) from e
                if "could not select device driver" in text or "nvidia" in text.lower():
                    raise GpuUnavailable(f"the Docker engine cannot give GPUs to containers ({text.strip()[:140]})") from e
                raise RunError(f"starting {name} failed: {text.strip()[:200]}",
                               "check the options (mounts, resources) and the daemon's log") from e
    except BaseException:
        remove(cid)
        raise


def _container(d: dict[str, Any]) -> ContainerInfo:
    config = d.get("Config") or {}
    state = d.get("State") or {}
    ports: dict[str, tuple[str, int]] = {}
    for key, bindings in ((d.get("NetworkSettings") or {}).get("Ports") or {}).items():
        for b in bindings or []:
            ports[key.split("/")[0]] = (b.get("HostIp", ""), int(b.get("HostPort") or 0))
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    return ContainerInfo(
        id=d["Id"], name=d.get("Name", "").lstrip("/"), image=config.get("Image", ""), status=state.get("Status", "?"),
        labels=dict(config.get("Labels") or {}), ports=ports, env=env, created=d.get("Created", ""),
        exit_code=state.get("ExitCode") if state.get("Status") == "exited" else None,
        oom_killed=bool(state.get("OOMKilled")),
    )


def inspect(name_or_id: str) -> ContainerInfo:
    """A container by name or id; ContainerNotFound when there is none."""
    import docker.errors

    with _translate(f"inspecting {name_or_id}"):
        try:
            return _container(client().inspect_container(name_or_id))
        except docker.errors.NotFound as e:
            raise ContainerNotFound(f"no container named {name_or_id}") from e


def list_managed(all_states: bool = True, labels: dict[str, str] | None = None) -> list[ContainerInfo]:
    """Containers dsenv started (label io.dsenv.managed=1), newest first; the engine is the source of truth."""
    wanted = [f"{MANAGED}=1"] + [f"{k}={v}" for k, v in (labels or {}).items()]
    with _translate("listing containers"):
        found = client().containers(all=all_states, filters={"label": wanted})
        details = []
        for summary in found:
            try:
                details.append(_container(client().inspect_container(summary["Id"])))
            except Exception:  # removed between the listing and the inspection
                continue
    return sorted(details, key=lambda i: i.created, reverse=True)


def stop(name_or_id: str, timeout: int = 10) -> None:
    """Stop a container (SIGTERM, then SIGKILL after timeout seconds)."""
    inspect(name_or_id)
    with _translate(f"stopping {name_or_id}"):
        client().stop(name_or_id, timeout=timeout)


def remove(name_or_id: str, force: bool = True) -> None:
    """Remove a container (gone already is fine)."""
    import docker.errors

    with _translate(f"removing {name_or_id}"):
        try:
            client().remove_container(name_or_id, force=force)
        except docker.errors.NotFound:
            return


def wait(name_or_id: str) -> int:
    """Wait until a container exits; its exit code."""
    with _translate(f"waiting for {name_or_id}"):
        return int(client().wait(name_or_id, timeout=None).get("StatusCode", 1))


def logs(name_or_id: str, follow: bool = False, tail: int | str = "all") -> Iterator[str]:
    """A container's output (stdout and stderr), as text chunks; follow streams until it exits."""
    inspect(name_or_id)
    with _translate(f"reading the logs of {name_or_id}"):
        if follow:
            for chunk in client().logs(name_or_id, stream=True, follow=True, tail=tail):
                yield chunk.decode("utf-8", "replace")
        else:
            yield client().logs(name_or_id, tail=tail).decode("utf-8", "replace")


def exec_stream(name_or_id: str, command: list[str], user: str | None = None) -> tuple[Iterator[str], Any]:
    """Run a command in a running container: (output chunks, a function returning the exit code when done)."""
    info = inspect(name_or_id)
    if info.status != "running":
        raise RunError(f"{info.name} is not running ({info.status})", "start a new one with 'dsenv run'")
    c = client()
    with _translate(f"running a command in {name_or_id}"):
        exec_id = c.exec_create(info.id, command, user=user or "")["Id"]
        stream = c.exec_start(exec_id, stream=True)

    def chunks() -> Iterator[str]:
        with _translate(f"running a command in {name_or_id}"):
            for chunk in stream:
                yield chunk.decode("utf-8", "replace")

    def exit_code() -> int:
        with _translate(f"running a command in {name_or_id}"):
            return int(c.exec_inspect(exec_id).get("ExitCode") or 0)

    return chunks(), exit_code


def run_once(image: str, command: list[str], timeout: int = 600) -> tuple[int, str]:
    """Run a command in a fresh container of an image, wait, return (exit code, output); the container is removed."""
    c = client()
    with _translate(f"running a check in {image}"):
        container = c.create_container(image, command=command, host_config=c.create_host_config(network_mode="none"),
                                       environment={"NVIDIA_VISIBLE_DEVICES": "void"}, labels={"io.dsenv.check": "1"})
        try:
            c.start(container)
            code = c.wait(container, timeout=timeout).get("StatusCode", 1)
            output = c.logs(container).decode("utf-8", "replace")
        finally:
            c.remove_container(container, force=True)
    return int(code), output


def signal(name_or_id: str, sig: str) -> None:
    """Send a signal to a container's main process (through its init)."""
    with _translate(f"signalling {name_or_id}"):
        client().kill(name_or_id, signal=sig)
