"""The server extension's REST API against a real Jupyter server (pytest-jupyter) and the real Docker daemon."""
from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import nbformat
import pytest

from .conftest import requires_docker

ROUTES = [("GET", "version"), ("GET", "env"), ("POST", "env/requirements"), ("POST", "build"),
          ("GET", "containers"), ("POST", "containers"), ("POST", "containers/x/stop"), ("DELETE", "containers/x"),
          ("GET", "containers/x/logs"), ("POST", "containers/x/commit"), ("POST", "push"), ("GET", "gpus"),
          ("POST", "repro"), ("GET", "jobs"), ("GET", "jobs/abc")]


@pytest.mark.parametrize("method,path", ROUTES)
async def test_every_route_needs_authentication(api_call, method, path):
    code, body = await api_call(path, method=method, headers={"Authorization": ""}, body={"path": "x.ipynb"}
                                if method == "POST" else None)
    assert code == 403
    assert body["error"]["message"] and "hint" in body["error"]


async def test_version_and_extension_loaded(api_call, jp_serverapp):
    from dsenv import __version__

    code, body = await api_call("version")
    assert (code, body) == (200, {"version": __version__})
    assert "dsenv.labserver" in jp_serverapp.extension_manager.extensions


async def test_path_errors_are_json(api_call, jp_root_dir):
    (jp_root_dir / "notes.txt").write_text("x")
    cases = [({}, 400, "no path given"), ({"path": "missing.ipynb"}, 404, "no such notebook"),
             ({"path": "../../etc/passwd"}, 400, "outside Jupyter's root"), ({"path": "notes.txt"}, 400, "not a notebook")]
    for params, status, text in cases:
        code, body = await api_call("env", params=params)
        assert code == status, body
        assert text in body["error"]["message"] and body["error"]["hint"]
        assert body["error"]["type"] in ("UsageError", "NotFoundError")


async def test_bad_bodies_and_unknown_jobs(api_call, example):
    code, body = await api_call("build", method="POST", body=None)
    assert code == 400 and body["error"]["message"] == "no path given"
    code, body = await api_call("push", method="POST", body={})
    assert code == 400 and "no tag" in body["error"]["message"]
    code, body = await api_call("containers", method="POST", body={"path": example, "gpus": "lots"})
    assert code == 400 and "--gpus lots" in body["error"]["message"]
    code, body = await api_call("containers", method="POST", body={"path": example, "ports": ["99999"]})
    assert code == 400 and "out of range" in body["error"]["message"]
    code, body = await api_call("jobs/0123abcd")
    assert code == 404 and body["error"]["type"] == "NotFoundError"
    code, body = await api_call("containers/x/logs", params={"tail": "lots"})
    assert code == 400


async def test_bad_json_body(jp_fetch):
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("dsenv", "api", "build", method="POST", body="{not json")
    assert e.value.code == 400
    assert "not JSON" in json.loads(e.value.response.body)["error"]["message"]


async def test_add_requirement_checks_and_merges_without_writing(api_call, example, jp_root_dir):
    before = (jp_root_dir / example).read_text()
    code, body = await api_call("env/requirements", method="POST",
                                body={"path": example, "requirement": "scipy >= 1.11",
                                      "metadata": {"python": "3.11", "requirements": ["SciPy", "rich"]}})
    assert code == 200, body
    assert body["requirement"] == "scipy>=1.11" and not body["written"]
    assert body["dsenv"] == {"python": "3.11", "requirements": ["rich", "scipy>=1.11"]}
    assert (jp_root_dir / example).read_text() == before
    code, body = await api_call("env/requirements", method="POST", body={"path": example, "requirement": "numpy >>> 2"})
    assert code == 400 and "is not a requirement" in body["error"]["message"] and body["error"]["hint"]


async def test_gpus_without_gpu_and_with_injected_devices(api_call, monkeypatch, tmp_path):
    monkeypatch.delenv("DSENV_GPU_DEVICES", raising=False)
    code, body = await api_call("gpus")
    assert code == 200
    if not body["available"]:
        assert body["reason"] and body["devices"] == []
    devices = {"driver": "580.1", "cuda_driver": "13.0", "devices": [
        {"index": 0, "uuid": "GPU-aaaa", "name": "Test GPU", "memory_total": 80 * 2**30, "memory_used": 2**30,
         "utilization": 7, "processes": [{"pid": 4242, "used_memory": 2**30}]}]}
    (tmp_path / "gpus.json").write_text(json.dumps(devices))
    monkeypatch.setenv("DSENV_GPU_DEVICES", str(tmp_path / "gpus.json"))
    code, body = await api_call("gpus")
    assert code == 200 and body["available"] and body["driver"] == "580.1"
    (d,) = body["devices"]
    assert d["uuid"] == "GPU-aaaa" and d["memory_free"] == 79 * 2**30 and d["utilization"] == 7
    assert d["holders"] == ["host pid 4242"]


@requires_docker
async def test_environment_of_a_notebook(api_call, example):
    code, env = await api_call("env", params={"path": example})
    assert code == 200, env
    folder = example.split("/")[0]
    assert env["folder"] == folder and env["notebook"] == example and env["python"] == "3.11"
    sources = {r["name"]: r["sources"] for r in env["requirements"]}
    assert {"numpy", "pandas", "matplotlib"} <= set(sources)
    assert "import numpy (sine_fit.ipynb)" in sources["numpy"]
    assert env["tag"].startswith(f"dsenv/{folder}:") and env["up_to_date"] is False
    assert env["base"]


@requires_docker
async def test_add_requirement_writes_metadata_through_the_contents_manager(api_call, example, jp_root_dir):
    code, body = await api_call("env/requirements", method="POST",
                                body={"path": example, "requirement": "numpy>=1.20", "write": True})
    assert code == 200 and body["written"], body
    nb = nbformat.read(jp_root_dir / example, as_version=4)
    assert nb.metadata["dsenv"]["requirements"] == ["numpy>=1.20"]
    assert len(nb.cells) > 3 and nb.metadata.get("kernelspec")  # nothing else of the notebook lost
    code, env = await api_call("env", params={"path": example})
    assert code == 200, env
    numpy = next(r for r in env["requirements"] if r["name"] == "numpy")
    assert numpy["requirement"] == "numpy>=1.20" and numpy["explicit"]
    assert numpy["sources"][0] == "metadata.dsenv (sine_fit.ipynb)"


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


@requires_docker
async def test_build_run_containers_logs_commit_push_stop_repro(api_call, poll, example, jp_root_dir, made_names):
    from dsenv import api, containers

    # build as a job, progress reported to completion
    code, job = await api_call("build", method="POST", body={"path": example})
    assert code == 202 and job["state"] == "running" and job["poll"].endswith(f"/dsenv/api/jobs/{job['id']}")
    job, lines, progress = await poll(job["id"])
    assert job["state"] == "done", job["error"]
    assert job["result"]["built"] is True and job["result"]["tag"].startswith("dsenv/")
    steps = [s for s, t in progress if t]
    assert steps == sorted(steps) and progress[-1][0] == progress[-1][1] > 1  # the builder's own step count
    assert job["status"] == "built"
    assert lines, "the build's log lines"
    code, env = await api_call("env", params={"path": example})
    assert env["up_to_date"] is True and env["tag"] == job["result"]["tag"]
    code, again = await api_call("build", method="POST", body={"path": example})
    again, _, _ = await poll(again["id"])
    assert again["result"]["built"] is False and again["status"] == "up to date"

    # run: JupyterLab in the environment, listed with a link that answers
    code, run = await api_call("containers", method="POST", body={"path": example})
    assert code == 202
    run, _, _ = await poll(run["id"], timeout=180)
    assert run["state"] == "done", run["error"]
    name, url = run["result"]["name"], run["result"]["url"]
    try:
        assert url.startswith("http://127.0.0.1:") and "token=" in url
        assert await asyncio.get_running_loop().run_in_executor(None, _get, url) == 200
        code, listed = await api_call("containers", params={"path": example})
        mine = [c for c in listed["containers"] if c["name"] == name]
        assert mine and mine[0]["mine"] and mine[0]["url"] == url and mine[0]["status"] == "running"
        assert listed["containers"][0]["mine"]
        assert mine[0]["folder"] == example.split("/")[0]
        code, logs = await api_call(f"containers/{name}/logs", params={"tail": "50"})
        assert code == 200 and "Jupyter" in logs["text"]

        # commit, then the same tag again is a conflict
        tag = f"{example.split('/')[0]}-commit:v1"
        made_names.add(tag)
        code, done = await api_call(f"containers/{name}/commit", method="POST", body={"tag": tag, "message": "snap"})
        assert code == 200, done
        assert done["tag"] == tag and done["labels"]["io.dsenv.commit.message"] == "snap"
        try:
            code, clash = await api_call(f"containers/{name}/commit", method="POST", body={"tag": tag})
            assert code == 409 and clash["error"]["type"] == "ImageTagExists" and clash["error"]["hint"]
            await _push(api_call, poll, tag)
        finally:
            _rmi(tag)

        code, stopped = await api_call(f"containers/{name}/stop", method="POST")
        assert (code, stopped) == (200, {"name": name, "stopped": True})
        code, listed = await api_call("containers", params={"path": example})
        assert next(c for c in listed["containers"] if c["name"] == name)["status"] != "running"
    finally:
        code, _ = await api_call(f"containers/{name}", method="DELETE")
    assert code == 200
    code, gone = await api_call(f"containers/{name}/stop", method="POST")
    assert code == 404 and gone["error"]["type"] == "ContainerNotFound"

    # repro: papermill in the image, the output notebook under the root
    code, rep = await api_call("repro", method="POST", body={"path": example, "parameters": {"n_points": 50}})
    assert code == 202
    rep, lines, _ = await poll(rep["id"], timeout=300)
    assert rep["state"] == "done", rep["error"]
    out = rep["result"]["output"]
    assert out == example.replace(".ipynb", ".out.ipynb")
    executed = nbformat.read(jp_root_dir / out, as_version=4)
    assert executed.metadata["dsenv"]["provenance"]["parameters"] == {"n_points": 50}
    assert containers.ps() is not None and api.images()


async def _push(api_call, poll, tag: str) -> None:
    import socket

    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 5000)) != 0:
            return  # no local registry here (.ci/setup starts one on 127.0.0.1:5000)
    code, job = await api_call("push", method="POST", body={"tag": tag, "registry": "127.0.0.1:5000"})
    assert code == 202
    job, lines, _ = await poll(job["id"], timeout=300)
    try:
        assert job["state"] == "done", job["error"]
        assert job["result"]["digest"].startswith("sha256:") and lines
    finally:
        _rmi(f"127.0.0.1:5000/{tag}")


@requires_docker
async def test_failed_jobs_report_the_error(api_call, poll, example):
    code, job = await api_call("push", method="POST", body={"tag": "dsenv-no-such-image:v0"})
    job, _, _ = await poll(job["id"])
    assert job["state"] == "error" and job["error"]["type"] == "UsageError"
    assert "no local image" in job["error"]["message"] and job["error"]["hint"]
    code, jobs = await api_call("jobs")
    assert code == 200 and jobs["jobs"][0]["id"] == job["id"]


def _rmi(tag: str) -> None:
    import subprocess

    subprocess.run(["docker", "image", "rm", "-f", tag], check=False, capture_output=True, timeout=120)


def test_import_dsenv_needs_no_jupyter_server():
    import subprocess
    import sys

    code = ("import sys, dsenv, dsenv.labserver; dsenv.labserver._jupyter_server_extension_points(); "
            "assert 'jupyter_server' not in sys.modules and 'tornado' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


async def test_cross_origin_and_forged_cookie_writes_are_refused(api_call, jp_serverapp, jp_http_port, jp_base_url,
                                                              example):
    """jupyter_server's origin and XSRF rules hold for dsenv's handlers. A browser session (the login cookie) is
    what a hostile page could ride on: its writes need the XSRF token and the server's own origin. (A request with
    the token itself proves it knows the secret, and jupyter_server lets it through from any origin.)"""
    from http.cookies import SimpleCookie
    from urllib.parse import urlencode

    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    client = AsyncHTTPClient()
    base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    cookies: dict[str, str] = {}

    def keep(response) -> None:
        for header in response.headers.get_list("Set-Cookie"):
            for name, morsel in SimpleCookie(header).items():
                cookies[name] = morsel.value

    async def fetch(url: str, **kwargs):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), **kwargs.pop("headers", {})}
        try:
            response = await client.fetch(url, headers=headers, follow_redirects=False, raise_error=True, **kwargs)
        except HTTPClientError as e:
            response = e.response
        keep(response)
        return response

    keep(await fetch(base + "login"))
    token = jp_serverapp.identity_provider.token
    login = await fetch(base + "login", method="POST", body=urlencode({"_xsrf": cookies["_xsrf"], "password": token}))
    assert login.code == 302 and any(k.startswith("username-") for k in cookies), login.code
    body = json.dumps({"path": example})
    ok = await fetch(base + "dsenv/api/jobs", headers={"X-XSRFToken": cookies["_xsrf"]})
    assert ok.code == 200  # the cookie session works for reads
    no_xsrf = await fetch(base + "dsenv/api/containers", method="POST", body=body)
    assert no_xsrf.code == 403
    cross = await fetch(base + "dsenv/api/containers", method="POST", body=body,
                        headers={"X-XSRFToken": cookies["_xsrf"], "Origin": "http://evil.example"})
    assert cross.code in (403, 404)  # jupyter_server answers a blocked cross-origin API request with 404
    code, jobs = await api_call("jobs")
    assert code == 200 and not jobs.get("jobs"), jobs
