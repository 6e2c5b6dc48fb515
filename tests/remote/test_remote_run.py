"""`dsenv run --host` against a real remote (a network namespace with its own dockerd and sshd, reached only over
ssh://): the container runs there, not here; the printed local URL answers through an SSH forward that comes back
when its connection is killed; files written in the container come back to the local folder on stop."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from .conftest import dsenv


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except OSError:
        return 0


def _api(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def _local_dsenv_containers() -> str:
    return subprocess.run(["docker", "ps", "-a", "--filter", "label=io.dsenv.managed=1", "--format", "{{.Names}}"],
                          capture_output=True, text=True, check=True).stdout


def _keepers(remote) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "dsenv.remote.tunnels" in cmd and str(remote.root) in cmd:
            out.append(int(pid))
    return out


def test_run_on_the_remote_forwards_reconnects_and_syncs_back(remote_with_image, folder):
    remote = remote_with_image
    (folder / "edited_both.txt").write_text("original\n")
    run = dsenv(remote, "run", str(folder), "--host", remote.url, "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    name, url = result["name"], result["url"]
    try:
        # the container runs on the remote daemon, not here
        assert name in remote.docker("ps", "--format", "{{.Names}}").split()
        assert name not in _local_dsenv_containers()
        assert url.startswith("http://127.0.0.1:")
        assert _status(url) == 200
        base, token = url.split("/lab?token=")

        ps = dsenv(remote, "ps", "--host", remote.url, "--json")
        assert ps.returncode == 0, ps.stderr
        assert [c["url"] for c in json.loads(ps.stdout) if c["name"] == name] == [url]

        forwards = json.loads(dsenv(remote, "tunnels", "--json").stdout)
        mine = [t for t in forwards if t["container"] == name]
        assert len(mine) == 1 and mine[0]["state"] == "up"

        # kill the SSH connection under the forward: it comes back within seconds
        os.kill(mine[0]["ssh_pid"], signal.SIGKILL)
        started = time.monotonic()
        while time.monotonic() - started < 15 and _status(url) != 200:
            time.sleep(0.2)
        assert _status(url) == 200, "the forward did not come back"
        back = time.monotonic() - started
        assert back < 10
        again = [t for t in json.loads(dsenv(remote, "tunnels", "--json").stdout) if t["container"] == name]
        assert again[0]["reconnects"] >= 1 and again[0]["ssh_pid"] != mine[0]["ssh_pid"]

        # files written in the container (through Jupyter's contents API), one edited on both sides
        _api(base, token, "PUT", "/api/contents/result.txt", {"type": "file", "format": "text", "content": "42\n"})
        _api(base, token, "PUT", "/api/contents/edited_both.txt", {"type": "file", "format": "text",
                                                                   "content": "remote edit\n"})
        (folder / "edited_both.txt").write_text("local edit\n")
        (folder / "local_only.txt").write_text("mine\n")
    finally:
        stop = dsenv(remote, "stop", "--host", remote.url, name)
    assert stop.returncode == 0, stop.stderr
    assert (folder / "result.txt").read_text() == "42\n"
    assert (folder / "edited_both.txt").read_text() == "local edit\n"  # a conflict is never overwritten
    assert (folder / "edited_both.txt.remote").read_text() == "remote edit\n"
    assert "edited_both.txt" in stop.stderr
    assert (folder / "local_only.txt").read_text() == "mine\n"  # nothing local deleted
    # the forward is closed and its keeper gone
    assert [t for t in json.loads(dsenv(remote, "tunnels", "--json").stdout) if t["container"] == name] == []
    assert _keepers(remote) == []
    assert _status(url) == 0
    rm = dsenv(remote, "rm", "--host", remote.url, name)
    assert rm.returncode == 0, rm.stderr
    assert "dsenv-work-" not in remote.docker("volume", "ls", "-q")


def test_docker_host_ssh_in_the_environment_acts_like_host(remote_with_image, example_image):
    remote = remote_with_image
    env = {"DOCKER_HOST": remote.url}
    run = dsenv(remote, "run", "--image", example_image, "-d", "-p", "18123:8123", "--", "sleep", "60", env=env)
    assert run.returncode == 0, run.stderr
    name = run.stdout.strip()
    try:
        assert name in remote.docker("ps", "--format", "{{.Names}}").split()
        assert name not in _local_dsenv_containers()
        ps = dsenv(remote, "ps", "--json", env=env)
        assert name in {c["name"] for c in json.loads(ps.stdout)}
        forwards = [t for t in json.loads(dsenv(remote, "tunnels", "--json").stdout) if t["container"] == name]
        assert [(t["remote_port"], t["state"]) for t in forwards] == [(18123, "up")]
        closed = dsenv(remote, "tunnels", "close", "--all")
        assert closed.returncode == 0 and closed.stdout.split() == [forwards[0]["id"]]
        assert json.loads(dsenv(remote, "tunnels", "--json").stdout) == [] and _keepers(remote) == []
        committed = dsenv(remote, "commit", name, "remote-snap:v1", "-m", "on the remote", env=env)
        assert committed.returncode == 0, committed.stderr
        assert remote.docker("images", "-q", "remote-snap:v1").strip()
        assert not subprocess.run(["docker", "images", "-q", "remote-snap:v1"], capture_output=True, text=True,
                                  check=True).stdout.strip()
    finally:
        rm = dsenv(remote, "rm", name, env=env)
    assert rm.returncode == 0, rm.stderr
    assert name not in remote.docker("ps", "-a", "--format", "{{.Names}}").split()


def test_build_reuses_the_remote_image_and_repro_runs_there(remote_with_image, folder, example_image):
    remote = remote_with_image
    built = dsenv(remote, "build", str(folder), "--host", remote.url, "--json")
    assert built.returncode == 0, built.stderr
    done = json.loads(built.stdout.strip().splitlines()[-1])
    assert done["tag"] == example_image and done["built"] is False  # same content-addressed tag: nothing rebuilt
    notebook = next(folder.glob("*.ipynb"))
    repro = dsenv(remote, "repro", str(notebook), "--host", remote.url, "--json")
    assert repro.returncode == 0, repro.stderr
    out = json.loads(repro.stdout)
    assert Path(out["output"]).is_file() and out["provenance"]["exit_code"] == 0
    assert remote.docker("ps", "-aq").strip() == ""  # the run's container and volumes are gone from the remote
    assert "dsenv-work-" not in remote.docker("volume", "ls", "-q")


def test_a_remote_folder_is_mounted_where_it_is(remote_with_image, example_image, tmp_path):
    remote = remote_with_image
    there = f"/tmp/dsenv-rdata-{os.getpid()}"
    remote.ssh(f"mkdir -p {there} && echo big-data > {there}/part-0", check=True, timeout=30)
    try:
        env = {"DOCKER_HOST": remote.url}
        run = dsenv(remote, "run", "--image", example_image, "-v", f"remote:{there}:/data:ro", "--", "cat",
                    "/data/part-0", env=env)
        assert run.returncode == 0, run.stderr
        assert run.stdout == "big-data\n"
        assert "dsenv-work-" not in remote.docker("volume", "ls", "-q")  # mounted, not copied
        missing = dsenv(remote, "run", "--image", example_image, "-v", f"remote:{there}-nope:/data", "--", "true",
                        env=env)
        assert missing.returncode == 2 and "does not exist on" in missing.stderr
        local = dsenv(remote, "run", "--image", example_image, "-v", f"remote:{there}:/data", "--", "true",
                      env={"DOCKER_HOST": ""})
        assert local.returncode == 2 and "needs a remote host" in local.stderr
        assert remote.docker("ps", "-aq").strip() == ""
    finally:
        remote.ssh("rm", "-rf", there, timeout=30)
