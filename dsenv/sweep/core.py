"""Sweeps: one image, a parameter grid, one papermill run per parameter set handed to a backend; status, cancel,
retry. Output notebooks are named by a hash of their parameters and skipped when already made by the same image."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources as ir
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import DsenvError, RegistryError, UsageError
from . import grid as g
from . import state as st
from .backends import Resources, get_backend, parse_on
from .errors import RegistryUnreachable, SweepError
from .state import Sweep, Task, TaskStatus

ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED", "SUBMITTED"}
RETRYABLE = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
             "LOST", "NOT SUBMITTED", "UNKNOWN"}


@dataclass
class SubmitResult:
    """What a sweep submission did: the sweep, the tasks handed to the backend, those skipped as already done, and
    those left alone because an earlier submission still has them queued or running."""

    sweep: Sweep
    submitted: list[Task] = field(default_factory=list)
    skipped: list[Task] = field(default_factory=list)
    submission: dict[str, Any] = field(default_factory=dict)
    running: list[Task] = field(default_factory=list)  # still queued or running from an earlier submission


def _image(folder: Path, image: str | None, registry: str | None, needs_registry: bool,
           on_event: Callable | None) -> dict[str, Any]:
    """The sweep's image: built (or given), pushed once to the registry when the backend needs one, by digest."""
    from .. import containers, engine

    if image is None:
        from ..api import build

        result = build(folder, on_event=on_event)
        tag = result.tag
    else:
        tag = image
    info = engine.image_info(tag)
    if info is None:
        raise UsageError(f"--image {image}: no such image here", "build it first, or give an image id or tag")
    facts = {"id": info.id, "tag": tag if not tag.startswith("sha256:") else (info.tags[0] if info.tags else ""),
             "ref": info.id, "repo_digests": engine.repo_digests(info.id),
             "spec_sha256": info.labels.get("io.dsenv.spec.sha256", ""),
             "lock_sha256": info.labels.get("io.dsenv.lock.sha256", "")}
    if needs_registry:
        if not registry:
            raise UsageError("this backend runs on other machines: the image must go to a registry they reach",
                             "give --registry HOST[:PORT]")
        if not facts["tag"]:
            raise UsageError(f"image {info.id[:19]} has no tag to push", "tag it (docker tag) or let dsenv build it")
        try:
            pushed = containers.push(facts["tag"], registry)
        except RegistryError as e:
            raise RegistryUnreachable(f"cannot push the sweep's image to {registry}: {e.message}",
                                      "start the registry or fix --registry; every node must pull from it") from e
        repo = pushed.ref.rsplit(":", 1)[0]
        facts["ref"] = f"{repo}@{pushed.digest}"
        facts["digest"] = pushed.digest
        facts["repo_digests"] = engine.repo_digests(info.id)
    return facts


def stable_tasks(stem: str, params: list[dict[str, Any]], known: dict[str, Task]) -> list[Task]:
    """Tasks of a grid: a parameter set an earlier submission of the sweep knew keeps its index (a queued array
    task still finds its parameters), a new one gets the next unused index."""
    tasks: list[Task] = []
    next_index = max([t.index for t in known.values()], default=-1) + 1
    for p in params:
        name = g.task_name(stem, p)
        if name in known:
            tasks.append(Task(known[name].index, name, p))
        else:
            tasks.append(Task(next_index, name, p))
            next_index += 1
    return tasks


def _write_support(sweep: Sweep) -> None:
    """The runner and the tiny `dsenv` package (dsenv.record) beside the outputs, where every task mounts them."""
    meta = sweep.meta
    (meta / "pylib" / "dsenv").mkdir(parents=True, exist_ok=True)
    for d in ("state", "logs", "tmp"):
        (meta / d).mkdir(parents=True, exist_ok=True)
    here = ir.files("dsenv")
    (meta / "runner.py").write_text(here.joinpath("sweep", "runner.py").read_text(encoding="utf-8"))
    (meta / "pylib" / "dsenv" / "__init__.py").write_text(here.joinpath("record.py").read_text(encoding="utf-8"))


def submit(notebook: str | Path, *, axes: dict[str, list[Any]] | None = None, files: list[str] | None = None,
           on: str = "local", out: str | Path | None = None, jobs: int = 1, gpus: str | None = None,
           cpus: float | None = None, memory: str | None = None, time_limit: str | None = None,
           registry: str | None = None, image: str | None = None, timeout: int = 600, seed: int = 0,
           force: bool = False, on_event: Callable | None = None,
           on_message: Callable[[str], None] | None = None) -> SubmitResult:
    """Plan the grid, build the image once (and push it by digest for remote backends), skip parameter sets already
    done by the same image (unless force), and hand the rest to the backend named by `on`."""
    from ..notebook import find_target, load_notebook
    from ..repro import SEED_STARTUP
    from ..containers import WORKDIR

    path = Path(notebook)
    target = find_target(path)
    if target.single is False and path.is_dir():
        raise UsageError(f"{path} is a folder", "give the notebook to sweep, e.g. notebooks/train.ipynb")
    load_notebook(target.path)
    sets: list[dict[str, Any]] = []
    for f in files or []:
        sets += g.read_grid_file(f)
    params = g.combine(sets or None, axes or {})
    name, where = parse_on(on)
    backend = get_backend(name)
    resources = Resources(gpus=gpus, cpus=cpus, memory=memory, time=time_limit, target=where, jobs=jobs)
    backend.check(resources)
    stem = target.path.stem
    out_path = Path(out) if out else target.path.parent / ".sweeps" / stem  # hidden: never read as notebooks
    out_path = out_path.resolve()
    facts = _image(target.folder, image, registry, backend.needs_registry, on_event)
    sid = st.sweep_id(stem, out_path)
    previous: list[dict[str, Any]] = []
    active: set[str] = set()
    known: dict[str, Task] = {}
    try:
        old = st.load(out_path)
        previous = old.submissions
        known = {t.name: t for t in [*old.retired, *old.tasks]}
        active = {x.name for x in status(out_path)[1] if x.state in ACTIVE}  # never submit a task twice
    except SweepError:
        pass
    tasks = stable_tasks(stem, params, known)
    retired = [t for t in known.values() if t.name not in {x.name for x in tasks}]
    sweep = Sweep(id=sid, notebook=str(target.path.resolve()), folder=str(target.folder.resolve()),
                  rel=target.path.resolve().relative_to(target.folder.resolve()).as_posix(), out=str(out_path),
                  image=facts, tasks=tasks, backend=on,
                  options={"gpus": gpus, "cpus": cpus, "memory": memory, "time": time_limit, "target": where,
                           "jobs": jobs, "registry": registry},
                  submissions=previous, timeout=timeout, seed=seed, created=st.now(), workdir=WORKDIR,
                  dsenv_version=__version__, seed_startup=SEED_STARTUP, retired=retired)
    out_path.mkdir(parents=True, exist_ok=True)
    _write_support(sweep)
    done = [] if force else [t for t in tasks if st.is_done(sweep, t)]
    running = [t for t in tasks if t.name in active and t not in done]
    pending = [t for t in tasks if t not in done and t not in running]
    st.save(sweep)
    result = SubmitResult(sweep, pending, done, running=running)
    if pending:
        result.submission = _hand_over(sweep, backend, pending, resources, on_message)
    return result


def _resources(sweep: Sweep) -> Resources:
    o = sweep.options
    return Resources(gpus=o.get("gpus"), cpus=o.get("cpus"), memory=o.get("memory"), time=o.get("time"),
                     target=o.get("target"), jobs=int(o.get("jobs") or 1))


def _hand_over(sweep: Sweep, backend, tasks: list[Task], resources: Resources,
               on_message: Callable[[str], None] | None) -> dict[str, Any]:
    for t in tasks:  # a fresh run: forget the state an earlier run of the task left
        st.task_state_path(sweep, t).unlink(missing_ok=True)
    record = {"backend": backend.name, "submitted": st.now(), "tasks": {str(t.index): t.name for t in tasks}}
    if not backend.blocking:  # saved before the scheduler can start anything
        sweep.submissions.append(record)
        st.save(sweep)
    try:
        record.update(backend.submit(sweep, tasks, resources, on_message))
    except BaseException:
        if not backend.blocking:
            sweep.submissions.remove(record)
            st.save(sweep)
        raise
    if backend.blocking:
        sweep.submissions.append(record)
    st.save(sweep)
    return record


def status(ref: str | Path) -> tuple[Sweep, list[TaskStatus]]:
    """Each task's state, node, elapsed time and exit code: the scheduler's view merged with what tasks wrote."""
    sweep = st.load(ref)
    name, _ = parse_on(sweep.backend)
    try:
        view = get_backend(name).status(sweep)
    except DsenvError:
        view = {}
    submitted: dict[str, str] = {}
    for sub in sweep.submissions:
        for tname in (sub.get("tasks") or {}).values():
            submitted[tname] = str(sub.get("job_id", ""))
    cancelled = (sweep.meta / "cancelled").exists()
    out = []
    for t in sweep.tasks:
        s = TaskStatus(t.index, t.name, t.parameters, job_id=submitted.get(t.name, ""))
        own = st.read_task_state(sweep, t)
        sched = view.get(t.name) or {}
        prov = st.read_provenance(sweep.output_of(t))
        same_image = prov.get("image_id") == sweep.image.get("id")
        if sweep.output_of(t).is_file():
            s.output = str(sweep.output_of(t))
        if sched.get("state") in ACTIVE:
            s.state = sched["state"]
        elif own.get("state") in ("COMPLETED", "FAILED", "CANCELLED"):
            s.state = own["state"]
        elif sched.get("state"):
            s.state = sched["state"]
        elif own.get("state") == "RUNNING":
            s.state = "CANCELLED" if cancelled else ("RUNNING" if not name == "local" else "LOST")
        elif prov and same_image:
            s.state = "COMPLETED" if prov.get("exit_code") == 0 else "FAILED"
        elif t.name in submitted:
            s.state = "CANCELLED" if cancelled else "UNKNOWN"
        else:
            s.state = "NOT SUBMITTED"
        s.node = sched.get("node") or own.get("node") or (prov.get("host", "") if same_image else "")
        elapsed = sched.get("elapsed")
        s.elapsed = elapsed if elapsed is not None else own.get("elapsed", prov.get("seconds") if same_image else None)
        code = own.get("exit_code", sched.get("exit_code"))
        s.exit_code = code if code is not None else (prov.get("exit_code") if same_image else None)
        s.job_id = sched.get("job_id") or own.get("job_id") or s.job_id
        s.reason = sched.get("reason", "") or own.get("error", "")
        out.append(s)
    return sweep, out


def cancel(ref: str | Path) -> list[str]:
    """Cancel every queued or running task of the sweep (their containers are removed)."""
    sweep = st.load(ref)
    name, _ = parse_on(sweep.backend)
    return get_backend(name).cancel(sweep)


def retry(ref: str | Path, task: str | None = None, on_message: Callable[[str], None] | None = None) -> SubmitResult:
    """Submit again the one task named (whatever its state), or every task that failed, was cancelled or lost."""
    sweep, states = status(ref)
    if task is not None:
        t = sweep.task(task)
        s = next(x for x in states if x.index == t.index)
        if s.state in ACTIVE:
            raise SweepError(f"task {t.index} ({t.name}) is {s.state.lower()}",
                             f"wait for it, or 'dsenv sweep cancel {sweep.id}' first")
        todo = [t]
    else:
        by_index = {t.index: t for t in sweep.tasks}
        todo = [by_index[s.index] for s in states if s.state in RETRYABLE]
    result = SubmitResult(sweep, todo, [])
    if todo:
        name, _ = parse_on(sweep.backend)
        backend = get_backend(name)
        resources = _resources(sweep)
        backend.check(resources)
        (sweep.meta / "cancelled").unlink(missing_ok=True)
        result.submission = _hand_over(sweep, backend, todo, resources, on_message)
    return result


def wait(ref: str | Path, timeout: float = 3600, poll: float = 1.0,
         on_change: Callable[[list[TaskStatus]], None] | None = None) -> list[TaskStatus]:
    """Poll status until no task is queued or running (never blocks inside the scheduler)."""
    import time

    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        _, states = status(ref)
        if on_change:
            on_change(states)
        # UNKNOWN right after submission: the scheduler has not shown the task yet; later: it forgot it
        settling = time.monotonic() - started < 60
        if not any(s.state in ACTIVE or (settling and s.state == "UNKNOWN") for s in states) \
                or time.monotonic() > deadline:
            return states
        time.sleep(poll)


def remove_outputs(ref: str | Path) -> None:
    """Delete a sweep's output folder (outputs, logs, state)."""
    sweep = st.load(ref)
    shutil.rmtree(sweep.out_path, ignore_errors=True)
    (st.index_dir() / sweep.id).unlink(missing_ok=True)
