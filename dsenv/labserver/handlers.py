"""REST handlers of the JupyterLab panel, under /dsenv/api/. JSON in and out; every method needs the server's
authentication; blocking calls of dsenv's public API run in a thread pool, never on the tornado loop; long
operations (build, run, push, repro) are jobs polled at /dsenv/api/jobs/<id>; a DsenvError becomes a 4xx/5xx
JSON body {"error": {"type", "message", "hint"}}.

Routes (paths of notebooks are relative to the server's root folder, as in the contents API):
  GET    version                              dsenv's version
  GET    env?path=NB                          the environment of NB's folder: base, Python, requirements and their
                                              sources, image tag and whether it is up to date
  POST   env/requirements {path, requirement, write?, metadata?}
                                              a requirement checked and merged into metadata.dsenv (written through
                                              the contents manager when write is true)
  POST   build {path}                         job: build NB's environment
  GET    containers[?path=NB]                 dsenv's containers (those of NB's folder first, marked mine)
  POST   containers {path, gpus?, ports?}     job: start JupyterLab in NB's environment
  POST   containers/NAME/stop                 stop a container
  DELETE containers/NAME                      remove a container
  GET    containers/NAME/logs[?tail=N]        its last log lines
  POST   containers/NAME/commit {tag, message?, force?}
  POST   push {tag, registry?}                job: push an image
  GET    gpus                                 GPUs with memory, utilisation and holders ({available: false} if none)
  POST   repro {path, parameters?, timeout?}  job: run NB with papermill in its image; the output notebook's path
  GET    jobs, GET jobs/ID[?since=N]          jobs; one job with its log lines from N on
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from tornado.ioloop import IOLoop

from .. import __version__, api, containers, gpu, repro
from ..errors import (
    ConflictError,
    ContainerNotFound,
    DaemonPermissionDenied,
    DaemonUnavailable,
    DsenvError,
    GpuError,
    ImageTagExists,
    LockError,
    NameInUse,
    NotebookError,
    PortInUse,
    SpecError,
    UsageError,
)
from .jobs import Job, JobManager, error_json


class NotFoundError(UsageError):
    """A notebook, folder or job the request names does not exist."""


NAME = r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)"
STATUS = [  # most specific first
    ((NotFoundError, ContainerNotFound), 404), ((ImageTagExists, NameInUse, PortInUse, ConflictError), 409),
    ((DaemonUnavailable, DaemonPermissionDenied), 503), ((NotebookError, SpecError, LockError), 422),
    (GpuError, 409), (UsageError, 400), (DsenvError, 500),
]


def status_for(error: DsenvError) -> int:
    """The HTTP status a DsenvError is answered with."""
    for kinds, code in STATUS:
        if isinstance(error, kinds):
            return code
    return 500


class DsenvHTTPError(tornado.web.HTTPError):
    """A DsenvError on its way to the client, with the status it maps to."""

    def __init__(self, error: DsenvError) -> None:
        super().__init__(status_for(error), reason=None, log_message=error.one_line().replace("%", "%%"))
        self.error = error


class ServerState:
    """What the handlers share: the root folder, the thread pool for blocking calls and the jobs."""

    def __init__(self, root_dir: str, log: Any = None) -> None:
        self.root = Path(root_dir).expanduser().resolve()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dsenv-api")
        self.jobs = JobManager(log=(log.error if log is not None else None))


class BaseHandler(APIHandler):
    """JSON helpers, path resolution under the root, blocking calls in the pool, errors as JSON."""

    @property
    def state(self) -> ServerState:
        """The extension's shared state."""
        return self.settings["dsenv_state"]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as {"error": {"type", "message", "hint"}} with the status code."""
        self.set_header("Content-Type", "application/json")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, DsenvHTTPError):
            body = error_json(exc.error)
        elif isinstance(exc, tornado.web.HTTPError):
            body = {"type": "HTTPError", "message": exc.log_message or self._reason,
                    "hint": "log in to Jupyter (a token or password)" if status_code == 403 else ""}
        else:
            body = error_json(exc) if exc else {"type": "HTTPError", "message": self._reason, "hint": ""}
        self.finish(json.dumps({"error": body}))

    def body(self) -> dict[str, Any]:
        """The request's JSON object (empty when there is no body)."""
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError as e:
            raise DsenvHTTPError(UsageError(f"the request body is not JSON: {e}", "send a JSON object")) from e
        if not isinstance(data, dict):
            raise DsenvHTTPError(UsageError("the request body is not a JSON object", "send a JSON object"))
        return data

    def reply(self, data: Any, status: int = 200) -> None:
        """Send data as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    async def blocking(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking call in the pool; a DsenvError it raises becomes a JSON error response."""
        try:
            return await IOLoop.current().run_in_executor(self.state.pool, functools.partial(fn, *args, **kwargs))
        except DsenvError as e:
            raise DsenvHTTPError(e) from e

    def resolve(self, rel: str | None, *, notebook: bool = True) -> Path:
        """A path of the request (relative to the root, contents-API style) as an absolute path inside the root."""
        if not rel:
            raise DsenvHTTPError(UsageError("no path given", "pass the notebook's path, relative to Jupyter's root"))
        root = self.state.root
        path = (root / rel.strip("/")).resolve()
        if path != root and root not in path.parents:
            raise DsenvHTTPError(UsageError(f"{rel}: outside Jupyter's root folder", "give a path under the root"))
        if not path.exists():
            raise DsenvHTTPError(NotFoundError(f"{rel}: no such notebook or folder", "check the path"))
        if notebook and path.is_file() and path.suffix != ".ipynb":
            raise DsenvHTTPError(UsageError(f"{rel}: not a notebook (.ipynb)", "give a notebook"))
        return path

    def notebook_file(self, rel: str | None) -> Path:
        """resolve() for requests that need one notebook file, not a folder."""
        path = self.resolve(rel)
        if not path.is_file():
            raise DsenvHTTPError(UsageError(f"{rel}: not a notebook", "give a notebook (.ipynb)"))
        return path

    def relative(self, path: str | Path | None) -> str | None:
        """A host path as a root-relative path (None when it is not under the root)."""
        if not path:
            return None
        try:
            return Path(path).resolve().relative_to(self.state.root).as_posix()
        except ValueError:
            return None

    def environment_of(self, path: Path) -> Path:
        """The environment a notebook belongs to: its folder (as `%dsenv` and `dsenv build FOLDER` use)."""
        return path.parent if path.is_file() else path

    def started(self, job: Job) -> None:
        """Answer 202 with the new job and where to poll it."""
        url = url_path_join(self.base_url, "dsenv", "api", "jobs", job.id)
        self.set_header("Location", url)
        self.reply({**job.to_json(), "poll": url}, 202)


class VersionHandler(BaseHandler):
    """GET: dsenv's version (a cheap check that the extension is loaded)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """dsenv's version."""
        self.reply({"version": __version__})


def plan_json(handler: BaseHandler, notebook: Path, p: api.Plan) -> dict[str, Any]:
    """A plan as the panel shows it."""
    return {
        "notebook": handler.relative(notebook), "folder": handler.relative(p.target.folder) or "",
        "name": p.target.name, "notebooks": [handler.relative(n) for n in p.target.notebooks],
        "python": p.spec.python, "python_source": p.spec.python_source, "base": p.base,
        "base_source": p.spec.base_source, "jupyter": p.spec.jupyter,
        "requirements": [{"name": r.name, "requirement": r.requirement, "sources": list(r.sources),
                          "explicit": r.explicit} for r in p.spec.requirements],
        "apt": [{"name": a.name, "sources": list(a.sources)} for a in p.spec.apt],
        "tag": p.build.tag, "up_to_date": p.image_exists, "lock_state": p.lock_state, "notes": list(p.notes),
    }


class EnvHandler(BaseHandler):
    """GET ?path=NB: the environment of the notebook's folder."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """The plan: requirements with sources, tag, up to date or not."""
        notebook = self.resolve(self.get_query_argument("path", None))
        p = await self.blocking(api.plan, self.environment_of(notebook))
        self.reply(plan_json(self, notebook, p))


def merge_requirement(metadata: Any, text: str) -> tuple[str, dict[str, Any]]:
    """Check a requirement and merge it into a metadata.dsenv mapping (replacing one of the same package);
    returns (the requirement as written, the new mapping)."""
    text = (text or "").strip()
    try:
        req = Requirement(text)
    except InvalidRequirement as e:
        raise UsageError(f"'{text}' is not a requirement: {e}", "write NAME or NAME==VERSION, e.g. scipy>=1.11")
    meta = dict(metadata) if isinstance(metadata, dict) else {}
    existing = meta.get("requirements", [])
    if not isinstance(existing, list):
        raise SpecError("metadata.dsenv", "requirements is not a list", "make metadata.dsenv.requirements a list")
    keep = []
    for item in existing:
        try:
            same = canonicalize_name(Requirement(str(item)).name) == canonicalize_name(req.name)
        except InvalidRequirement:
            same = False
        if not same:
            keep.append(item)
    meta["requirements"] = [*keep, str(req)]
    return str(req), meta


class RequirementsHandler(BaseHandler):
    """POST {path, requirement, write?, metadata?}: add a requirement to the notebook's metadata.dsenv."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """Check and merge; with write=true, save through the contents manager (the contents API)."""
        data = self.body()
        notebook = self.notebook_file(data.get("path"))
        rel = self.relative(notebook) or ""
        if not data.get("write"):
            try:
                req, meta = merge_requirement(data.get("metadata") or {}, str(data.get("requirement", "")))
            except DsenvError as e:
                raise DsenvHTTPError(e) from e
            self.reply({"path": rel, "requirement": req, "dsenv": meta, "written": False})
            return
        cm = self.contents_manager
        model = await ensure_async(cm.get(rel, content=True, type="notebook"))
        nb = model["content"]
        try:
            req, meta = merge_requirement(nb.metadata.get("dsenv") or {}, str(data.get("requirement", "")))
        except DsenvError as e:
            raise DsenvHTTPError(e) from e
        nb.metadata["dsenv"] = meta
        saved = await ensure_async(cm.save({"type": "notebook", "format": "json", "content": nb}, rel))
        self.reply({"path": rel, "requirement": req, "dsenv": meta, "written": True,
                    "last_modified": saved.get("last_modified")})


class BuildHandler(BaseHandler):
    """POST {path}: a build job for the notebook's environment."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """Start the build; poll the job for progress."""
        notebook = self.resolve(self.body().get("path"))
        folder = self.environment_of(notebook)

        def work(job: Job) -> dict[str, Any]:
            job.progress(0, 0, "planning")
            result = api.build(folder, on_event=job.on_build_event)
            job.progress(job.total or 1, job.total or 1, "built" if result.built else "up to date")
            return {"tag": result.tag, "image_id": result.image_id, "built": result.built,
                    "seconds": round(result.seconds, 3), "delta": result.delta}

        self.started(self.state.jobs.start("build", self.relative(notebook) or "", work))


def container_json(handler: BaseHandler, c: containers.EnvContainer, mine_folder: str | None) -> dict[str, Any]:
    """A container as the panel lists it."""
    return {"name": c.name, "env": c.env, "status": c.status, "image": c.image, "url": c.url,
            "ports": {ctr: host for ctr, (_, host) in c.ports.items()}, "gpus": [g for g in c.gpus.split(",") if g],
            "created": c.created, "folder": handler.relative(c.notebook) if c.notebook else None,
            "mine": bool(mine_folder) and c.notebook == mine_folder}


class ContainersHandler(BaseHandler):
    """GET [?path=NB]: dsenv's containers; POST {path, gpus?, ports?}: a job that starts JupyterLab in NB's env."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Every dsenv container, those of the notebook's folder first."""
        rel = self.get_query_argument("path", None)
        folder = str(self.environment_of(self.resolve(rel))) if rel else None
        found = await self.blocking(containers.ps)
        items = [container_json(self, c, folder) for c in found]
        items.sort(key=lambda c: not c["mine"])
        self.reply({"containers": items})

    @tornado.web.authenticated
    async def post(self) -> None:
        """Start the environment's JupyterLab (building first if needed) as a job."""
        data = self.body()
        notebook = self.resolve(data.get("path"))
        folder = self.environment_of(notebook)
        gpus = str(data.get("gpus") or "").strip() or None
        ports = data.get("ports") or []
        if isinstance(ports, str):
            ports = [p for p in re.split(r"[\s,]+", ports) if p]
        try:
            if gpus:
                containers.check_gpu_request(gpus)
            for p in ports:
                containers.parse_port(str(p))
        except DsenvError as e:
            raise DsenvHTTPError(e) from e
        options = containers.RunOptions(gpus=gpus, ports=[str(p) for p in ports])

        def work(job: Job) -> dict[str, Any]:
            job.progress(0, 0, "starting")
            result = containers.run(folder, options, on_event=job.on_build_event)
            job.log(f"started {result.name}: {result.url}")
            return {"name": result.name, "id": result.id, "image": result.image, "url": result.url,
                    "ports": {str(k): v for k, v in result.ports.items()}, "warnings": result.warnings}

        self.started(self.state.jobs.start("run", self.relative(notebook) or "", work))


class ContainerHandler(BaseHandler):
    """DELETE containers/NAME: remove the container."""

    @tornado.web.authenticated
    async def delete(self, name: str) -> None:
        """Remove (stopping first)."""
        await self.blocking(containers.rm, name)
        self.reply({"name": name, "removed": True})


class StopHandler(BaseHandler):
    """POST containers/NAME/stop."""

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Stop the container."""
        await self.blocking(containers.stop, name)
        self.reply({"name": name, "stopped": True})


class LogsHandler(BaseHandler):
    """GET containers/NAME/logs[?tail=N]."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """The container's last log lines as text."""
        tail = self.get_query_argument("tail", "200")
        if not tail.isdigit():
            raise DsenvHTTPError(UsageError(f"tail={tail}: not a number", "give tail=N"))
        text = await self.blocking(lambda: "".join(containers.logs(name, tail=int(tail))))
        self.reply({"name": name, "text": text})


class CommitHandler(BaseHandler):
    """POST containers/NAME/commit {tag, message?, force?}."""

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Snapshot the container as repo:tag with provenance labels."""
        data = self.body()
        tag = str(data.get("tag") or "").strip()
        if not tag:
            raise DsenvHTTPError(UsageError("no tag to commit as", "give repo:tag, e.g. team/exp1:v2"))
        done = await self.blocking(containers.commit, name, tag, str(data.get("message") or ""),
                                   force=bool(data.get("force")))
        self.reply({"name": name, "tag": done.tag, "id": done.id,
                    "labels": {k: v for k, v in done.labels.items() if k != "io.dsenv.pip-freeze"}})


class PushHandler(BaseHandler):
    """POST {tag, registry?}: a push job."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """Push the image; the job's log holds the layers' progress, its result the digest."""
        data = self.body()
        tag = str(data.get("tag") or "").strip()
        registry = str(data.get("registry") or "").strip() or None
        if not tag:
            raise DsenvHTTPError(UsageError("no tag to push", "give repo:tag (commit a container first)"))

        def work(job: Job) -> dict[str, Any]:
            seen: dict[str, str] = {}

            def progress(event: dict) -> None:
                key, status = str(event.get("id", "")), str(event.get("status", ""))
                if status and seen.get(key) != status:
                    seen[key] = status
                    job.log(f"{key} {status}".strip())
                    done = sum(1 for s in seen.values() if s in ("Pushed", "Layer already exists"))
                    job.progress(done, max(len(seen) - ("" in seen), 1), status)

            pushed = containers.push(tag, registry, progress)
            return {"ref": pushed.ref, "digest": pushed.digest}

        self.started(self.state.jobs.start("push", tag, work))


def gpus_json() -> dict[str, Any]:
    """The host's GPUs with who holds each; {available: false, reason} where there is none."""
    try:
        host = gpu.discover()
    except GpuError as e:
        return {"available": False, "reason": e.one_line(), "devices": []}
    if not host.devices:
        return {"available": False, "reason": "NVML lists no GPU", "devices": []}
    try:
        dsenv_holders, ids = containers.dsenv_gpu_holders()
    except DsenvError:
        dsenv_holders, ids = {}, set()
    held = gpu.holders_of(host.devices, dsenv_holders, ids)
    data = host.to_json()
    for d in data["devices"]:
        d["holders"] = held.get(d["uuid"], [])
        d["processes"] = [dict(p) for p in d.get("processes", [])]
    return {"available": True, **data}


class GpusHandler(BaseHandler):
    """GET: the GPUs, their memory and utilisation and who holds them."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """NVML's view of the host's GPUs."""
        self.reply(await self.blocking(gpus_json))


class ReproHandler(BaseHandler):
    """POST {path, parameters?, timeout?}: a job running the notebook with papermill in its image."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """Start the run; the job's result names the output notebook (relative to the root)."""
        data = self.body()
        notebook = self.notebook_file(data.get("path"))
        params = data.get("parameters") or {}
        if not isinstance(params, dict):
            raise DsenvHTTPError(UsageError("parameters must be an object of name: value", 'e.g. {"alpha": 0.1}'))
        pairs = [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()]
        timeout = int(data.get("timeout") or 600)

        def work(job: Job) -> dict[str, Any]:
            job.progress(0, 0, "building if needed")
            try:
                done = repro.repro(notebook, parameters=pairs, timeout=timeout, on_output=job.log,
                                   on_event=job.on_build_event)
            except DsenvError as e:
                output = getattr(e, "output", None)
                if output and self.relative(output):
                    e.output = self.relative(output)  # type: ignore[attr-defined]
                raise
            return {"output": self.relative(done.output) or str(done.output), "seconds": round(done.seconds, 3),
                    "provenance": done.provenance}

        self.started(self.state.jobs.start("repro", self.relative(notebook) or "", work))


class JobsHandler(BaseHandler):
    """GET jobs: the jobs kept (newest first, without their logs)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Every job's state."""
        items = []
        for job in self.state.jobs.all():
            data = job.to_json()
            data["lines"] = []
            items.append(data)
        self.reply({"jobs": items})


class JobHandler(BaseHandler):
    """GET jobs/ID[?since=N]: one job, with its log lines from N on."""

    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        """The job's state, progress, new log lines, result or error."""
        job = self.state.jobs.get(job_id)
        if job is None:
            raise DsenvHTTPError(NotFoundError(f"no job {job_id}", "jobs are kept while the server runs"))
        since = self.get_query_argument("since", "0")
        self.reply(job.to_json(int(since) if since.isdigit() else 0))


def setup_handlers(web_app: Any, root_dir: str, log: Any = None) -> None:
    """Add the /dsenv/api routes to a Jupyter server's tornado application."""
    web_app.settings["dsenv_state"] = ServerState(root_dir, log)
    base = url_path_join(web_app.settings["base_url"], "dsenv", "api")
    routes = [
        ("version", VersionHandler), ("env", EnvHandler), ("env/requirements", RequirementsHandler),
        ("build", BuildHandler), ("containers", ContainersHandler), (f"containers/{NAME}", ContainerHandler),
        (f"containers/{NAME}/stop", StopHandler), (f"containers/{NAME}/logs", LogsHandler),
        (f"containers/{NAME}/commit", CommitHandler), ("push", PushHandler), ("gpus", GpusHandler),
        ("repro", ReproHandler), ("jobs", JobsHandler), (r"jobs/(?P<job_id>[0-9a-f]+)", JobHandler),
    ]
    web_app.add_handlers(".*$", [(url_path_join(base, path) + "/?", handler) for path, handler in routes])

