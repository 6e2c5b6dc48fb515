"""A notebook folder on a remote host: copied into a volume there before the run (a tar through the Docker API) and
back after it, comparing sha256 manifests: only changed files come back, nothing local is deleted, and a file changed
on both sides is reported (the remote copy saved beside it as NAME.remote), never overwritten."""
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import atomic
from ..errors import SyncError
from . import ssh

SKIP_DIRS = {".git", ".ipynb_checkpoints", "__pycache__", ".venv", "node_modules", ".mypy_cache", ".pytest_cache"}
MOUNT = "/sync"


@dataclass
class SyncReport:
    """What came back from the remote: files written here, conflicts (the remote copy saved beside), unchanged."""

    written: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    unchanged: int = 0


def _skipped(rel: PurePosixPath) -> bool:
    return any(part in SKIP_DIRS for part in rel.parts[:-1]) or rel.name in SKIP_DIRS


def sha256(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def manifest(folder: Path) -> dict[str, str]:
    """Relative POSIX path -> sha256 of every regular file under folder (symlinks and tool folders left out)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            out[path.relative_to(folder).as_posix()] = sha256(path.read_bytes())
    return out


def folder_tar(folder: Path, files: list[str], uid: int, gid: int) -> bytes:
    """A tar of these files of folder (and their folders), owned by uid:gid, the top folder included as '.'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = sorted({str(p) for rel in files for p in PurePosixPath(rel).parents if str(p) != "."})
        for name in [".", *dirs]:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, uid, gid
            tar.addfile(info)
        for rel in files:
            path = folder / rel
            data = path.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.uid, info.gid = len(data), path.stat().st_mode & 0o777, uid, gid
            info.mtime = int(path.stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def classify(base: dict[str, str], local: dict[str, str], remote: dict[str, str]) -> tuple[list[str], list[str], int]:
    """(files to write here, conflicts, unchanged count) from the manifest sent, the local one now and the remote's.
    Deletions on the remote never delete here."""
    write, conflicts, unchanged = [], [], 0
    for rel, rsha in sorted(remote.items()):
        lsha, bsha = local.get(rel), base.get(rel)
        if rsha == bsha or rsha == lsha:
            unchanged += 1
        elif (lsha is not None and lsha == bsha) or (lsha is None and bsha is None):
            write.append(rel)
        else:
            conflicts.append(rel)
    return write, conflicts, unchanged


def _state(volume: str) -> Path:
    return ssh.state_dir() / "sync" / f"{volume}.json"


def new_volume_name() -> str:
    """A fresh name for a run's work volume."""
    return f"dsenv-work-{secrets.token_hex(6)}"


def push(folder: Path, volume: str, image: str) -> int:
    """Copy folder into a new volume on the current host (through a created, never started, helper container of
    image); remember what was sent. The number of files."""
    from .. import engine

    sent = manifest(folder)
    data = folder_tar(folder, sorted(sent), os.getuid(), os.getgid())
    engine.create_volume(volume, {"io.dsenv.managed": "1", "io.dsenv.notebook": str(folder)})
    helper = engine.ContainerSpec(image=image, name=f"{volume}-in", command=["true"], binds=[f"{volume}:{MOUNT}:rw"],
                                  labels={"io.dsenv.sync": volume}, init=False)
    cid = engine.create(helper)
    try:
        engine.put_archive(cid, MOUNT, data)
    except BaseException:
        engine.remove(cid)
        engine.remove_volume(volume)
        raise
    engine.remove(cid)
    path = _state(volume)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"folder": str(folder), "manifest": sent}))
    return len(sent)


def pull(container_id: str, workdir: str, volume: str, folder: Path | None = None) -> SyncReport:
    """Bring changed files of the container's work folder back here (see the module's rules); the report."""
    from .. import engine

    try:
        saved = json.loads(_state(volume).read_text())
    except (OSError, ValueError):
        saved = {"folder": str(folder) if folder else "", "manifest": {}}
    target = Path(folder or saved["folder"])
    if not target.is_dir():
        raise SyncError(f"the local folder {target} is gone; nothing synced back",
                        f"recreate it and run 'dsenv stop' again, or copy out of volume {volume}")
    data = engine.get_archive(container_id, workdir)
    remote: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = PurePosixPath(member.name).parts[1:]  # the archive starts with the folder's own name
            rel = PurePosixPath(*parts) if parts else None
            if rel is None or rel.is_absolute() or ".." in rel.parts or _skipped(rel):
                continue
            f = tar.extractfile(member)
            remote[rel.as_posix()] = f.read() if f else b""
    local = manifest(target)
    write, conflicts, unchanged = classify(saved["manifest"], local, {k: sha256(v) for k, v in remote.items()})
    for rel in write:
        _write(target / rel, remote[rel])
    for rel in conflicts:
        _write(target / f"{rel}.remote", remote[rel])
    _state(volume).parent.mkdir(parents=True, exist_ok=True)
    _state(volume).write_text(json.dumps({"folder": str(target), "manifest": {k: sha256(v) for k, v in remote.items()}}))
    return SyncReport(write, conflicts, unchanged)


def _write(path: Path, data: bytes) -> None:
    atomic.write_bytes(path, data)


def forget(volume: str) -> None:
    """Remove the volume on the current host and what was remembered of it."""
    from .. import engine

    engine.remove_volume(volume)
    _state(volume).unlink(missing_ok=True)


def push_binds(binds: list[str], image: str) -> tuple[list[str], list[list[str]]]:
    """Each 'HOSTDIR:CTR:MODE' bind becomes a fresh volume on the current (remote) host holding HOSTDIR's files
    ('remote:PATH:CTR:MODE' binds name a path there and are kept as they are); (the new binds, [volume, CTR, HOSTDIR, MODE] for each). Volumes already made are removed when one fails."""
    from ..errors import UsageError

    out: list[str] = []
    synced: list[list[str]] = []
    try:
        for bind in binds:
            if bind.startswith("remote:"):  # already on the remote host: mounted as it is
                out.append(bind[len("remote:"):])
                continue
            host, inside, mode = (bind.split(":") + ["rw"])[:3]
            if not Path(host).is_dir():
                raise UsageError(f"-v {bind}: only folders can be synced to a remote host", "mount its folder instead")
            volume = new_volume_name()
            push(Path(host), volume, image)
            synced.append([volume, inside, host, mode])
            out.append(f"{volume}:{inside}:{mode}")
    except BaseException:
        for volume, *_ in synced:
            forget(volume)
        raise
    return out, synced
