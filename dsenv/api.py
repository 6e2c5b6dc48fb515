"""The public Python API: every front-end (CLI, magics, panels, papermill engine) calls these functions."""
from __future__ import annotations

import dataclasses
import platform as host_platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic
from . import lock as locking
from .config import DEFAULT_BASE, Config, ca_bundle, load_config
from .errors import BaseImageMissing, DsenvError
from .indexes import SECRET_ID, netrc_secret
from .locks import file_lock, lock_path
from .notebook import Target, find_target
from .render import BuildPlan, render, repository_name
from .spec import EnvSpec, build_spec

ARCHES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


@dataclass
class Plan:
    """Everything `dsenv plan` shows: the target, spec, lock (and whether it is current), base, build plan, state."""

    target: Target
    spec: EnvSpec
    lock: locking.Lock
    lock_state: str
    platform: str
    base: str
    base_id: str
    build: BuildPlan
    image_exists: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class BuildResult:
    """The outcome of `build`: the tag, the image id, whether anything was built, and how long it took."""

    tag: str
    image_id: str
    built: bool
    seconds: float
    plan: Plan
    delta: bool = False


def lock_platform(arch: str | None = None) -> str:
    """The uv platform a lock resolves for: Linux manylinux_2_28 on the engine's (or this machine's) architecture."""
    machine = ARCHES.get((arch or host_platform.machine()).lower(), "x86_64")
    return f"{machine}-manylinux_2_28"


def _spec(path: str | Path, config: Config, cuda: str | None = None) -> tuple[Target, EnvSpec]:
    """The target and its spec, with the CUDA cap applied (torch constraint, nvidia/cuda base) and noted."""
    from . import cuda as cuda_caps

    target = find_target(path)
    spec = build_spec(target, default_python=config.python)
    choice = cuda_caps.decide([r.name for r in spec.requirements], spec.base, option=cuda, configured=config.cuda,
                              host_cuda=cuda_caps.host_cuda_version)
    if choice.constraints or choice.base != spec.base or choice.notes:
        spec = dataclasses.replace(spec, constraints=choice.constraints, base=choice.base,
                                   notes=[*spec.notes, *choice.notes])
    return target, spec


def _current_lock(target: Target, spec: EnvSpec, platform: str, as_of: str | None, upgrade: bool) -> tuple[locking.Lock, str]:
    existing = locking.read_lock(target.lock_path)
    if not upgrade and locking.is_current(existing, spec, platform, as_of):
        return existing, "current"
    return locking.resolve(spec, platform, as_of), ("stale" if existing else "new")


def write_lock_file(path: Path, text: str) -> None:
    """Write a lock file atomically (a temporary file in the same folder, then rename)."""
    atomic.write_text(path, text)


def lock(path: str | Path, *, as_of: str | None = None, upgrade: bool = False,
         cuda: str | None = None) -> tuple[Path, locking.Lock, str]:
    """Resolve the environment of a notebook or folder and write its lock file; returns (path, lock, state).
    cuda: the CUDA version to cap torch / nvidia/cuda bases at (default: the config, else this host's driver)."""
    config = load_config()
    target, spec = _spec(path, config, cuda)
    platform = lock_platform(_engine_arch(required=False))
    result, state = _current_lock(target, spec, platform, as_of, upgrade)
    if state != "current":
        write_lock_file(target.lock_path, result.text)
    return target.lock_path, result, state


def _engine_arch(required: bool) -> str | None:
    from . import engine

    try:
        return engine.architecture()
    except DsenvError:
        if required:
            raise
        return None


def choose_base(spec: EnvSpec, config: Config) -> tuple[str, str]:
    """The base image (name, id): the spec's, the configured one, or python:X-slim falling back to a bootstrapped base.
    A remote host that has none of them gets the one this machine would use, sent over SSH (same id, so the same
    content-addressed tags on both)."""
    from . import engine

    try:
        return _choose_base(spec, config)
    except BaseImageMissing:
        if not engine.current_host():
            raise
        from .remote.images import copy_to_current

        with engine.use_host(""):
            name, _ = _choose_base(spec, config)
        copy_to_current(name)
        return _choose_base(spec, config)


def _choose_base(spec: EnvSpec, config: Config) -> tuple[str, str]:
    from . import base as bases
    from . import engine

    if spec.base:
        return spec.base, image_id(spec.base) or engine.ensure_base(spec.base).id
    name = config.base_image.format(python=spec.python)
    if config.base_image_set:
        return name, engine.ensure_base(name).id
    found = image_id(name)
    if found:
        return name, found
    try:
        fallback = bases.bootstrap_tag(spec.python)
    except DsenvError:
        fallback = None
    if fallback:
        found = image_id(fallback)
        if found:
            return fallback, found
    try:
        return name, engine.ensure_base(name).id
    except BaseImageMissing as e:
        hint = f"run 'dsenv base bootstrap --python {spec.python}'" if fallback else e.hint
        raise BaseImageMissing(e.message, hint + f" (or set DSENV_BASE_IMAGE; default {DEFAULT_BASE})") from e


def host_uv_binary(arch: str | None) -> bytes | None:
    """This machine's uv executable when it can serve in the image (Linux, the daemon's architecture, the version
    the template pins); None otherwise, and the image installs uv with pip."""
    import subprocess
    import sys

    from .lock import _uv
    from .render import UV_VERSION

    if sys.platform != "linux" or ARCHES.get((arch or "").lower()) != ARCHES.get(host_platform.machine().lower()):
        return None
    try:
        path = _uv()
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.split()
        if version[1:2] != [UV_VERSION]:
            return None
        return Path(path).read_bytes()
    except (DsenvError, OSError, IndexError, subprocess.SubprocessError):
        return None


def image_id(ref: str) -> str | None:
    """The id of a local image, or None: the quick unix-socket check where it applies, else docker-py."""
    from . import engine

    try:
        return engine.quick_image_id(ref)
    except LookupError:
        info = engine.image_info(ref)
        return info.id if info else None


def _parent(name: str, stack: str) -> dict | None:
    from . import engine

    for info in engine.list_images(filters={"io.dsenv.name": name, "io.dsenv.stack": stack}):
        tags = [t for t in info.tags if t.startswith(repository_name(name) + ":")]
        if tags:
            return {"id": info.id, "tag": tags[0], "stack": stack, "depth": info.labels.get("io.dsenv.delta-depth", "0")}
    return None


def _bake_files(target: Target) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for p in sorted(target.folder.rglob("*")):
        rel = p.relative_to(target.folder)
        if p.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            files[str(rel)] = p.read_bytes()
    return files


def plan(path: str | Path, *, as_of: str | None = None, full: bool = False, bake: bool = False,
         upgrade: bool = False, show: bool = False, cuda: str | None = None) -> Plan:
    """Everything a build would do, without building: spec with sources, lock, Dockerfile, tag, up to date or not.
    show: the Dockerfile will be shown, so render the builder variant this machine uses even when up to date.
    cuda: cap torch / nvidia/cuda bases at this CUDA version (default: the config, else this host's driver)."""
    from . import engine

    config = load_config()
    target, spec = _spec(path, config, cuda)
    base, base_id = choose_base(spec, config)
    arch = _engine_arch(required=False)
    platform = lock_platform(arch)
    lk, state = _current_lock(target, spec, platform, as_of, upgrade)
    inputs = dict(name=target.name, base=base, base_id=base_id, ca_bundle=ca_bundle(config),
                  post_build=spec.post_build.encode() if spec.post_build else None,
                  bake=_bake_files(target) if bake else None)
    tag_plan = render(spec, lk, **inputs)
    exists = image_id(tag_plan.tag) is not None
    if not exists:
        parent = None if full else _parent(target.name, tag_plan.stack)
        tag_plan = render(spec, lk, **inputs, parent=parent, uv_binary=None if parent else host_uv_binary(arch))
    if not exists or show:
        tag_plan.buildkit = engine.buildkit_cli() is not None
    return Plan(target, spec, lk, state, platform, base, base_id, tag_plan, exists, list(spec.notes))


def build(path: str | Path, *, as_of: str | None = None, full: bool = False, bake: bool = False,
          upgrade: bool = False, no_cache: bool = False, on_event: Callable | None = None,
          cuda: str | None = None) -> BuildResult:
    """Build the environment's image unless an image with its content tag exists; writes the lock file if it changed.
    no_cache: build every layer again (the builder's layer cache is not used); cuda: as for plan."""

    start = time.monotonic()
    p = plan(path, as_of=as_of, full=full, bake=bake, upgrade=upgrade, cuda=cuda)
    if p.lock_state != "current":
        write_lock_file(p.target.lock_path, p.lock.text)
    if p.image_exists:
        return BuildResult(p.build.tag, image_id(p.build.tag) or "", False, time.monotonic() - start, p)
    with file_lock(lock_path(f"build {p.build.tag}")):  # a concurrent build of the same environment: wait, reuse
        existing = image_id(p.build.tag)
        if existing:
            return BuildResult(p.build.tag, existing, False, time.monotonic() - start, p)
        return _build_image(p, start, no_cache, on_event)


def _build_image(p: Plan, start: float, no_cache: bool, on_event: Callable | None) -> BuildResult:
    from . import engine

    labels = {
        "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "org.opencontainers.image.source": str(p.target.path),
    }
    cli = engine.buildkit_cli() if p.build.buildkit else None
    netrc = netrc_secret(p.spec.indexes)
    if netrc and not cli:
        from .errors import SecretNeedsBuildKit

        needing = next(i for i in p.spec.indexes if netrc_secret((i,)))
        raise SecretNeedsBuildKit(f"{needing.shown} needs credentials, which dsenv gives a build only as a BuildKit "
                                  "secret, and this machine builds with the classic builder")
    if cli:
        new_id = engine.build_with_buildkit(cli, p.build.context, p.build.dockerfile, p.build.tag, labels=labels,
                                            on_event=on_event, no_cache=no_cache,
                                            secrets={SECRET_ID: netrc} if netrc else None)
    else:
        context = engine.make_context(p.build.context, p.build.dockerfile)
        new_id = engine.build(context, p.build.tag, labels=labels, on_event=on_event, no_cache=no_cache)
    return BuildResult(p.build.tag, new_id, True, time.monotonic() - start, p, delta=p.build.delta_parent is not None)


def export(path: str | Path, dest: str | Path, *, buildkit: bool = False, as_of: str | None = None) -> tuple[Path, str]:
    """Write the full Dockerfile and its build context to a new folder, so any CI can `docker build` the same image
    (buildkit=True writes the variant with uv cache mounts, which needs DOCKER_BUILDKIT=1). Returns (folder, tag)."""
    from .errors import UsageError

    out = Path(dest)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{dest} exists and is not empty", "give a new folder; dsenv does not overwrite files")
    p = plan(path, as_of=as_of, full=True)
    if not buildkit and netrc_secret(p.spec.indexes):
        raise UsageError("this environment's package index needs credentials, which only a BuildKit build takes "
                         "(as a secret)", "export with --buildkit, then: DOCKER_BUILDKIT=1 docker build --secret "
                         "id=dsenv-netrc,src=$HOME/.netrc DIR")
    p.build.buildkit = buildkit
    p.build.variables["uv_binary"] = False  # portable: the exported Dockerfile installs uv itself
    p.build.context.pop("uv", None)
    p.build.__dict__.pop("dockerfile", None)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in {**p.build.context, "Dockerfile": p.build.dockerfile.encode()}.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if name == "postBuild":
            target.chmod(0o755)
    (out / "dsenv.lock").write_text(p.lock.text)
    return out, p.build.tag


def check_imports(tag: str, modules: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Import each module inside the image; returns {module: error} for those that fail (empty: all import)."""
    from . import engine

    script = (
        "import importlib, json, sys\n"
        "bad = {}\n"
        "for m in sys.argv[1:]:\n"
        "    try:\n        importlib.import_module(m)\n"
        "    except Exception as e:\n        bad[m] = f'{type(e).__name__}: {e}'\n"
        "print('DSENV-CHECK ' + json.dumps(bad))\n"
    )
    code, output = engine.run_once(tag, ["python", "-c", script, *modules])
    for line in output.splitlines():
        if line.startswith("DSENV-CHECK "):
            import json

            return json.loads(line[len("DSENV-CHECK "):])
    return {"(python)": f"exit {code}: {output.strip()[-300:]}"}


def images() -> list:
    """The images dsenv built (engine.ImageInfo), newest first."""
    from . import engine

    return engine.list_images()


def bootstrap_base(python: str = "3.11", *, force: bool = False, log: Callable[[str], None] = lambda s: None) -> str:
    """Make the Debian-based Python base image from Debian packages (for machines that reach no registry)."""
    from . import base

    return base.bootstrap(python, force=force, log=log)


@contextmanager
def on_host(name_or_url: str | None) -> Iterator[None]:
    """Act on a remote Docker host inside the block: a name from `dsenv hosts` or an ssh:// URL (checked first);
    None or '' leaves the host as it is (DOCKER_HOST's daemon, or the local one)."""
    if not name_or_url:
        yield
        return
    from . import engine
    from .remote.hosts import resolve

    resolve(name_or_url)  # an unknown name or a bad URL fails here, before anything starts
    with engine.use_host(name_or_url):
        yield


def set_host(name_or_url: str) -> None:
    """Act on this remote Docker host from now on in this context (the CLI's --host)."""
    from . import engine
    from .remote.hosts import resolve

    resolve(name_or_url)
    engine.set_host(name_or_url)


def current_host() -> str | None:
    """The remote host dsenv acts on now (None: a local daemon)."""
    from . import engine

    return engine.current_host()


def docker_cli_environment() -> dict[str, str]:
    """Environment variables that point a docker CLI at the daemon dsenv acts on."""
    from . import engine

    return engine.host_environment()


def daemon_info() -> dict:
    """The Docker daemon dsenv acts on: its version, API version and architecture."""
    from . import engine

    return engine.server_info()
