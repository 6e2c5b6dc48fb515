"""`dsenv run`, `ps`, `logs`, `exec`, `shell`, `stop`, `rm`, `commit`, `push`, `pull`: the container commands, on the
same `main` group as the rest of the CLI."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import api
from .errors import ContainerNotFound, UsageError


def _choose_host(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        api.set_host(value)  # an unknown name or a bad URL fails here, before anything starts
    return value


_host = click.option("--host", metavar="NAME|ssh://USER@HOST[:PORT]", expose_value=False, callback=_choose_host,
                     help="Act on this remote Docker host (a name from 'dsenv hosts' or an ssh:// URL; "
                          "DOCKER_HOST=ssh://... does the same).")


class _Progress:
    """Build progress for a terminal: one line a step; log lines with --verbose; JSON event lines with --json."""

    def __init__(self, as_json: bool, verbose: bool) -> None:
        self.as_json, self.verbose, self.step = as_json, verbose, 0

    def __call__(self, event) -> None:
        if self.as_json:
            if event.image_id:
                return
            kind = "step" if event.step != self.step else "log"
            self.step = event.step
            click.echo(json.dumps({"event": kind, "step": event.step, "total": event.total, "line": event.line}))
            return
        if event.line.startswith("Step "):
            self.step = event.step
            text = event.line.split(" : ", 1)[-1]
            click.echo(f"[{event.step}/{event.total}] {text[:110]}", err=True)
        elif self.verbose and event.line.strip():
            click.echo(f"      {event.line}", err=True)


def _kv(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            value = os.environ.get(key, "")
        out[key] = value
    return out


@click.command()
@_host
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-p", "--port", "ports", multiple=True, help="Publish a port: PORT or HOSTPORT:CONTAINERPORT (127.0.0.1).")
@click.option("-v", "--volume", "volumes", multiple=True, help="Mount HOST:CONTAINER[:ro] (with --host: synced; "
              "remote:PATH:CONTAINER[:ro] mounts a folder of the remote host where it is).")
@click.option("-e", "--env", "env", multiple=True, help="Set KEY=VALUE (KEY alone: from this shell).")
@click.option("--memory", help="Memory limit, e.g. 8g.")
@click.option("--cpus", type=float, help="CPU limit, e.g. 2.")
@click.option("--shm-size", default="1g", show_default=True, help="Size of /dev/shm (PyTorch data loaders need it).")
@click.option("--name", help="Container name (default: dsenv-<env>-<random>).")
@click.option("--gpus", help="N, all, or GPU-/MIG- UUIDs separated by commas.")
@click.option("--share-gpu", is_flag=True, help="Allow GPUs another dsenv container holds.")
@click.option("--expose", is_flag=True, help="Publish on every interface (0.0.0.0) instead of 127.0.0.1.")
@click.option("--image", help="Run this image instead of building the folder's environment.")
@click.option("-d", "--detach", is_flag=True, help="With a command: start it and return.")
@click.option("--keep", is_flag=True, help="With a command: keep the container after it exits.")
@click.option("--timeout", type=float, default=90, show_default=True, help="Seconds to wait for Jupyter to answer.")
@click.option("--allow-dangerous-mounts", is_flag=True, help="Allow mounting /, /etc, the Docker socket, ...")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(path: Path | None, command: tuple[str, ...], ports, volumes, env, memory, cpus, shm_size, name, gpus, share_gpu,
        expose, image, detach, keep, timeout, allow_dangerous_mounts, as_json) -> None:
    """Start the environment: JupyterLab (prints its URL), or COMMAND after `--` (exit code passed through)."""
    from . import containers

    if image and path is not None and not path.exists():  # `dsenv run --image X -- cmd ...`: no folder given
        command, path = (str(path), *command), None
    options = containers.RunOptions(
        ports=list(ports), volumes=list(volumes), env=_kv(env), memory=memory, cpus=cpus, shm_size=shm_size, name=name,
        gpus=gpus, share_gpu=share_gpu, expose=expose, command=list(command) or None, detach=detach, keep=keep,
        image=image, timeout=timeout, allow_dangerous_mounts=allow_dangerous_mounts,
    )
    result = containers.run(path, options, on_event=_Progress(False, False),
                            on_output=lambda chunk: click.echo(chunk, nl=False))
    for warning in result.warnings:
        click.echo(f"dsenv: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps({"name": result.name, "id": result.id, "image": result.image, "url": result.url,
                               "ports": result.ports, "exit_code": result.exit_code}))
    elif result.url:
        click.echo(f"{result.name}: JupyterLab is ready", err=True)
        click.echo(result.url)
    elif result.exit_code is None:
        click.echo(result.name)
    if result.exit_code:
        sys.exit(result.exit_code)


@click.command()
@_host
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def ps(as_json: bool) -> None:
    """dsenv's containers: name, environment, status, URL, GPUs, age."""
    from . import containers

    found = containers.ps()
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in found], indent=2))
        return
    click.echo(f"{'NAME':<28} {'ENV':<20} {'STATUS':<9} {'GPUS':<6} {'CREATED':<20} URL / PORTS")
    for c in found:
        where = c.url or ", ".join(f"{ip}:{p}->{ctr}" for ctr, (ip, p) in c.ports.items())
        click.echo(f"{c.name:<28} {c.env:<20} {c.status:<9} {c.gpus or '-':<6} {c.created[:19]:<20} {where}")


@click.command()
@_host
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the container stops.")
@click.option("--tail", default="all", help="Only the last N lines.")
def logs(name: str, follow: bool, tail: str) -> None:
    """A container's output."""
    from . import containers

    for chunk in containers.logs(name, follow=follow, tail=int(tail) if tail.isdigit() else "all"):
        click.echo(chunk, nl=False)


@click.command("exec", context_settings={"allow_interspersed_args": False})
@_host
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a running container (exit code passed through)."""
    from . import containers

    if command[:1] == ("--",):
        command = command[1:]
    sys.exit(containers.exec_(name, list(command), on_output=lambda chunk: click.echo(chunk, nl=False)))


@click.command()
@_host
@click.argument("name")
def shell(name: str) -> None:
    """An interactive shell in a running container (through the docker CLI, for a terminal)."""
    import shutil

    from . import containers

    info = [c for c in containers.ps() if c.name == name]
    if not info:
        raise ContainerNotFound(f"no dsenv container named {name}")
    docker = shutil.which("docker")
    if not docker:
        raise UsageError("the docker CLI is needed for an interactive shell", "install docker.io, or use 'dsenv exec'")
    os.execvpe(docker, [docker, "exec", "-it", "-u", f"{os.getuid()}:{os.getgid()}", name, "bash"],
               {**os.environ, **api.docker_cli_environment()})


def _each_container(action: str, names: tuple[str, ...]) -> None:
    """containers.stop or containers.rm on each name in turn: its warnings, then the name."""
    from . import containers

    for name in names:
        for note in getattr(containers, action)(name):
            click.echo(f"dsenv: warning: {note}", err=True)
        click.echo(name)


@click.command()
@_host
@click.argument("names", nargs=-1, required=True)
def stop(names: tuple[str, ...]) -> None:
    """Stop containers."""
    _each_container("stop", names)


@click.command()
@_host
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...]) -> None:
    """Remove containers (stopping them first)."""
    _each_container("rm", names)


@click.command()
@_host
@click.argument("name")
@click.argument("ref")
@click.option("-m", "--message", default="", help="What changed.")
@click.option("--author", help="Author (default: this user).")
@click.option("--force", is_flag=True, help="Move an existing tag to the new image.")
@click.option("--keep-env", is_flag=True, help="Keep the run's -e values (and its Jupyter token) in the image.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def commit(name: str, ref: str, message: str, author: str | None, force: bool, keep_env: bool, as_json: bool) -> None:
    """Snapshot container NAME into image REF (repo:tag) with provenance labels."""
    from . import containers

    result = containers.commit(name, ref, message, force=force, author=author, keep_env=keep_env)
    if as_json:
        click.echo(json.dumps({"tag": result.tag, "id": result.id, "labels": result.labels}))
    else:
        click.echo(f"committed {name} as {result.tag} ({result.id[:19]})", err=True)
        click.echo(result.tag)


class _LayerProgress:
    """Push/pull progress: one line a layer state change."""

    def __init__(self, as_json: bool) -> None:
        self.as_json, self.seen = as_json, set()

    def __call__(self, event: dict) -> None:
        key = (event.get("id"), event.get("status"))
        if self.as_json or key in self.seen or not event.get("status"):
            return
        self.seen.add(key)
        click.echo(f"  {event.get('id', '')} {event['status']}".rstrip(), err=True)


@click.command()
@_host
@click.argument("ref")
@click.option("--registry", help="Registry host[:port] to push to (the image is tagged there first).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def push(ref: str, registry: str | None, as_json: bool) -> None:
    """Push an image to a registry (Docker's credentials); prints the digest."""
    from . import containers

    result = containers.push(ref, registry, on_progress=_LayerProgress(as_json))
    if as_json:
        click.echo(json.dumps({"ref": result.ref, "digest": result.digest}))
    else:
        click.echo(f"pushed {result.ref}", err=True)
        click.echo(result.digest)


@click.command()
@_host
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pull(ref: str, as_json: bool) -> None:
    """Pull an image from a registry; prints the digest."""
    from . import containers

    result = containers.pull(ref, on_progress=_LayerProgress(as_json))
    click.echo(json.dumps({"ref": result.ref, "digest": result.digest}) if as_json else result.digest)


CONTAINER_COMMANDS = [run, ps, logs, exec_cmd, shell, stop, rm, commit, push, pull]
