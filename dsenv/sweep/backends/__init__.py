"""Sweep backends behind one small interface, found by name in a registry (as papermill finds its engines):
`local`, `slurm`, `k8s` here; another scheduler is one module registering a Backend subclass, in code with
`register()` or from a package through the `dsenv.sweep_backends` entry point group."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendNotFound
from ..state import Sweep, Task

BUILTIN = {"local": "dsenv.sweep.backends.local:LocalBackend",
           "slurm": "dsenv.sweep.backends.slurm:SlurmBackend",
           "k8s": "dsenv.sweep.backends.k8s:K8sBackend"}
_registered: dict[str, type[Backend]] = {}


@dataclass
class Resources:
    """What each task asks for: GPUs, CPUs, memory, a time limit, and where (partition, namespace, context)."""

    gpus: str | None = None
    cpus: float | None = None
    memory: str | None = None
    time: str | None = None
    target: str | None = None
    jobs: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class Backend:
    """A place to run a sweep's tasks. `check` before anything is built, `submit` the tasks, read their `status`
    from the scheduler, `cancel` what still runs."""

    name = ""
    needs_registry = False  # True: the image must be pushed and referenced by digest
    blocking = False  # True: submit returns when the tasks have finished

    def check(self, resources: Resources) -> None:
        """Fail early, with one clear line, when this backend cannot take the sweep (no scheduler, bad target)."""

    def submit(self, sweep: Sweep, tasks: list[Task], resources: Resources,
               on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Start (or queue) the tasks; a submission record (job id, indices, ...) kept in sweep.json."""
        raise NotImplementedError

    def status(self, sweep: Sweep) -> dict[str, dict[str, Any]]:
        """The scheduler's view: task name -> {state, node, elapsed, exit_code, job_id}; {} when it knows nothing."""
        return {}

    def cancel(self, sweep: Sweep) -> list[str]:
        """Stop every task of the sweep that is queued or running; what was cancelled, as words."""
        return []


def register(name: str, backend: type[Backend]) -> None:
    """Make a backend available under a name (overrides a built-in one of the same name)."""
    _registered[name] = backend


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="dsenv.sweep_backends")}


def available() -> list[str]:
    """Names of every backend this installation knows."""
    return sorted(set(BUILTIN) | set(_registered) | set(_entry_points()))


def get_backend(name: str) -> Backend:
    """A backend instance by name; BackendNotFound listing the names that exist."""
    if name in _registered:
        return _registered[name]()
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)()
    eps = _entry_points()
    if name in eps:
        return eps[name].load()()
    raise BackendNotFound(f"no sweep backend named {name!r}", f"use one of: {', '.join(available())}")


def parse_on(text: str) -> tuple[str, str | None]:
    """`--on slurm:gpu` -> ("slurm", "gpu"); `--on local` -> ("local", None)."""
    name, _, target = text.partition(":")
    return name.strip(), (target.strip() or None)
