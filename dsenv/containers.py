"""Running environments: containers with the notebook folder, ports, Jupyter, resources and GPUs; their state
committed and shared as tagged images. Part of the public API (front-ends call these, never the engine)."""
from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import engine
from .remote import runs as remote_runs
from .errors import (ContainerNotFound, DsenvError, ImageTagExists, NameInUse, OutOfMemory, PortInUse, RunError,
                     UsageError)

WORKDIR = "/home/dsenv/work"
JUPYTER_PORT = 8888
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REMOTE_PREFIX = "remote:"  # -v remote:/path/on/host:/ctr - a folder on the remote host, mounted where it is
DANGEROUS_MOUNTS = ("/", "/var/run/docker.sock", "/run/docker.sock", "/etc", "/proc", "/sys", "/dev", "/boot")


@dataclass
class RunOptions:
    """How to run an environment: ports, mounts, environment, resources, GPUs, name, command."""

    ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    memory: str | None = None
    cpus: float | None = None
    shm_size: str = "1g"
    name: str | None = None
    gpus: str | None = None
    share_gpu: bool = False
    expose: bool = False
    command: list[str] | None = None
    detach: bool = False
    keep: bool = False
    image: str | None = None
    timeout: float = 90.0
    allow_dangerous_mounts: bool = False


@dataclass
class RunResult:
    """A started (or finished) container: name, id, image, Jupyter URL, published ports, exit code, warnings."""

    name: str
    id: str
    image: str
    url: str | None = None
    ports: dict[int, int] = field(default_factory=dict)
    exit_code: int | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class EnvContainer:
    """One dsenv container as `dsenv ps` shows it."""

    name: str
    env: str
    status: str
    image: str
    url: str | None
    ports: dict[str, tuple[str, int]]
    gpus: str
    created: str
    notebook: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def parse_port(text: str) -> tuple[int, int]:
    """'8050' -> (8050, 8050); '9000:8050' -> host 9000, container 8050. Ports are 1..65535."""
    m = re.fullmatch(r"(?:(\d+):)?(\d+)", text.strip())
    if not m:
        raise UsageError(f"-p {text}: not a port", "write -p PORT or -p HOSTPORT:CONTAINERPORT")
    host, ctr = int(m.group(1) or m.group(2)), int(m.group(2))
    for p in (host, ctr):
        if not 1 <= p <= 65535:
            raise UsageError(f"-p {text}: port {p} is out of range", "use a port between 1 and 65535")
    return host, ctr


def check_resources(o: RunOptions) -> None:
    """Memory and shm sizes with a unit (512m, 8g), CPUs > 0, a container name Docker accepts."""
    for flag, value in (("--memory", o.memory), ("--shm-size", o.shm_size)):
        if value is not None and not re.fullmatch(r"\d+(\.\d+)?[bkmgBKMG]?", str(value).strip()):
            raise UsageError(f"{flag} {value}: not a size", f"write a number with a unit, e.g. {flag} 8g or 512m")
    if o.cpus is not None and o.cpus <= 0:
        raise UsageError(f"--cpus {o.cpus:g}: not a positive number of CPUs", "write e.g. --cpus 2 or --cpus 0.5")
    if o.name is not None and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", o.name):
        raise UsageError(f"--name {o.name}: not a container name", "use letters, digits, _ . and -, starting with a "
                         "letter or digit")


def parse_volume(text: str, allow_dangerous: bool = False) -> str:
    """'host:ctr[:ro|rw]' with an existing host path (made absolute) -> a Docker bind string; 'remote:PATH:ctr[:mode]'
    (a folder on the remote host, mounted there as it is, never synced) -> 'remote:PATH:ctr:mode'."""
    remote = text.startswith(REMOTE_PREFIX)
    parts = text[len(REMOTE_PREFIX):].split(":") if remote else text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        raise UsageError(f"-v {text}: not HOST:CONTAINER[:ro]", "write -v /host/path:/container/path[:ro], or "
                         "-v remote:/path/there:/container/path for a folder on the remote host")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise UsageError(f"-v {text}: mode '{mode}' is not ro or rw", "write -v HOST:CONTAINER:ro")
    if remote:
        if not parts[0].startswith("/"):
            raise UsageError(f"-v {text}: a remote path must be absolute", "write -v remote:/path/there:/data")
        host = Path(os.path.normpath(parts[0]))
    else:
        host = Path(parts[0]).expanduser().resolve()
        if not host.exists():
            raise UsageError(f"-v {text}: {host} does not exist", "create it first, or fix the path")
    if not allow_dangerous and str(host) in DANGEROUS_MOUNTS:
        raise UsageError(f"-v {text}: mounting {host} gives the container control of the host",
                         "mount a narrower folder, or pass --allow-dangerous-mounts")
    return f"{REMOTE_PREFIX if remote else ''}{host}:{parts[1]}:{mode}"


def dsenv_gpu_holders() -> tuple[dict[str, list[str]], set[str]]:
    """GPU UUID -> names of the dsenv containers labelled with it that run or are about to (created), and their ids."""
    holders: dict[str, list[str]] = {}
    ids: set[str] = set()
    for c in engine.list_managed(all_states=True):
        if c.status not in ("created", "running", "restarting", "paused"):
            continue
        ids.add(c.id)
        for uuid in filter(None, c.labels.get("io.dsenv.gpus", "").split(",")):
            holders.setdefault(uuid, []).append(c.name)
    return holders, ids


def check_gpu_request(request: str) -> None:
    """--gpus takes N, all, or GPU-/MIG- UUIDs separated by commas."""
    ids = [g for g in request.split(",") if g.strip()]
    if not (request.isdigit() or request == "all" or (ids and all(re.fullmatch(r"(GPU|MIG)-[0-9a-fA-F-]+", g.strip())
                                                                  for g in ids))):
        raise UsageError(f"--gpus {request}: not N, all, or GPU-/MIG- UUIDs", "list GPUs with 'dsenv gpus'")


def choose_gpus(request: str, share: bool = False) -> list[str]:
    """GPU UUIDs for a request: NVML's devices minus those dsenv containers or other processes hold (unless share).
    Call under gpu.host_lock() and create the container before releasing it."""
    from . import gpu

    check_gpu_request(request)
    host = gpu.discover()
    holders, ids = dsenv_gpu_holders()
    return gpu.allocate(host.devices, gpu.holders_of(host.devices, holders, ids), request, share)


def gpu_environment(uuids: list[str] | None) -> dict[str, str]:
    """NVIDIA_VISIBLE_DEVICES (and capabilities) for the chosen GPUs; 'void' for a CPU-only run."""
    if not uuids:
        return {"NVIDIA_VISIBLE_DEVICES": "void"}
    return {"NVIDIA_VISIBLE_DEVICES": ",".join(uuids), "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}


def jupyter_command(as_root: bool = False) -> list[str]:
    """JupyterLab started directly (not through the `jupyter` launcher: one Python start less), listening inside
    the container, serving the work folder, with no calls home for news or updates."""
    return ["jupyter-lab", "--ip=0.0.0.0", f"--port={JUPYTER_PORT}", "--no-browser", f"--ServerApp.root_dir={WORKDIR}",
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if as_root else [])]


def _wait_for_jupyter(cid: str, port: int, token: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/status"
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        try:
            req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(req, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if tries % 25 == 0:
            info = engine.inspect(cid)
            if info.status not in ("running", "created"):
                if info.oom_killed:
                    raise OutOfMemory(f"Jupyter in {info.name}", info.labels.get("io.dsenv.memory") or None)
                raise RunError(f"Jupyter exited before answering (code {info.exit_code}): {_log_tail(cid)}",
                               "fix what the log lines say; the container was removed")
        time.sleep(0.02)
    raise RunError(f"Jupyter did not answer within {timeout:.0f} s: {_log_tail(cid)}",
                   "raise --timeout, or read 'dsenv logs' of a --keep run")


def _log_tail(cid: str, n: int = 4) -> str:
    try:
        text = "".join(engine.logs(cid, tail=20))
    except DsenvError:
        return "(no log)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "(no output)"


def _image_for(path: str | Path | None, options: RunOptions, on_event: Callable | None) -> tuple[str, str, str, bool]:
    """(image, environment name, notebook folder, image has Jupyter)."""
    if options.image:
        info = engine.image_info(options.image)
        if not info:
            engine.pull(*(options.image.rsplit(":", 1) if ":" in options.image.split("/")[-1] else (options.image, "latest")))
            info = engine.image_info(options.image)
        labels = info.labels if info else {}
        folder = str(Path(path).resolve()) if path else ""
        return options.image, labels.get("io.dsenv.name", "image"), folder, labels.get("io.dsenv.jupyter") != "none"
    from .api import build

    result = build(path or ".", on_event=on_event)
    target = result.plan.target
    return result.tag, target.name, str(target.folder), result.plan.spec.jupyter != "kernel"


def run(path: str | Path | None = None, options: RunOptions | None = None, *, on_event: Callable | None = None,
        on_output: Callable[[str], None] | None = None) -> RunResult:
    """Build if needed and start the environment: JupyterLab (URL with a token, once it answers) or a command
    (output streamed to on_output, exit code returned). Nothing is left behind when starting fails."""
    o = options or RunOptions()
    for key in o.env:
        if not ENV_NAME.match(key):
            raise UsageError(f"-e {key}=...: not a valid environment variable name", "use letters, digits and _")
    check_resources(o)
    user_ports = [parse_port(p) for p in o.ports]
    for host_port, ctr in user_ports:
        if host_port < 1024:
            raise UsageError(f"-p {host_port}: host ports below 1024 are the system's",
                             f"publish on a higher host port, e.g. -p {8000 + host_port}:{ctr}")
    binds = [parse_volume(v, o.allow_dangerous_mounts) for v in o.volumes]
    bind_ip = "0.0.0.0" if o.expose else "127.0.0.1"
    remote = engine.current_host()  # a remote daemon: ports are forwarded here over SSH, folders synced to volumes
    remote_runs.check_paths(binds, remote)
    for host_port, _ in user_ports if not remote else ():
        if not _port_free(bind_ip, host_port):
            raise PortInUse(host_port)
    if o.gpus and remote:
        check_gpu_request(o.gpus)
    elif o.gpus:
        from . import gpu

        check_gpu_request(o.gpus)
        gpu.discover()  # no NVML / no GPU: fail before building or creating anything
    image, env_name, folder, has_jupyter = _image_for(path, o, on_event)
    jupyter = not o.command
    if jupyter and not has_jupyter:
        raise UsageError(f"{image} has no Jupyter server (jupyter = \"kernel\")", "give a command after --")
    if folder:
        binds.insert(0, f"{folder}:{WORKDIR}:rw")
    synced: list[list[str]] = []
    if remote:
        from .remote import sync

        binds, synced = sync.push_binds(binds, image)
    token = secrets.token_hex(24)
    environment = dict(o.env)
    if jupyter:
        environment["JUPYTER_TOKEN"] = token
    command = o.command or jupyter_command(os.getuid() == 0)
    warnings = ["--expose: ports are published on every interface of this host"] if o.expose else []
    spec = engine.ContainerSpec(
        image=image, name="", command=command, environment=environment, binds=binds, memory=o.memory,
        nano_cpus=int(o.cpus * 1e9) if o.cpus else None, shm_size=o.shm_size, user=f"{os.getuid()}:{os.getgid()}",
        working_dir=WORKDIR,
        labels={"io.dsenv.managed": "1", "io.dsenv.name": env_name, "io.dsenv.notebook": folder,
                "io.dsenv.jupyter": str(JUPYTER_PORT) if jupyter else "", "io.dsenv.memory": o.memory or "",
                **({"io.dsenv.sync": json.dumps(synced)} if synced else {})},
    )
    import contextlib

    from . import gpu

    try:
        with gpu.host_lock() if o.gpus else contextlib.nullcontext():  # held until the container exists and is labelled
            choose = remote_runs.choose_gpus if remote else choose_gpus
            spec.gpu_ids = choose(o.gpus, o.share_gpu) if o.gpus else None
            spec.environment.update(gpu_environment(spec.gpu_ids))
            spec.labels["io.dsenv.gpus"] = ",".join(spec.gpu_ids or [])
            cid = _create(spec, o.name, env_name, user_ports, bind_ip, jupyter)
    except BaseException:
        remote_runs.forget_synced(synced)
        raise
    name, published = spec.name, {c: h for c, (_, h) in spec.ports.items()}
    if remote:
        try:
            published = remote_runs.forward_ports(remote, name, cid, published, {c: h for h, c in user_ports})
        except BaseException:
            engine.remove(cid)
            remote_runs.forget_synced(synced)
            raise
    if jupyter:
        try:
            _wait_for_jupyter(cid, published[JUPYTER_PORT], token, o.timeout)
        except BaseException:
            remote_runs.close_forwards(cid)
            engine.remove(cid)
            remote_runs.forget_synced(synced)
            raise
        url = f"http://127.0.0.1:{published[JUPYTER_PORT]}/lab?token={token}"
        return RunResult(name, cid, image, url, published, None, warnings)
    if o.detach:
        return RunResult(name, cid, image, None, published, None, warnings)
    try:
        for chunk in engine.logs(cid, follow=True):
            if on_output:
                on_output(chunk)
        code = engine.wait(cid)
        if synced:
            warnings += remote_runs.sync_back(cid, synced)
        if code and engine.inspect(cid).oom_killed:
            raise OutOfMemory(name, o.memory)
    finally:
        remote_runs.close_forwards(cid)
        if not o.keep:
            engine.remove(cid)
            remote_runs.forget_synced(synced)
    return RunResult(name, cid, image, None, published, code, warnings)


def _create(spec: engine.ContainerSpec, name: str | None, env_name: str, user_ports: list[tuple[int, int]],
            bind_ip: str, jupyter: bool) -> str:
    """Create and start the container; a free port or an automatic name that a concurrent run took is drawn again."""
    last_error: DsenvError | None = None
    for _attempt in range(5):
        spec.ports = {ctr: (bind_ip, host) for host, ctr in user_ports}
        if jupyter:
            spec.ports[JUPYTER_PORT] = (bind_ip, _free_port())
        spec.name = name or f"dsenv-{env_name}-{secrets.token_hex(3)}"
        spec.labels["io.dsenv.ports"] = json.dumps({str(c): h for c, (_, h) in spec.ports.items()})
        try:
            return engine.create_and_start(spec)
        except PortInUse as e:  # a free port taken between the check and the start: try another, unless named
            if any(h == e.port for h, _ in user_ports) or not jupyter:
                raise
            last_error = e
        except NameInUse as e:
            if name:
                raise
            last_error = e
    raise last_error or RunError("could not start the container", "try again")


def ps(all_states: bool = True) -> list[EnvContainer]:
    """dsenv's containers, read from the engine's labels (nothing kept elsewhere can go stale)."""
    out = []
    remote = engine.current_host()
    for c in engine.list_managed(all_states):
        url = None
        jport = c.labels.get("io.dsenv.jupyter")
        ports = c.ports
        if remote:  # what this machine can open: the forwarded local ports
            from .remote import tunnels

            forwards = tunnels.local_ports(c.id)
            ports = {k: ("127.0.0.1", forwards[p]) for k, (_, p) in c.ports.items() if p in forwards}
        if jport and c.status == "running" and jport in ports and c.env.get("JUPYTER_TOKEN"):
            url = f"http://127.0.0.1:{ports[jport][1]}/lab?token={c.env['JUPYTER_TOKEN']}"
        out.append(EnvContainer(c.name, c.labels.get("io.dsenv.name", ""), c.status, c.image, url, ports,
                                c.labels.get("io.dsenv.gpus", ""), c.created, c.labels.get("io.dsenv.notebook", "")))
    return out


def _managed(name: str) -> engine.ContainerInfo:
    info = engine.inspect(name)
    if info.labels.get("io.dsenv.managed") != "1":
        raise ContainerNotFound(f"{name} is not a dsenv container")
    return info


def stop(name: str) -> list[str]:
    """Stop a dsenv container; on a remote host its forwards close and its synced folders come back (notes on
    conflicts returned)."""
    info = _managed(name)
    engine.stop(info.id)
    remote_runs.close_forwards(info.id)
    return remote_runs.sync_back(info.id, remote_runs.synced_folders(info)) if engine.current_host() else []


def rm(name: str) -> list[str]:
    """Remove a dsenv container (stopping it first; on a remote host its synced folders come back first)."""
    info = _managed(name)
    notes = stop(name) if engine.current_host() and info.status == "running" else []
    engine.remove(info.id)
    remote_runs.close_forwards(info.id)
    remote_runs.forget_synced(remote_runs.synced_folders(info))
    return notes


def logs(name: str, follow: bool = False, tail: int | str = "all"):
    """A dsenv container's output as text chunks."""
    return engine.logs(_managed(name).id, follow=follow, tail=tail)


def exec_(name: str, command: list[str], on_output: Callable[[str], None] | None = None) -> int:
    """Run a command in a running dsenv container as the caller's UID; its exit code."""
    info = _managed(name)
    chunks, exit_code = engine.exec_stream(info.id, command, user=f"{os.getuid()}:{os.getgid()}")
    for chunk in chunks:
        if on_output:
            on_output(chunk)
    return exit_code()


def split_ref(ref: str) -> tuple[str, str]:
    """'repo[:tag]' -> (repo, tag or 'latest'); a registry port is not a tag."""
    if ":" in ref.split("/")[-1]:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


@dataclass
class CommitResult:
    """A committed image: its tag, id and the labels written."""

    tag: str
    id: str
    labels: dict[str, str]


def commit(name: str, ref: str, message: str = "", *, force: bool = False, author: str | None = None,
           keep_env: bool = False) -> CommitResult:
    """Snapshot a dsenv container (running or stopped) into REPO:TAG with provenance labels: parent image, message,
    author, time and the environment's `pip freeze`. An existing tag is never moved without force. The run's own
    environment (-e values, the Jupyter token, GPU choices) is not kept in the image unless keep_env: those names
    get back the image's values, or empty ones."""
    repo, tag = split_ref(ref)
    if not re.fullmatch(r"[a-z0-9]+(?:[._/:-][a-z0-9]+)*", repo) or not re.fullmatch(r"[\w][\w.-]{0,127}", tag):
        raise UsageError(f"{ref}: not a valid image reference", "use lowercase REPO[:TAG], e.g. team/exp1:v2")
    info = _managed(name)
    if not force and engine.image_info(f"{repo}:{tag}"):
        raise ImageTagExists(f"{repo}:{tag} already exists")
    freeze = ""
    if info.status == "running":
        chunks, exit_code = engine.exec_stream(info.id, ["uv", "pip", "freeze"])
        text = "".join(chunks)
        freeze = text if exit_code() == 0 else ""
    parent = engine.image_info(info.image)
    labels = {
        "io.dsenv.parent": parent.id if parent else info.image,
        "io.dsenv.parent.tag": info.image,
        "io.dsenv.commit.message": message,
        "io.dsenv.commit.author": author or getpass.getuser(),
        "io.dsenv.commit.time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "io.dsenv.commit.container": info.name,
        "io.dsenv.pip-freeze": freeze,
    }
    reset = {} if keep_env else {k: (parent.env if parent else {}).get(k, "") for k, v in info.env.items()
                                 if (parent.env if parent else {}).get(k) != v}
    image_id = engine.commit(info.id, repo, tag, message, labels["io.dsenv.commit.author"], labels, reset)
    return CommitResult(f"{repo}:{tag}", image_id, labels)


@dataclass
class PushResult:
    """A pushed image: the remote reference and its digest."""

    ref: str
    digest: str


def push(ref: str, registry: str | None = None, on_progress: Callable[[dict], None] | None = None) -> PushResult:
    """Push an image (to `registry`, tagging it there first, or to the registry its name carries); the digest."""
    repo, tag = split_ref(ref)
    if not engine.image_info(f"{repo}:{tag}"):
        raise UsageError(f"no local image {repo}:{tag}", "list images with 'dsenv images' or 'docker images'")
    remote = f"{registry.rstrip('/')}/{repo}" if registry else repo
    made_tag = bool(registry) and engine.image_info(f"{remote}:{tag}") is None
    if registry:
        engine.tag_image(f"{repo}:{tag}", remote, tag)
    try:
        digest = engine.push(remote, tag, on_progress)
    except BaseException:
        if made_tag:  # a failed or interrupted push leaves no registry-named tag behind
            engine.remove_image(f"{remote}:{tag}")
        raise
    return PushResult(f"{remote}:{tag}", digest)


def pull(ref: str, on_progress: Callable[[dict], None] | None = None) -> PushResult:
    """Pull an image; its reference and digest."""
    repo, tag = split_ref(ref)
    return PushResult(f"{repo}:{tag}", engine.pull(repo, tag, on_progress))
