"""Long operations of the REST API (build, run, push, repro) as jobs: started in a worker thread, given an id, and
polled for their progress, log lines and result. Plain Python (no Jupyter import), so it can be tested alone."""
from __future__ import annotations

import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import DsenvError

MAX_LOG_LINES = 5000
STEP_LINE = re.compile(r"^(?:Step \d+/\d+ : |#\d+ \[[^\]]*\d+/\d+\] )(.*)")  # classic builder; BuildKit
KEEP_FINISHED = 100


def error_json(error: BaseException) -> dict[str, Any]:
    """An exception as the API reports it: its type, one-line message and hint (and the facts a DsenvError
    carries where the front-end can use them)."""
    if isinstance(error, DsenvError):
        out: dict[str, Any] = {"type": type(error).__name__, "message": error.message, "hint": error.hint}
        for key in ("output", "cell_index", "ename", "evalue", "step", "package", "port", "name"):
            value = getattr(error, key, None)
            if isinstance(value, (str, int)) and value != "":
                out[key] = value
        return out
    return {"type": type(error).__name__, "message": str(error) or type(error).__name__,
            "hint": "this is a bug in dsenv's JupyterLab server extension; the server log has the traceback"}


@dataclass
class Job:
    """One long operation: its kind, state (running, done, error), progress, log lines, result or error."""

    id: str
    kind: str
    target: str
    state: str = "running"
    step: int = 0
    total: int = 0
    status: str = ""
    lines: list[str] = field(default_factory=list)
    dropped: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def log(self, text: str) -> None:
        """Append output (split into lines; the oldest are dropped beyond MAX_LOG_LINES)."""
        new = [line for line in text.replace("\r", "\n").split("\n") if line.strip()]
        if not new:
            return
        with self.lock:
            self.lines.extend(new)
            extra = len(self.lines) - MAX_LOG_LINES
            if extra > 0:
                del self.lines[:extra]
                self.dropped += extra

    def progress(self, step: int, total: int, status: str | None = None) -> None:
        """Move the progress bar (step of total) and, optionally, set the one-line status."""
        with self.lock:
            if total:
                self.step, self.total = min(step, total), total
            if status is not None:
                self.status = status

    def on_build_event(self, event: Any) -> None:
        """An on_event callback for dsenv.api.build: steps move the progress, lines go to the log."""
        line = getattr(event, "line", "") or ""
        status = None
        step = STEP_LINE.match(line)
        if step:
            status = step.group(1).strip()[:120]
        self.progress(getattr(event, "step", 0) or 0, getattr(event, "total", 0) or 0, status)
        if line:
            self.log(line)

    def to_json(self, since: int = 0) -> dict[str, Any]:
        """The job as the API returns it; `lines` holds the log lines from index `since` on (`next` is the index
        to ask from next time)."""
        with self.lock:
            start = max(since - self.dropped, 0)
            return {
                "id": self.id, "kind": self.kind, "target": self.target, "state": self.state,
                "step": self.step, "total": self.total, "status": self.status,
                "lines": self.lines[start:], "next": self.dropped + len(self.lines),
                "result": self.result, "error": self.error, "started": self.started, "ended": self.ended,
                "seconds": round((self.ended or time.time()) - self.started, 3),
            }


class JobManager:
    """Starts jobs in a small thread pool and keeps them (the finished ones up to KEEP_FINISHED) for polling."""

    def __init__(self, workers: int = 4, log: Callable[[str], None] | None = None) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dsenv-job")
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._log = log

    def start(self, kind: str, target: str, work: Callable[[Job], dict[str, Any] | None]) -> Job:
        """Run work(job) in the pool; its return value becomes the job's result, a raised error its error."""
        job = Job(uuid.uuid4().hex[:12], kind, target)
        with self._lock:
            self.jobs[job.id] = job
            self._forget_old()
        self.pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Job], dict[str, Any] | None]) -> None:
        try:
            result = work(job)
            with job.lock:
                job.result = result or {}
                job.state = "done"
                if job.total:
                    job.step = job.total
        except BaseException as e:  # noqa: BLE001 - a job reports every failure to its poller
            if not isinstance(e, DsenvError) and self._log:
                self._log("".join(traceback.format_exception(e)))
            with job.lock:
                job.error = error_json(e)
                job.state = "error"
        finally:
            job.ended = time.time()

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.state != "running"]
        for job in sorted(finished, key=lambda j: j.started)[:max(len(finished) - KEEP_FINISHED, 0)]:
            self.jobs.pop(job.id, None)

    def get(self, job_id: str) -> Job | None:
        """The job with that id, or None."""
        with self._lock:
            return self.jobs.get(job_id)

    def all(self) -> list[Job]:
        """Every job kept, newest first."""
        with self._lock:
            return sorted(self.jobs.values(), key=lambda j: j.started, reverse=True)

    def shutdown(self) -> None:
        """Stop taking jobs (running ones finish in their threads)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
