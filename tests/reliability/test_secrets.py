"""Secrets and exposure: run-time values stay out of committed images, passwords out of every output, and nothing
dsenv starts listens beyond 127.0.0.1 or without its token."""
from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import docker

from dsenv import containers

from .conftest import dsenv

REPO = Path(__file__).resolve().parents[2]
SECRET = "sk-live-" + uuid.uuid4().hex


def _committed_env(ref: str) -> dict[str, str]:
    config = docker.from_env().api.inspect_image(ref)["Config"]
    return dict(item.split("=", 1) for item in config.get("Env") or [])


def test_run_time_env_and_token_stay_out_of_committed_images_unless_kept(example, cleanup_containers):
    folder, built = example
    started = containers.run(folder, containers.RunOptions(env={"API_KEY": SECRET}))
    cleanup_containers.append(started.name)
    token = started.url.split("token=")[1]
    ref, kept = f"rel-secret-{uuid.uuid4().hex[:6]}:v1", f"rel-secret-kept-{uuid.uuid4().hex[:6]}:v1"
    try:
        out = dsenv("commit", started.name, ref, "-m", "no secrets")
        assert out.returncode == 0, out.stderr
        env = _committed_env(ref)
        assert env.get("API_KEY", "") == "" and env.get("JUPYTER_TOKEN", "") == ""
        assert "PATH" in env and env["PATH"] == _committed_env(built.tag)["PATH"]
        history = json.dumps(docker.from_env().api.history(ref)) + json.dumps(docker.from_env().api.inspect_image(ref))
        assert SECRET not in history and token not in history
        out = dsenv("commit", started.name, kept, "--keep-env")
        assert out.returncode == 0, out.stderr
        assert _committed_env(kept)["API_KEY"] == SECRET
    finally:
        for r in (ref, kept):
            try:
                docker.from_env().images.remove(r, force=True)
            except docker.errors.ImageNotFound:
                pass


def test_index_passwords_never_reach_plan_output_lock_or_errors(tmp_path):
    folder = tmp_path / "env"
    shutil.copytree(REPO / "notebooks", folder)
    (folder / "requirements.txt").write_text("--extra-index-url https://alice:hunter2@pypi.example.invalid/simple\n")
    for args in (("plan", str(folder)), ("plan", str(folder), "--json"), ("lock", str(folder)),
                 ("build", str(folder)), ("--debug", "plan", str(folder))):
        out = dsenv(*args)
        assert "hunter2" not in out.stdout + out.stderr, args
    assert "hunter2" not in "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()
                                    and p.name != "requirements.txt")


def test_every_port_dsenv_publishes_is_on_loopback_and_jupyter_wants_its_token(example, cleanup_containers):
    folder, _ = example
    started = containers.run(folder, containers.RunOptions(ports=["18050:8050"]))
    cleanup_containers.append(started.name)
    for box in docker.from_env().containers.list(filters={"label": "io.dsenv.managed=1"}):
        for bindings in (box.attrs["HostConfig"]["PortBindings"] or {}).values():
            assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, box.name
    base = started.url.split("/lab?")[0]
    for path in ("/api/status", "/api/contents", "/api/kernels", "/lab"):
        try:
            with urllib.request.urlopen(base + path, timeout=10) as r:
                assert r.status in (301, 302) or "login" in r.url, (path, r.status)
        except urllib.error.HTTPError as e:
            assert e.code in (401, 403), (path, e.code)
    request = urllib.request.Request(base + "/api/contents/x.txt", method="PUT", data=b'{"type":"file","format":"text",'
                                     b'"content":"x"}', headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("an unauthenticated write was accepted")
    except urllib.error.HTTPError as e:
        assert e.code in (401, 403)
    assert not (folder / "x.txt").exists()
