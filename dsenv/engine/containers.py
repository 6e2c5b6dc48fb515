"""Containers: run, list, stop, remove, logs, exec."""
from __future__ import annotations

from .connection import _translate, client

def run_once(image: str, command: list[str], timeout: int = 600) -> tuple[int, str]:
    """Run a command in a fresh container of an image, wait, return (exit code, output); the container is removed."""
    c = client()
    with _translate(f"running a check in {image}"):
        container = c.create_container(image, command=command, host_config=c.create_host_config(network_mode="none"),
                                       environment={"NVIDIA_VISIBLE_DEVICES": "void"}, labels={"io.dsenv.managed": "1"})
        try:
            c.start(container)
            code = c.wait(container, timeout=timeout).get("StatusCode", 1)
            output = c.logs(container).decode("utf-8", "replace")
        finally:
            c.remove_container(container, force=True)
    return int(code), output
