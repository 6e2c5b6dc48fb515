"""A persistent IPython kernel inside an environment's container, reached with jupyter_client over ports
published on 127.0.0.1 with a fresh key: what `%%dsenv run` cells execute in."""
from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import watchdog
from .errors import RunError

CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
POLL = 0.25  # seconds between checks for Ctrl-C while waiting for the remote kernel


class _Presses:
    """How many times Ctrl-C was pressed."""

    def __init__(self) -> None:
        self.count = 0


@contextlib.contextmanager
def _ctrl_c() -> Iterator[_Presses]:
    """Count SIGINTs instead of raising KeyboardInterrupt, for the duration (main thread only; elsewhere signals
    cannot arrive anyway). A KeyboardInterrupt raised inside jupyter_client's event loop would leave it unusable."""
    pressed = _Presses()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def count(signum: int, frame: Any) -> None:
        pressed.count += 1

    previous = signal.signal(signal.SIGINT, count)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class ExecuteResult:
    """What one remote execution produced: status, and the error (name, value, traceback) if it raised."""

    status: str
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)


class RemoteKernel:
    """An ipykernel in a dsenv container; execute() streams its outputs through callbacks."""

    def __init__(self, name: str, client: Any, workdir: tempfile.TemporaryDirectory, host: str | None = None) -> None:
        self.name = name
        self.client = client
        self.host = host
        self._workdir = workdir
        # removes the container should this process end without stop() (a killed or crashed notebook kernel)
        self._watchdog = watchdog.watch(name, host=host)

    @classmethod
    def start(cls, path: str | Path | None = None, *, image: str | None = None, gpus: str | None = None,
              timeout: float = 60, host: str | None = None) -> RemoteKernel:
        """Start the kernel container (building the environment if needed) and connect to it; on a remote host
        (a name or ssh:// URL) its ports reach here through SSH forwards."""
        try:
            from jupyter_client import BlockingKernelClient
        except ImportError as e:
            raise RunError("%%dsenv run needs jupyter_client", "pip install 'dsenv[notebook]'") from e

        from . import containers

        ports = []
        while len(ports) < len(CHANNELS):
            port = containers._free_port()
            if port not in ports:
                ports.append(port)
        key = secrets.token_hex(32)
        info = {**dict(zip(CHANNELS, ports)), "ip": "0.0.0.0", "key": key, "transport": "tcp",
                "signature_scheme": "hmac-sha256", "kernel_name": "python3"}
        workdir = tempfile.TemporaryDirectory(prefix="dsenv-kernel-")
        conn = Path(workdir.name) / "kernel.json"
        conn.write_text(json.dumps(info))
        os.chmod(conn, 0o600)
        options = containers.RunOptions(
            command=["python", "-m", "ipykernel_launcher", "-f", "/home/dsenv/kernel/kernel.json"],
            ports=[f"{p}:{p}" for p in ports], volumes=[f"{workdir.name}:/home/dsenv/kernel:ro"], image=image,
            gpus=gpus, detach=True)
        from .api import on_host

        with on_host(host):
            result = containers.run(path, options)
        local = {name: result.ports.get(port, port) for name, port in zip(CHANNELS, ports)}
        client = BlockingKernelClient()
        client.load_connection_info({**info, **local, "ip": "127.0.0.1"})
        client.start_channels()
        try:
            client.wait_for_ready(timeout=timeout)
        except RuntimeError as e:
            client.stop_channels()
            with on_host(host):
                containers.rm(result.name)
            raise RunError(f"the kernel in {result.name} did not answer within {timeout:.0f} s",
                           "check 'dsenv logs' of a kept container, or raise the timeout") from e
        return cls(result.name, client, workdir, host)

    def execute(self, code: str, *, on_stream: Callable[[str, str], None] | None = None,
                on_display: Callable[[dict, dict], None] | None = None) -> ExecuteResult:
        """Run code in the remote kernel; streams go to on_stream(name, text), rich outputs to on_display(data,
        metadata). Ctrl-C interrupts the remote code; a second Ctrl-C before it stops gives up waiting here."""
        msg_id = self.client.execute(code, allow_stdin=False)
        result = ExecuteResult("ok")
        with _ctrl_c() as pressed:
            sent = 0
            while True:
                if pressed.count > sent:  # asked between polls: never raised inside jupyter_client's event loop
                    if sent:
                        raise KeyboardInterrupt
                    sent = pressed.count
                    self.interrupt()
                try:
                    msg = self.client.get_iopub_msg(timeout=POLL)
                except queue.Empty:
                    continue
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream" and on_stream:
                    on_stream(content["name"], content["text"])
                elif kind in ("display_data", "execute_result", "update_display_data") and on_display:
                    on_display(content.get("data", {}), content.get("metadata", {}))
                elif kind == "error":
                    result = ExecuteResult("error", content.get("ename", ""), content.get("evalue", ""),
                                           list(content.get("traceback", [])))
                elif kind == "status" and content.get("execution_state") == "idle":
                    return result

    def interrupt(self) -> None:
        """Interrupt the running code (SIGINT to the kernel, through the container's init)."""
        from . import engine
        from .api import on_host

        with on_host(self.host):
            engine.signal(self.name, "SIGINT")

    def stop(self) -> None:
        """Disconnect and remove the kernel's container."""
        from . import containers
        from .api import on_host
        from .errors import DsenvError

        try:
            self.client.stop_channels()
        finally:
            try:
                with on_host(self.host):
                    containers.rm(self.name)
            except DsenvError:
                pass
            self._workdir.cleanup()
            if self._watchdog and self._watchdog.poll() is None:
                self._watchdog.terminate()
                self._watchdog.wait(timeout=10)
