"""The Docker daemon killed in the middle of a build: one clear line, nothing half-built tagged, and once the daemon
is back the same build finishes with the same tag. Runs against a second, private dockerd (its own data root and
socket and bridge; build steps use the host network), so the suite's daemon is never touched."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The private daemon gets a bridge of its own: with --bridge=none dockerd deletes docker0, the bridge of the
# suite's daemon.
BRIDGE = "dsenv-kill0"


def _start(root: Path) -> subprocess.Popen:
    sock = root / "docker.sock"
    proc = subprocess.Popen(["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
                             "--pidfile", str(root / "pid"), "-H", f"unix://{sock}", "--bridge", BRIDGE,
                             "--iptables=false", "--ip-masq=false"], stdout=subprocess.DEVNULL,
                            stderr=open(root / "dockerd.log", "ab"))
    for _ in range(100):
        if sock.exists() and subprocess.run(["docker", "-H", f"unix://{sock}", "version"],
                                            capture_output=True).returncode == 0:
            return proc
        time.sleep(0.2)
    proc.kill()
    pytest.skip(f"a second dockerd did not start: {(root / 'dockerd.log').read_text()[-300:]}")


def _crash(state: dict) -> None:
    """Kill -9 the daemon and everything it started (its containerd and the build step's shim), as a crash would."""
    state["proc"].send_signal(signal.SIGKILL)
    state["proc"].wait(timeout=30)
    subprocess.run(["pkill", "-9", "-f", str(state["root"] / "exec")], capture_output=True)
    time.sleep(0.5)
    (state["root"] / "exec" / "containerd" / "containerd.pid").unlink(missing_ok=True)  # its pid may live on as a zombie


def _unmount(root: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(root))]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)


@pytest.fixture
def private_daemon(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        pytest.skip("needs root and dockerd to start a private Docker daemon")
    root = Path("/tmp") / f"dsenv-d2-{os.getpid()}"  # short: unix socket paths are limited to 108 bytes
    root.mkdir(exist_ok=True)
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], capture_output=True)
    subprocess.run(["ip", "addr", "add", "10.213.77.1/24", "dev", BRIDGE], capture_output=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], capture_output=True)
    state = {"proc": _start(root), "root": root}
    yield state
    state["proc"].terminate()
    try:
        state["proc"].wait(timeout=30)
    except subprocess.TimeoutExpired:
        state["proc"].kill()
    subprocess.run(["pkill", "-9", "-f", str(root / "exec")], capture_output=True)
    _unmount(root)
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


def test_a_daemon_killed_mid_build_is_one_line_and_the_next_build_gives_the_same_tag(private_daemon, tmp_path, example):
    from dsenv import api

    folder = tmp_path / "killed"
    shutil.copytree(REPO / "notebooks", folder)
    base = api.plan(folder).base
    sock = private_daemon["root"] / "docker.sock"
    saved = subprocess.Popen(["docker", "save", base], stdout=subprocess.PIPE)
    subprocess.run(["docker", "-H", f"unix://{sock}", "load", "-q"], stdin=saved.stdout, check=True,
                   capture_output=True)
    saved.wait()
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DSENV_BUILDER": "classic", "DSENV_BUILD_NETWORK": "host",
           "PYTHONUNBUFFERED": "1"}
    tag = json.loads(subprocess.run([sys.executable, "-m", "dsenv.cli", "plan", str(folder), "--json"], env=env,
                                    capture_output=True, text=True, check=True).stdout)["tag"]
    build = subprocess.Popen([sys.executable, "-m", "dsenv.cli", "build", str(folder)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in build.stderr:
        seen.append(line)
        if "uv pip install" in line:
            break
    time.sleep(1)
    _crash(private_daemon)
    err = "".join(seen) + build.stderr.read()
    assert build.wait(timeout=60) == 6, err
    (line,) = [x for x in err.splitlines() if x.startswith("dsenv:")]
    assert "Docker daemon went away" in line and "hint:" in line and "Traceback" not in err

    private_daemon["proc"] = _start(private_daemon["root"])
    images = subprocess.run(["docker", "-H", f"unix://{sock}", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                            capture_output=True, text=True).stdout.split()
    assert tag not in images, "a half-built image was tagged"
    again = subprocess.run([sys.executable, "-m", "dsenv.cli", "build", str(folder)], env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == tag
