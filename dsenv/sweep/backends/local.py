"""The local backend: the sweep's tasks as containers on this Docker daemon, a bounded worker pool, GPUs from dsenv's
allocator (containers.run picks free ones under the host-wide lock)."""
from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ...errors import DsenvError
from .. import state as st
from ..state import MOUNT, Sweep, Task
from . import Backend, Resources

RUNNER = ["python", f"{MOUNT}/{st.META}/runner.py"]


def container_name(sweep: Sweep, task: Task) -> str:
    """The container of a task: dsenv-sweep-<sweep id>-<task index>."""
    return f"dsenv-sweep-{sweep.id}-{task.index}"


def _follow(name: str, cancelled: Path, write: Callable[[str], None]) -> int | None:
    """Stream a started task container's output, then remove it; its exit code. A container that started after
    the sweep was cancelled is removed at once (cancel removes those that existed when it looked)."""
    from ... import containers, engine

    try:
        if cancelled.exists():
            return 137
        for chunk in containers.logs(name, follow=True):
            write(chunk)
        return engine.wait(name)
    finally:
        try:
            containers.rm(name)
        except DsenvError:
            pass


class LocalBackend(Backend):
    """Tasks run here, `jobs` at a time; submit returns when all have finished (or the sweep was cancelled)."""

    name = "local"
    blocking = True

    def check(self, resources: Resources) -> None:
        """A daemon must answer (the engine raises its own clear error otherwise)."""
        from ... import engine

        engine.server_info()

    def submit(self, sweep: Sweep, tasks: list[Task], resources: Resources,
               on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run the tasks in a pool of `resources.jobs` workers; exit codes by task index."""
        from ... import containers

        cancelled = sweep.meta / "cancelled"
        cancelled.unlink(missing_ok=True)
        codes: dict[int, int | None] = {}
        lock = threading.Lock()
        host = socket.gethostname()

        def one(task: Task) -> None:
            if cancelled.exists():
                codes[task.index] = None
                return
            log = sweep.meta / "logs" / f"local_{task.index}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            env = {"DSENV_SWEEP_DIR": MOUNT, "DSENV_TASK": str(task.index), "DSENV_NODE": host,
                   "DSENV_JOB_ID": f"local-{sweep.id}", "DSENV_GPUS": ""}
            options = containers.RunOptions(
                command=RUNNER, image=sweep.image["ref"], volumes=[f"{sweep.out}:{MOUNT}:rw"], env=env,
                gpus=resources.gpus, cpus=resources.cpus, memory=resources.memory, name=container_name(sweep, task),
                detach=True)
            with log.open("w", encoding="utf-8") as f:
                try:
                    started = containers.run(sweep.folder, options)
                    code = _follow(started.name, cancelled, f.write)
                except DsenvError as e:  # the container could not start, or was removed: say why
                    f.write(f"dsenv: {e.one_line()}\n")
                    code = 125
                    if not st.task_state_path(sweep, task).exists():
                        word = "CANCELLED" if cancelled.exists() else "FAILED"
                        st.write_json(st.task_state_path(sweep, task),
                                      {"state": word, "node": host, "exit_code": code, "error": e.one_line()})
            with lock:
                codes[task.index] = code
                if on_event:
                    word = "done" if code == 0 else ("cancelled" if cancelled.exists() else f"failed ({code})")
                    on_event(f"task {task.index} {task.name}: {word} [{len(codes)}/{len(tasks)}]")

        with ThreadPoolExecutor(max_workers=max(1, resources.jobs), thread_name_prefix="dsenv-sweep") as pool:
            list(pool.map(one, tasks))
        return {"job_id": f"local-{sweep.id}", "jobs": resources.jobs, "exit_codes": codes}

    def status(self, sweep: Sweep) -> dict[str, dict[str, Any]]:
        """Tasks whose container is running now."""
        from ... import containers

        names = {container_name(sweep, t): t for t in sweep.tasks}
        view: dict[str, dict[str, Any]] = {}
        for c in containers.ps(all_states=False):
            if c.name in names:
                view[names[c.name].name] = {"state": "RUNNING", "node": socket.gethostname(), "job_id": c.name}
        return view

    def cancel(self, sweep: Sweep) -> list[str]:
        """Stop queued tasks from starting and remove the running containers (the marker is written first, so a
        container created while this looks removes itself)."""
        from ... import containers

        sweep.meta.mkdir(parents=True, exist_ok=True)
        Path(sweep.meta / "cancelled").write_text(st.now())
        names = {container_name(sweep, t) for t in sweep.tasks}
        removed = []
        for c in containers.ps(all_states=True):
            if c.name in names:
                try:
                    containers.rm(c.name)
                    removed.append(c.name)
                except DsenvError:
                    pass
        return removed + ["the tasks still queued"]
