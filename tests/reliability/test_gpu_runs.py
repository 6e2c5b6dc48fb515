"""GPU runs end to end through `dsenv run --gpus`, with an injected device list, against a private Docker daemon that
has an NVIDIA device driver: dockerd registers its "nvidia" driver when `nvidia-container-runtime-hook` is on its
PATH, and a stand-in for that hook (it records which GPUs each container was given, then lets it start) takes the
place of NVIDIA's. Twenty concurrent runs get twenty different GPUs, and the runtime sees exactly those UUIDs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

BRIDGE = "dsenv-gpu0"
HOOK = """#!/bin/sh
# stand-in for NVIDIA's prestart hook: records the GPUs the container was given (from its OCI config), then exits 0
python3 - "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["bundle"])')" >> "{log}" <<'PY'
import json, sys
env = json.load(open(sys.argv[1] + "/config.json"))["process"]["env"]
print(" ".join(e for e in env if e.startswith("NVIDIA_VISIBLE_DEVICES=")), flush=True)
PY
"""


def _base_image() -> str | None:
    for ref in ("dsenv/python:3.11-bookworm", "python:3.11-slim"):
        if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0:
            return ref
    return None


@pytest.fixture(scope="module")
def gpu_daemon():
    """A private dockerd (own data root, socket and bridge) with the stand-in hook on its PATH, holding a base image."""
    image = _base_image()
    if os.geteuid() != 0 or not shutil.which("dockerd") or not image:
        pytest.skip("needs root, dockerd and a base image to start a private Docker daemon")
    root = Path("/tmp") / f"dsenv-g2-{os.getpid()}"  # short: unix socket paths are limited to 108 bytes
    (root / "bin").mkdir(parents=True, exist_ok=True)
    hook = root / "bin" / "nvidia-container-runtime-hook"
    hook.write_text(HOOK.replace("{log}", str(root / "hook.log")))
    hook.chmod(0o755)
    for cmd in (["ip", "link", "add", BRIDGE, "type", "bridge"], ["ip", "addr", "add", "10.213.79.1/24", "dev", BRIDGE],
                ["ip", "link", "set", BRIDGE, "up"]):
        subprocess.run(cmd, capture_output=True)
    sock = root / "docker.sock"
    proc = subprocess.Popen(["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
                             "--pidfile", str(root / "pid"), "-H", f"unix://{sock}", "--bridge", BRIDGE,
                             "--iptables=false", "--ip-masq=false"], stdout=subprocess.DEVNULL,
                            stderr=open(root / "dockerd.log", "ab"),
                            env={**os.environ, "PATH": f"{root / 'bin'}:{os.environ['PATH']}"})
    try:
        for _ in range(100):
            if sock.exists() and subprocess.run(["docker", "-H", f"unix://{sock}", "version"],
                                                capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.skip(f"a second dockerd did not start: {(root / 'dockerd.log').read_text()[-300:]}")
        saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", f"unix://{sock}", "load", "-q"], stdin=saved.stdout, check=True,
                       capture_output=True, timeout=300)
        saved.wait(timeout=60)
        yield {"host": f"unix://{sock}", "image": image, "hook_log": root / "hook.log"}
    finally:
        subprocess.run(f"docker -H unix://{sock} ps -aq | xargs -r docker -H unix://{sock} rm -f", shell=True,
                       capture_output=True)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(["pkill", "-9", "-f", str(root / "exec")], capture_output=True)
        for mount in sorted((line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                             if line.split()[1].startswith(str(root))), reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


def _dsenv(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dsenv.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_twenty_concurrent_gpu_runs_get_twenty_gpus_and_the_runtime_sees_them(gpu_daemon, tmp_path):
    devices = [{"index": i, "uuid": f"GPU-{i:08d}-0000-0000-0000-{uuid.uuid4().hex[:12]}", "name": "NVIDIA H100",
                "memory_total": 80 * 2**30, "memory_used": i * 2**20, "utilization": 0} for i in range(24)]
    (tmp_path / "devices.json").write_text(json.dumps({"driver": "580", "cuda_driver": "13.0", "devices": devices}))
    env = {"DOCKER_HOST": gpu_daemon["host"], "DSENV_GPU_DEVICES": str(tmp_path / "devices.json")}
    run = ("run", "--image", gpu_daemon["image"], "--gpus", "1", "-d", "--", "sleep", "900")  # held until rm
    with ThreadPoolExecutor(20) as pool:
        outs = list(pool.map(lambda _: _dsenv(env, *run), range(20)))
    assert [o.stderr for o in outs if o.returncode] == []
    names = [o.stdout.strip() for o in outs]
    assert len(set(names)) == 20
    ps = {c["name"]: c for c in json.loads(_dsenv(env, "ps", "--json").stdout)}
    given = [ps[n]["gpus"] for n in names]
    assert len(set(given)) == 20 and all(g.startswith("GPU-") and "," not in g for g in given)
    # the most free memory first: the twenty least-used devices, the four most used left free
    assert set(given) == {d["uuid"] for d in devices[:20]}
    # what the runtime was told, once per container: dsenv's env and Docker's device request name the same GPU
    seen = [set(line.split()) for line in gpu_daemon["hook_log"].read_text().splitlines()]
    assert all(len(s) == 1 for s in seen) and sorted(s.pop() for s in seen) == sorted(
        f"NVIDIA_VISIBLE_DEVICES={g}" for g in given)

    more = _dsenv(env, "run", "--image", gpu_daemon["image"], "--gpus", "5", "-d", "--", "sleep", "1")
    lines = more.stderr.strip().splitlines()
    assert more.returncode != 0 and len(lines) == 1 and "hint:" in lines[0], more.stderr
    assert "4" in lines[0] and "5" in lines[0]  # asked for 5, 4 free
    shared = _dsenv(env, "run", "--image", gpu_daemon["image"], "--gpus", given[0], "--share-gpu", "--", "true")
    assert shared.returncode == 0, shared.stderr
    taken = _dsenv(env, "run", "--image", gpu_daemon["image"], "--gpus", given[0], "--", "true")
    assert taken.returncode != 0 and names[0] in taken.stderr  # names the container that holds it
    assert _dsenv(env, "rm", *names).returncode == 0
