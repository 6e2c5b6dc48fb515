"""The remote-host side of running a container: -v remote: paths checked there, published ports forwarded here,
GPUs chosen there, synced folders brought back and forgotten."""
from __future__ import annotations

import json
from pathlib import Path

from .. import containers, engine
from ..errors import UsageError


def check_paths(binds: list[str], remote: str | None) -> None:
    """-v remote:PATH needs --host, and PATH must exist there (one ssh round trip over the shared connection)."""
    wanted = [b[len(containers.REMOTE_PREFIX):].split(":")[0] for b in binds if b.startswith(containers.REMOTE_PREFIX)]
    if wanted and not remote:
        raise UsageError(f"-v {containers.REMOTE_PREFIX}{wanted[0]}:...: a remote path needs a remote host",
                         "add --host NAME (or mount a local folder without 'remote:')")
    if wanted:
        from . import hosts

        host = hosts.resolve(remote or "")
        for path in wanted:
            code, _, err = hosts.run_on(host, ["test", "-e", path])
            if code != 0:
                raise UsageError(f"-v {containers.REMOTE_PREFIX}{path}:...: {path} does not exist on {host.name}"
                                 + (f" ({err.strip()[:120]})" if err.strip() else ""),
                                 "create it there first, or fix the path")


def forward_ports(remote: str, name: str, cid: str, published: dict[int, int], wanted: dict[int, int]) -> dict[int, int]:
    """Open an SSH forward for each port published on the remote's 127.0.0.1; container port -> local port (the
    -p host port when it is free here, else a free one)."""
    from . import tunnels

    local = {}
    try:
        for ctr, remote_port in published.items():
            want = wanted.get(ctr)
            port = want if want and containers._port_free("127.0.0.1", want) else None
            local[ctr] = tunnels.open_forward(remote, name, cid, remote_port, port).local_port
    except BaseException:
        close_forwards(cid)
        raise
    return local


def close_forwards(cid: str) -> None:
    """Close the container's forwards (on a remote host; nothing to do for a local daemon)."""
    if engine.current_host():
        from . import tunnels

        tunnels.close_matching(container_id=cid)


def choose_gpus(request: str, share: bool) -> list[str]:
    """GPU UUIDs on the remote host for a request (nvidia-smi there, minus those dsenv containers there hold)."""
    from . import hosts

    held = set() if share else set(containers.dsenv_gpu_holders()[0])
    return hosts.remote_gpus(engine.current_host() or "", request, held)


def sync_back(cid: str, synced: list[list[str]]) -> list[str]:
    """Bring the synced folders' changed files back; warnings for conflicts."""
    from . import sync

    notes = []
    for volume, inside, folder, mode in synced:
        if mode == "ro":
            continue
        report = sync.pull(cid, inside, volume, Path(folder))
        for rel in report.conflicts:
            notes.append(f"{folder}/{rel} changed here and on the remote: kept yours, the remote's is {rel}.remote")
    return notes


def forget_synced(synced: list[list[str]]) -> None:
    """Remove the synced folders' volumes on the host and what was remembered of them."""
    from . import sync

    for volume, *_ in synced:
        sync.forget(volume)


def synced_folders(info: engine.ContainerInfo) -> list[list[str]]:
    """[volume, path inside, local folder, mode] of each folder synced for the container (from its label)."""
    try:
        return json.loads(info.labels.get("io.dsenv.sync") or "[]")
    except ValueError:
        return []
