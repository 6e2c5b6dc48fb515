"""Moving data to and from a daemon: tar archives into and out of containers, volumes, images saved and loaded
(what a remote daemon needs: it cannot see this machine's folders or images)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from .connection import _translate, client


def put_archive(container: str, path: str, data: bytes) -> None:
    """Unpack a tar archive into PATH of a container (created or running; its volumes included)."""
    with _translate(f"copying files into {container[:12]}"):
        client().put_archive(container, path, data)


def get_archive(container: str, path: str) -> bytes:
    """PATH of a container (running or stopped; its volumes included) as a tar archive."""
    with _translate(f"copying files out of {container[:12]}"):
        stream, _stat = client().get_archive(container, path)
        return b"".join(stream)


def create_volume(name: str, labels: dict[str, str] | None = None) -> str:
    """Create a named volume (no error when it exists); its name."""
    with _translate(f"creating volume {name}"):
        return client().create_volume(name, labels=labels or {})["Name"]


def remove_volume(name: str) -> None:
    """Remove a named volume; no error when it is gone."""
    import docker.errors

    with _translate(f"removing volume {name}"):
        try:
            client().remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass


def save_image(ref: str) -> Iterator[bytes]:
    """An image as the chunks of a `docker save` tar."""
    with _translate(f"saving {ref}"):
        stream = client().get_image(ref)
    yield from stream


def load_image(chunks: Iterable[bytes]) -> None:
    """Load a `docker save` tar (given as chunks, streamed)."""
    with _translate("loading an image"):
        for _event in client().load_image(chunks):
            pass
