"""Running environments on the real daemon: Jupyter with a token on 127.0.0.1, files owned by the caller, exit codes,
commit / push / pull through a real registry, concurrent runs, clean failures."""
from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from dsenv import containers, engine

from .conftest import dsenv


def _status(url_base: str, token: str | None) -> int:
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url_base}/api/status", headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _split(url: str) -> tuple[str, str]:
    base, _, query = url.partition("/lab?token=")
    return base, query


def test_jupyter_needs_its_token_and_listens_on_loopback_only(example, cleanup_containers):
    folder, built = example
    cli = dsenv("run", str(folder), "--json")
    assert cli.returncode == 0, cli.stderr
    result = json.loads(cli.stdout)
    cleanup_containers.append(result["name"])
    base, token = _split(result["url"])
    assert base.startswith("http://127.0.0.1:") and len(token) >= 32
    assert _status(base, token) == 200
    assert _status(base, None) == 403
    bindings = docker.from_env().containers.get(result["name"]).attrs["HostConfig"]["PortBindings"]
    assert {b["HostIp"] for v in bindings.values() for b in v} == {"127.0.0.1"}
    ps = json.loads(dsenv("ps", "--json").stdout)
    mine = [c for c in ps if c["name"] == result["name"]]
    assert mine and mine[0]["url"] == result["url"] and mine[0]["status"] == "running"
    info = engine.inspect(result["name"])
    assert info.env["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert info.labels["io.dsenv.managed"] == "1" and info.labels["io.dsenv.notebook"] == str(folder)


def test_files_written_in_the_work_folder_appear_on_the_host_owned_by_the_caller(example, cleanup_containers):
    folder, _ = example
    result = containers.run(folder, containers.RunOptions(command=["sleep", "300"], detach=True))
    cleanup_containers.append(result.name)
    code = dsenv("exec", result.name, "--", "sh", "-c", "echo written > /home/dsenv/work/from-container.txt; id -u")
    assert code.returncode == 0, code.stderr
    assert code.stdout.strip() == str(os.getuid())
    created = folder / "from-container.txt"
    try:
        assert created.read_text().strip() == "written"
        assert created.stat().st_uid == os.getuid()
    finally:
        created.unlink(missing_ok=True)


def test_a_command_runs_instead_of_jupyter_and_its_exit_code_passes_through(example):
    folder, _ = example
    cli = dsenv("run", str(folder), "--", "python", "-c", "import sys, numpy; print('numpy', numpy.__version__); sys.exit(3)")
    assert cli.returncode == 3, cli.stderr
    assert "numpy " in cli.stdout
    assert not [c for c in containers.ps() if c.env == folder.name and c.status == "exited"]


def test_install_commit_run_the_committed_image_and_refuse_to_overwrite(example, cleanup_containers, made_names):
    folder, built = example
    first = containers.run(folder, containers.RunOptions(command=["sleep", "300"], detach=True))
    cleanup_containers.append(first.name)
    assert containers.exec_(first.name, ["uv", "pip", "install", "--quiet", "tabulate"]) == 0
    ref = f"dsenv-it/{folder.name}:v1"
    cli = dsenv("commit", first.name, ref, "-m", "added tabulate", "--json")
    assert cli.returncode == 0, cli.stderr
    committed = json.loads(cli.stdout)
    try:
        labels = docker.from_env().images.get(ref).labels
        assert labels["io.dsenv.parent"] == built.image_id
        assert labels["io.dsenv.commit.message"] == "added tabulate"
        assert "tabulate==" in labels["io.dsenv.pip-freeze"]
        assert labels["io.dsenv.commit.author"]
        containers.rm(first.name)
        out = dsenv("run", "--image", ref, "--", "python", "-c", "import tabulate; print('tabulate ok')")
        assert out.returncode == 0 and "tabulate ok" in out.stdout, out.stderr
        again = dsenv("run", "--image", built.tag, "--name", f"{first.name}-2", "--detach", "--", "sleep", "60")
        assert again.returncode == 0, again.stderr
        cleanup_containers.append(f"{first.name}-2")
        refused = dsenv("commit", f"{first.name}-2", ref)
        assert refused.returncode == 6 and "already exists" in refused.stderr and "--force" in refused.stderr
        assert docker.from_env().images.get(ref).id == committed["id"]
    finally:
        docker.from_env().images.remove(ref, force=True)


def test_push_delete_pull_run_keeps_the_digest(example, registry, cleanup_containers):
    folder, built = example
    box = containers.run(folder, containers.RunOptions(command=["sleep", "300"], detach=True))
    cleanup_containers.append(box.name)
    ref = f"team/{folder.name}:v2"
    assert dsenv("commit", box.name, ref, "-m", "to share").returncode == 0
    pushed = dsenv("push", ref, "--registry", registry, "--json")
    assert pushed.returncode == 0, pushed.stderr
    result = json.loads(pushed.stdout)
    remote = f"{registry}/{ref}"
    assert result["ref"] == remote and result["digest"].startswith("sha256:")
    client = docker.from_env()
    client.images.remove(ref, force=True)
    client.images.remove(remote, force=True)
    pulled = dsenv("pull", remote, "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["digest"] == result["digest"]
    ran = dsenv("run", "--image", remote, "--", "python", "-c", "print('from the registry')")
    try:
        assert ran.returncode == 0 and "from the registry" in ran.stdout, ran.stderr
        assert any(d.endswith(result["digest"]) for d in client.images.get(remote).attrs["RepoDigests"])
    finally:
        client.images.remove(remote, force=True)


def test_push_to_an_unreachable_registry_is_one_clear_line(example, made_names):
    folder, built = example
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    cli = dsenv("push", built.tag, "--registry", f"127.0.0.1:{dead}")
    assert cli.returncode == 6
    (line,) = [x for x in cli.stderr.splitlines() if x.startswith("dsenv: error:")]
    assert "registry" in line and "hint:" in line and "Traceback" not in cli.stderr
    assert engine.image_info(f"127.0.0.1:{dead}/{built.tag}") is None  # the tag made for the push is gone again


def test_ten_concurrent_runs_get_distinct_names_and_ports_all_reachable(example, cleanup_containers):
    folder, built = example
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda _: containers.run(None, containers.RunOptions(image=built.tag, timeout=180)),
                                range(10)))
    cleanup_containers.extend(r.name for r in results)
    assert len({r.name for r in results}) == 10
    assert len({r.ports[8888] for r in results}) == 10
    for r in results:
        base, token = _split(r.url)
        assert _status(base, token) == 200


def test_taken_port_and_taken_name_fail_clearly_and_start_nothing(example, cleanup_containers):
    folder, built = example
    before = {c.name for c in containers.ps()}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cli = dsenv("run", str(folder), "-p", str(port))
        assert cli.returncode == 6 and f"port {port}" in cli.stderr, cli.stderr
    assert {c.name for c in containers.ps()} == before
    first = dsenv("run", "--image", built.tag, "--name", "dsenv-it-taken", "-d", "--", "sleep", "60")
    assert first.returncode == 0, first.stderr
    cleanup_containers.append("dsenv-it-taken")
    second = dsenv("run", "--image", built.tag, "--name", "dsenv-it-taken", "-d", "--", "sleep", "60")
    assert second.returncode == 6 and "already exists" in second.stderr


DEVICES = {"driver": "580.159.04", "cuda_driver": "13.0", "devices": [
    {"index": 0, "uuid": "GPU-11111111-2222-3333-4444-555555555555", "name": "NVIDIA H100 80GB HBM3",
     "memory_total": 85899345920, "memory_used": 8589934592, "utilization": 0, "mig_mode": False},
    {"index": 1, "uuid": "GPU-66666666-7777-8888-9999-000000000000", "name": "NVIDIA H100 80GB HBM3",
     "memory_total": 85899345920, "memory_used": 1048576, "utilization": 0, "mig_mode": False}]}


@pytest.fixture
def injected_gpus(tmp_path, monkeypatch):
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(DEVICES))
    monkeypatch.setenv("DSENV_GPU_DEVICES", str(path))
    return path


def test_chosen_gpus_reach_the_engine_as_device_request_env_and_label(example, injected_gpus):
    from dsenv import gpu

    folder, built = example
    with gpu.host_lock():
        uuids = containers.choose_gpus("1")
        spec = engine.ContainerSpec(image=built.tag, name=f"dsenv-it-gpu-{folder.name}", command=["true"],
                                    environment=containers.gpu_environment(uuids), gpu_ids=uuids,
                                    labels={"io.dsenv.managed": "1", "io.dsenv.gpus": ",".join(uuids)})
        cid = engine.create(spec)
    try:
        assert uuids == [DEVICES["devices"][1]["uuid"]]  # the one with more free memory
        attrs = docker.from_env().api.inspect_container(cid)
        (request,) = attrs["HostConfig"]["DeviceRequests"]
        assert request["DeviceIDs"] == uuids and request["Capabilities"] == [["gpu"]]
        assert f"NVIDIA_VISIBLE_DEVICES={uuids[0]}" in attrs["Config"]["Env"]
        assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in attrs["Config"]["Env"]
        assert containers.dsenv_gpu_holders()[0] == {uuids[0]: [spec.name]}  # created: it holds them already
    finally:
        engine.remove(cid)


def test_gpus_without_an_nvidia_runtime_fail_clearly_and_leave_no_container(example, injected_gpus):
    folder, built = example
    if "nvidia" in json.dumps(docker.from_env().info().get("Runtimes", {})):
        pytest.skip("this engine has an NVIDIA runtime")
    before = {c.id for c in engine.list_managed()}
    cli = dsenv("run", "--image", built.tag, "--gpus", "1", "--", "true")
    assert cli.returncode == 6, cli.stderr
    (line,) = [x for x in cli.stderr.splitlines() if x.startswith("dsenv: error:")]
    assert "cannot give GPUs" in line and "Traceback" not in cli.stderr
    assert {c.id for c in engine.list_managed()} == before


def test_gpus_without_nvml_fail_before_anything_is_created(example, monkeypatch):
    monkeypatch.delenv("DSENV_GPU_DEVICES", raising=False)
    try:
        import pynvml  # noqa: F401

        pytest.skip("NVML is installed here")
    except ImportError:
        pass
    folder, built = example
    before = {c.id for c in engine.list_managed()}
    cli = dsenv("run", "--image", built.tag, "--gpus", "1", "--", "true")
    assert cli.returncode == 6 and "NVML" in cli.stderr
    assert {c.id for c in engine.list_managed()} == before
    assert dsenv("gpus").returncode == 6


@pytest.mark.parametrize("args, words", [
    (["-p", "0"], "out of range"), (["-p", "65536"], "out of range"), (["-v", "/nonexistent-dsenv:/x"], "does not exist"),
    (["-v", "/:/host"], "--allow-dangerous-mounts"), (["-v", "/var/run/docker.sock:/s"], "--allow-dangerous-mounts"),
    (["-e", "1BAD=x"], "not a valid environment variable"), (["--gpus", "banana"], "not N, all"),
])
def test_bad_run_options_are_usage_errors(example, args, words):
    folder, _ = example
    cli = dsenv("run", str(folder), *args)
    assert cli.returncode == 2 and words in cli.stderr, cli.stderr


def test_logs_stop_and_rm_through_the_cli(example):
    folder, built = example
    started = dsenv("run", "--image", built.tag, "-d", "--", "sh", "-c", "echo hello-from-logs; sleep 300")
    assert started.returncode == 0, started.stderr
    name = started.stdout.strip()
    try:
        import time

        for _ in range(50):
            out = dsenv("logs", name)
            if "hello-from-logs" in out.stdout:
                break
            time.sleep(0.1)
        assert "hello-from-logs" in out.stdout
        assert dsenv("stop", name).returncode == 0
        assert engine.inspect(name).status == "exited"
        assert dsenv("rm", name).returncode == 0
        missing = dsenv("logs", name)
        assert missing.returncode == 6 and "no container named" in missing.stderr
    finally:
        engine.remove(name)
