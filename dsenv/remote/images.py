"""Images a remote host lacks, sent from this machine's daemon (docker save here, docker load there, streamed)."""
from __future__ import annotations

from ..errors import BaseImageMissing


def copy_to_current(ref: str) -> None:
    """Stream an image from this machine's daemon to the current (remote) host."""
    from .. import engine

    with engine.use_host(""):
        if not engine.image_info(ref):
            raise BaseImageMissing(f"{ref} is not on this machine either, so it cannot be sent to the remote host")
        chunks = engine.save_image(ref)
        first = next(chunks, b"")  # the local request starts here, inside the local context

    def stream():
        yield first
        yield from chunks

    engine.load_image(stream())
