"""Images: inspect, list, pull a base, import a root filesystem, remove."""
from __future__ import annotations

import json

from dataclasses import dataclass, field
from typing import Any

from collections.abc import Callable

from ..errors import BaseImageMissing, DaemonPermissionDenied, DaemonUnavailable, EngineError, RegistryError
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
    env: dict[str, str] = field(default_factory=dict)


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
    env = dict(item.split("=", 1) for item in (d.get("Config") or {}).get("Env") or [] if "=" in item)
    return ImageInfo(d["Id"], tuple(d.get("RepoTags") or ()), dict(labels), int(d.get("Size", 0)), str(created), env)


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



def commit(container: str, repository: str, tag: str, message: str, author: str, labels: dict[str, str],
           env: dict[str, str] | None = None) -> str:
    """Snapshot a container (running or not) into repository:tag with extra labels; returns the image id.
    env: values that replace the container's for these names. The engine copies the container's whole config into
    the image (Env, and again under container_config), so then the snapshot is committed untagged, a container that
    never runs is created from it, and that clean container is what becomes repository:tag: the values replaced
    appear nowhere in the tagged image's config."""
    api = client()
    with _translate(f"committing {container}"):
        if not env:
            return api.commit(container, repository=repository, tag=tag, message=message, author=author,
                              conf={"Labels": labels})["Id"]
        changes = [f"ENV {k}={json.dumps(v)}" for k, v in sorted(env.items())]
        snapshot = api.commit(container, message=message, author=author, changes=changes)["Id"]
        clean = api.create_container(snapshot, labels={})["Id"]
        try:
            return api.commit(clean, repository=repository, tag=tag, message=message, author=author,
                              conf={"Labels": labels})["Id"]
        finally:
            api.remove_container(clean, force=True)


def tag_image(ref: str, repository: str, tag: str) -> None:
    """Give an image another name."""
    with _translate(f"tagging {ref}"):
        client().tag(ref, repository, tag)


def _registry_events(stream, action: str, on_progress: Callable[[dict], None] | None) -> dict:
    final: dict = {}
    for event in stream:
        if not isinstance(event, dict):
            continue
        if "error" in event or "errorDetail" in event:
            text = (event.get("errorDetail") or {}).get("message") or event.get("error", "")
            raise _registry_error(action, text)
        if isinstance(event.get("aux"), dict):
            final.update(event["aux"])
        status = event.get("status", "")
        if status.startswith("Digest: "):
            final["Digest"] = status.split()[1]
        if on_progress:
            on_progress(event)
    return final


def _registry_error(action: str, text: str) -> RegistryError:
    low = text.lower()
    if any(w in low for w in ("unauthorized", "authentication required", "denied", "basic auth", "credentials")):
        return RegistryError(f"{action}: the registry refused the credentials ({text.strip()[:160]})",
                             "log in with 'docker login REGISTRY' (dsenv uses Docker's credentials)")
    if "connection refused" in low or "no such host" in low or "dial tcp" in low or "timeout" in low:
        return RegistryError(f"{action}: cannot reach the registry ({text.strip()[:160]})",
                             "check the registry address and that it is running")
    if "not found" in low or "manifest unknown" in low:
        return RegistryError(f"{action}: no such image in the registry ({text.strip()[:160]})",
                             "check the repository and tag")
    return RegistryError(f"{action} failed: {text.strip()[:200]}", "see the registry's log")


def _transfer(verb: str, repository: str, tag: str, on_progress: Callable[[dict], None] | None) -> dict:
    """Stream a push or pull ('pushing'/'pulling'), mapping registry failures to RegistryErrors; the final aux."""
    import docker.errors

    action = f"{verb} {repository}:{tag}"
    call = client().push if verb == "pushing" else client().pull
    with _translate(action):
        try:
            return _registry_events(call(repository, tag=tag, stream=True, decode=True), action, on_progress)
        except docker.errors.APIError as e:
            raise _registry_error(action, str(e.explanation or e)) from e


def push(repository: str, tag: str, on_progress: Callable[[dict], None] | None = None) -> str:
    """Push repository:tag with Docker's credentials, streaming progress; returns the pushed digest."""
    final = _transfer("pushing", repository, tag, on_progress)
    if not final.get("Digest"):
        raise RegistryError(f"pushing {repository}:{tag}: the registry reported no digest", "see the registry's log")
    return final["Digest"]


def pull(repository: str, tag: str, on_progress: Callable[[dict], None] | None = None) -> str:
    """Pull repository:tag, streaming progress; returns the digest."""
    return _transfer("pulling", repository, tag, on_progress).get("Digest", "")


def repo_digests(ref: str) -> list[str]:
    """The registry digests an image is known by (repo@sha256:...)."""
    with _translate(f"inspecting {ref}"):
        return list(client().inspect_image(ref).get("RepoDigests") or [])
