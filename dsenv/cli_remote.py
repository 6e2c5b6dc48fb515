"""`dsenv hosts` (named remote Docker hosts: add, ls, rm, check) and `dsenv tunnels` (the SSH forwards dsenv keeps)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from .remote import hosts as remote_hosts
from .remote import tunnels as remote_tunnels


@click.group()
def hosts() -> None:
    """Remote Docker hosts reached over SSH (use them with --host NAME)."""


@hosts.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--identity", type=click.Path(path_type=Path), help="Private key for this host (default: ssh's own).")
def hosts_add(name: str, url: str, identity: Path | None) -> None:
    """Name a host: dsenv hosts add gpu1 ssh://alice@gpu-box:22."""
    host = remote_hosts.add_host(name, url, str(identity) if identity else None)
    click.echo(f"added {host.name}: {host.url} (in {remote_hosts.hosts_path()})", err=True)
    click.echo(host.name)


@hosts.command("rm")
@click.argument("name")
def hosts_rm(name: str) -> None:
    """Forget a named host."""
    remote_hosts.remove_host(name)
    click.echo(name)


@hosts.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def hosts_ls(as_json: bool) -> None:
    """The named hosts."""
    found = remote_hosts.load_hosts()
    if as_json:
        click.echo(json.dumps([h.__dict__ for h in found.values()], indent=2))
        return
    click.echo(f"{'NAME':<16} {'URL':<40} IDENTITY")
    for h in found.values():
        click.echo(f"{h.name:<16} {h.url:<40} {h.identity or '-'}")


@hosts.command("check")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def hosts_check(name: str, as_json: bool) -> None:
    """Is the host usable: reachable over SSH, its Docker version, its GPUs, the disk free for Docker there."""
    from . import api

    host = remote_hosts.resolve(name)
    started = time.monotonic()
    with api.on_host(name):
        info = api.daemon_info()  # reachability, keys, host key and Docker: one clear error if any fails
    seconds = time.monotonic() - started
    gpus = remote_hosts.gpu_uuids(host)
    df = "df -Pk \"$(docker info --format '{{.DockerRootDir}}')\" | tail -n 1"
    code, out, _ = remote_hosts.run_on(host, ["sh", "-c", df])
    free = int(out.split()[3]) * 1024 if code == 0 and len(out.split()) >= 4 and out.split()[3].isdigit() else None
    if as_json:
        click.echo(json.dumps({"host": host.name, "url": host.url, "docker": info["version"], "api": info["api"],
                               "arch": info["arch"], "gpus": [{"uuid": u, "name": n} for u, n in gpus],
                               "disk_free": free, "connect_seconds": round(seconds, 3)}, indent=2))
        return
    click.echo(f"{host.name}: reachable ({host.url}, {seconds:.2f} s)")
    click.echo(f"  Docker {info['version']} (API {info['api']}, {info['arch']})")
    click.echo("  GPUs   " + (", ".join(f"{n} {u}" for u, n in gpus) if gpus else "none"))
    click.echo("  disk   " + (f"{free / 2**30:.1f} GiB free for Docker" if free is not None else "unknown"))


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def tunnels(ctx: click.Context, as_json: bool) -> None:
    """The SSH forwards dsenv keeps open: local port -> host:remote port, container, state."""
    if ctx.invoked_subcommand:
        return
    found = remote_tunnels.list_tunnels()
    if as_json:
        click.echo(json.dumps([t.__dict__ for t in found], indent=2))
        return
    click.echo(f"{'ID':<9} {'LOCAL':<16} {'REMOTE':<34} {'CONTAINER':<26} STATE")
    for t in found:
        where = remote_hosts.parse_url(t.url)[1] if t.host.startswith("ssh://") else t.host
        remote = f"{where}:127.0.0.1:{t.remote_port}"
        state = t.state + (f" ({t.reconnects} reconnects)" if t.reconnects else "")
        click.echo(f"{t.id:<9} {'127.0.0.1:' + str(t.local_port):<16} {remote:<34} {t.container:<26} {state}")


@tunnels.command("close")
@click.argument("ident", required=False)
@click.option("--all", "close_all", is_flag=True, help="Close every forward.")
def tunnels_close(ident: str | None, close_all: bool) -> None:
    """Close a forward (by ID or container name), or --all."""
    from .errors import UsageError

    if not ident and not close_all:
        raise UsageError("say which forward to close", "give an ID from 'dsenv tunnels', or --all")
    for t in remote_tunnels.close_matching(None if close_all else ident):
        click.echo(t.id)
