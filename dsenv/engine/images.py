"""Images: inspect, list, pull a base, import a root filesystem, remove."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BaseImageMissing, DaemonPermissionDenied, DaemonUnavailable, EngineError
from .connection import _translate, client

MANAGED_LABEL = "io.dsenv.spec.sha256"


@dataclass(frozen=True)
class ImageInfo:
    """What dsenv shows of an image: id, tags, labels, size, created."""

    id: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    size: int
    created: str


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


def import_rootfs(tar_stream: Any, repository: str, tag: str) -> str:
    """`docker import` of a root filesystem tar stream; returns the image id."""
    with _translate(f"importing {repository}:{tag}"):
        out = client().import_image_from_data(tar_stream, repository=repository, tag=tag)
    info = image_info(f"{repository}:{tag}")
    if not info:
        raise EngineError(f"importing {repository}:{tag} failed: {str(out)[:200]}", "see the daemon's log")
    return info.id


def remove_image(ref: str) -> None:
    """Remove an image by tag or id (its other tags and children keep their layers)."""
    import docker.errors

    with _translate(f"removing {ref}"):
        try:
            client().remove_image(ref, noprune=False)
        except docker.errors.ImageNotFound:
            return
