"""Fixtures for the server extension's tests: a real Jupyter server (pytest-jupyter) with dsenv's extension, its
root holding a uniquely named copy of notebooks/, and cleanup of every container and image the tests made."""
from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import pytest

pytest.importorskip("jupyter_server", reason="the server extension's tests need jupyter_server (pip install -e '.[test]')")
from pytest_jupyter.jupyter_server import *  # the jp_* fixtures: jp_fetch, jp_serverapp, jp_root_dir, ...


REPO = Path(__file__).resolve().parents[2]
SESSION = uuid.uuid4().hex[:6]


from ..integration.conftest import _PROBLEM as DAEMON_PROBLEM  # noqa: E402

requires_docker = pytest.mark.skipif(DAEMON_PROBLEM is not None, reason=f"requires_docker: {DAEMON_PROBLEM}")


@pytest.fixture
def jp_server_config():
    """The server with dsenv's extension enabled (as the wheel's jupyter_server_config.d file does)."""
    return {"ServerApp": {"jpserver_extensions": {"dsenv.labserver": True}}}


@pytest.fixture(scope="session")
def made_names():
    """Environment names made by this session; their images are removed at the end."""
    names: set[str] = set()
    yield names
    if DAEMON_PROBLEM is None and names:
        from dsenv import api, containers

        for c in containers.ps():
            if c.env in names:
                containers.rm(c.name)
        for info in api.images():
            if info.labels.get("io.dsenv.name") in names:
                for tag in info.tags:
                    _remove_image(tag)


def _remove_image(tag: str) -> None:
    import subprocess

    subprocess.run(["docker", "image", "rm", "-f", tag], check=False, capture_output=True, timeout=120)


@pytest.fixture
def example(jp_root_dir, made_names) -> str:
    """A copy of notebooks/ in the server's root under a unique folder name; the notebook's root-relative path."""
    name = f"lab-{SESSION}-{uuid.uuid4().hex[:4]}"
    shutil.copytree(REPO / "notebooks", jp_root_dir / name)
    made_names.add(name)
    return f"{name}/sine_fit.ipynb"


@pytest.fixture
def api_call(jp_fetch):
    """fetch('env', params=..., body=...) against /dsenv/api/...: (status, JSON), errors included."""
    from tornado.httpclient import HTTPClientError

    async def call(path: str, *, method: str = "GET", body: dict | None = None, params: dict | None = None,
                   headers: dict | None = None):
        kwargs = {"method": method, "params": params or {}}
        if headers is not None:
            kwargs["headers"] = headers
        if body is not None:
            kwargs["body"] = json.dumps(body)
        elif method in ("POST", "PUT"):
            kwargs["body"] = ""
        try:
            response = await jp_fetch("dsenv", "api", *path.split("/"), **kwargs)
        except HTTPClientError as e:
            return e.code, json.loads(e.response.body) if e.response is not None and e.response.body else {}
        return response.code, json.loads(response.body)

    return call


@pytest.fixture
def poll(api_call):
    """Poll a job until it ends; returns its last JSON and every log line and progress (step, total) seen."""

    async def wait(job_id: str, timeout: float = 600):
        lines, progress, since = [], [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            code, job = await api_call(f"jobs/{job_id}", params={"since": since})
            assert code == 200, job
            lines += job["lines"]
            since = job["next"]
            progress.append((job["step"], job["total"]))
            if job["state"] != "running":
                return job, lines, progress
            assert loop.time() < deadline, f"job {job_id} still running after {timeout} s"
            await asyncio.sleep(0.3)

    return wait
