"""Engine faults: no daemon, a container killed by its memory limit, Jupyter failing to start, a registry that is
down, and Ctrl-C during a build and during a push. Each: one clear line, the right exit code, nothing left behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from dsenv import engine

from .conftest import check_failure, dsenv, engine_state

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["build"], ["run"], ["ps"], ["images"], ["push", "x/y:z"]])
def test_no_daemon_is_one_line_for_every_command(command, tmp_path):
    folder = tmp_path / "env"
    shutil.copytree(REPO / "notebooks", folder)
    args = [*command, str(folder)] if command[0] in ("build", "run") else command
    out = dsenv(*args, env={"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"})
    line = check_failure(out, words=("daemon",))
    assert out.returncode == 6, line


def test_a_container_killed_by_its_memory_limit_says_so_with_the_limit(example):
    folder, _ = example
    before = engine_state()
    out = dsenv("run", str(folder), "--memory", "64m", "--", "python", "-c",
                "b = bytearray(512 * 2**20); b[::4096] = b'x' * len(b[::4096])")
    line = check_failure(out, before_engine=before, words=("out of memory", "64m"))
    assert out.returncode == 137, line


def test_jupyter_that_cannot_start_shows_its_last_log_lines(example):
    import docker

    folder, built = example
    client = docker.from_env()
    box = client.containers.run(built.tag, ["sh", "-c", "printf '#!/bin/sh\\necho config is broken: no such port >&2\\n"
                                            "exit 3\\n' > /opt/dsenv/venv/bin/jupyter-lab"], user="0", detach=True)
    box.wait()
    ref = f"dsenv-broken-jupyter-{uuid.uuid4().hex[:6]}:v1"
    box.commit(*ref.split(":"))
    box.remove()
    try:
        before = engine_state()
        out = dsenv("run", "--image", ref, "--timeout", "30")
        check_failure(out, before_engine=before, words=("Jupyter exited before answering (code 3)", "config is broken"))
    finally:
        client.images.remove(ref, force=True)


def test_a_registry_that_is_down_is_one_line(example):
    import socket

    _, built = example
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    before = engine_state()
    out = dsenv("push", built.tag, "--registry", f"127.0.0.1:{port}")
    check_failure(out, words=(f"127.0.0.1:{port}",))
    after = engine_state()
    assert after[1] == before[1]
    assert not [t for t, _ in after[1] if t.startswith(f"127.0.0.1:{port}/")], "the registry-named tag was left"


def test_a_registry_refusing_auth_is_one_line_and_leaves_no_tag(example, auth_registry):
    _, built = example
    before = engine_state()
    out = dsenv("push", built.tag, "--registry", auth_registry)
    line = check_failure(out, before_engine=before, words=("refused the credentials", "docker login"))
    assert out.returncode == 6 and auth_registry in line
    assert not [t for t, _ in engine_state()[1] if t.startswith(f"{auth_registry}/")], "the registry-named tag was left"


def _interrupt(args: list[str], after_line: str, timeout: float = 120) -> tuple[int, str]:
    """Start the CLI, send SIGINT once stderr shows after_line, return (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "dsenv.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        seen.append(line)
        if after_line in line or time.monotonic() > deadline:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    return proc.wait(timeout=60), "".join(seen) + rest


def test_ctrl_c_during_a_build_exits_130_and_leaves_no_tag_or_builder(tmp_path, made_names):
    folder = tmp_path / f"rel-sigint-{uuid.uuid4().hex[:6]}"
    shutil.copytree(REPO / "notebooks", folder)
    (folder / "requirements.txt").write_text("tabulate\n")
    made_names.add(folder.name)
    before = engine_state()
    code, err = _interrupt(["build", str(folder), "--full", "--no-cache"], "[2/")
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "dsenv: interrupted" and "Traceback" not in err
    after = engine_state()
    assert not [t for t, _ in after[1] - before[1] if t.startswith(f"dsenv/{folder.name}:")]
    leftover = subprocess.run(["pgrep", "-f", f"build.*{folder.name}"], capture_output=True, text=True).stdout
    assert not leftover.strip(), leftover
    again = dsenv("build", str(folder))
    assert again.returncode == 0, again.stderr


def test_ctrl_c_during_a_push_exits_130_and_the_next_push_works(example, registry):
    _, built = example
    repo = f"rel-push-{uuid.uuid4().hex[:6]}"
    ref = f"{repo}:v1"
    import docker

    docker.from_env().images.get(built.tag).tag(repo, "v1")
    try:
        code, err = _interrupt(["push", ref, "--registry", registry], "")
        assert code == 130, err
        assert err.strip().splitlines()[-1] == "dsenv: interrupted" and "Traceback" not in err
        assert engine.image_info(f"{registry}/{ref}") is None
        out = dsenv("push", ref, "--registry", registry, "--json")
        assert out.returncode == 0, out.stderr
        digest = json.loads(out.stdout)["digest"]
        with urllib.request.urlopen(f"http://{registry}/v2/{repo}/tags/list", timeout=10) as r:
            assert json.loads(r.read())["tags"] == ["v1"]
        assert digest.startswith("sha256:")
    finally:
        for t in (ref, f"{registry}/{ref}"):
            try:
                engine.remove_image(t)
            except Exception:
                pass
