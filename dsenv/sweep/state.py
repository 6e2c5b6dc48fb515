"""A sweep on disk: `<out>/.dsenv/sweep.json` (the notebook, the image, the grid, the submissions), one state file
per task written by the task itself, and the output notebooks. An index under the cache maps sweep ids to folders."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic
from .errors import SweepNotFound

META = ".dsenv"
MOUNT = "/dsenv-sweep"  # where the output folder is mounted in every task's container
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
            "DEADLINE", "SKIPPED", "LOST"}


@dataclass
class Task:
    """One parameter set of a sweep: its index in the grid, its parameters and its output name."""

    index: int
    name: str
    parameters: dict[str, Any]


@dataclass
class TaskStatus:
    """What is known of one task: state, node, elapsed seconds, exit code, scheduler ids, output notebook."""

    index: int
    name: str
    parameters: dict[str, Any]
    state: str = "UNKNOWN"
    node: str = ""
    elapsed: float | None = None
    exit_code: int | None = None
    job_id: str = ""
    output: str = ""
    reason: str = ""


@dataclass
class Sweep:
    """Everything a sweep needs to be submitted again, watched, cancelled and collected."""

    id: str
    notebook: str
    folder: str
    rel: str
    out: str
    image: dict[str, Any]
    tasks: list[Task]
    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    submissions: list[dict[str, Any]] = field(default_factory=list)
    timeout: int = 600
    seed: int = 0
    created: str = ""
    workdir: str = "/home/dsenv/work"
    kernel: str = "python3"
    dsenv_version: str = ""
    seed_startup: str = ""
    retired: list[Task] = field(default_factory=list)  # tasks of earlier grids, kept for their queued array tasks

    @property
    def out_path(self) -> Path:
        """The output folder on this machine."""
        return Path(self.out)

    @property
    def meta(self) -> Path:
        """The sweep's own folder inside the output folder."""
        return self.out_path / META

    def output_of(self, task: Task) -> Path:
        """The output notebook of a task."""
        return self.out_path / f"{task.name}.ipynb"

    def task(self, key: str | int) -> Task:
        """A task of the current grid by index or by name (or the name's parameter hash)."""
        for t in self.tasks:
            if str(t.index) == str(key) or t.name == str(key) or t.name.endswith(f"-{key}"):
                return t
        raise SweepNotFound(f"sweep {self.id} has no task {key}",
                            f"give a task index or name from 'dsenv sweep status {self.id}'")

    def to_json(self) -> dict[str, Any]:
        """Plain data for sweep.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        """A sweep from sweep.json's data."""
        data = dict(data)
        data["tasks"] = [Task(**t) for t in data.get("tasks", [])]
        data["retired"] = [Task(**t) for t in data.get("retired", [])]
        return cls(**data)


def sweep_id(stem: str, out: Path) -> str:
    """A sweep's id: the notebook's stem and 8 hex of its output folder (one folder, one sweep)."""
    return f"{stem}-{hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:8]}"


def index_dir() -> Path:
    """Where sweep ids are mapped to output folders ($XDG_CACHE_HOME/dsenv/sweeps)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dsenv" / "sweeps"


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename: readers never see half a file."""
    atomic.write_text(path, json.dumps(data, indent=1, default=str))


def save(sweep: Sweep) -> None:
    """Write sweep.json and the index entry."""
    write_json(sweep.meta / "sweep.json", sweep.to_json())
    idx = index_dir()
    idx.mkdir(parents=True, exist_ok=True)
    (idx / sweep.id).write_text(sweep.out + "\n")


def load(ref: str | Path) -> Sweep:
    """A sweep by id (from the index) or by its output folder."""
    candidates = [Path(ref)]
    entry = index_dir() / str(ref)
    if "/" not in str(ref) and entry.is_file():
        candidates.insert(0, Path(entry.read_text().strip()))
    for folder in candidates:
        f = folder / META / "sweep.json"
        if f.is_file():
            try:
                return Sweep.from_json(json.loads(f.read_text()))
            except (ValueError, TypeError) as e:
                raise SweepNotFound(f"{f} is not a dsenv sweep file ({e})") from e
    raise SweepNotFound(f"no sweep {ref}")


def task_state_path(sweep: Sweep, task: Task) -> Path:
    """Where a task writes its own state (RUNNING, then COMPLETED or FAILED)."""
    return sweep.meta / "state" / f"{task.name}.json"


def read_task_state(sweep: Sweep, task: Task) -> dict[str, Any]:
    """A task's own state file, or {} when it has not started."""
    p = task_state_path(sweep, task)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def read_provenance(path: Path) -> dict[str, Any]:
    """metadata.dsenv.provenance of an output notebook ({} when absent or unreadable)."""
    try:
        nb = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    dsenv = (nb.get("metadata") or {}).get("dsenv") or {}
    return dsenv.get("provenance") or {} if isinstance(dsenv, dict) else {}


def is_done(sweep: Sweep, task: Task) -> bool:
    """The task's output exists, ran in this sweep's image (same id) and succeeded."""
    prov = read_provenance(sweep.output_of(task))
    return bool(prov) and prov.get("image_id") == sweep.image.get("id") and prov.get("exit_code") == 0


def now() -> str:
    """UTC time as ISO 8601."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
