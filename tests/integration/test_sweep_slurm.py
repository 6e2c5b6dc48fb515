"""Sweeps on a real Slurm cluster started for this module from Debian's slurm-wlm and munge (munged, slurmctld and
three `slurmd -N nX`, fake GPUs as character devices), the image pushed once to a real registry and run by digest:
6 outputs with provenance, collect's table equal to the local backend's, a re-run that submits nothing, cancel
leaving no container, the GPU mapping, and one-line errors for an unknown partition, too many CPUs and an
unreachable registry."""
from __future__ import annotations

import json
import os
import time

import pytest

from dsenv import engine
from tests.slurm.cluster import NODES, SlurmCluster, missing

from .conftest import dsenv

_MISSING = missing()
pytestmark = [pytest.mark.requires_slurm,
              pytest.mark.skipif(_MISSING is not None, reason=f"requires_slurm: {_MISSING}")]
GRID = ["-p", "noise", "0.1", "0.3", "0.5", "-p", "n_points", "50", "100"]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A throwaway 3-node cluster; SLURM_CONF points the CLI at it; stopped by PID at the end."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    cluster.stop()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def sweep_containers(sweep_id: str) -> list[str]:
    return [c.name for c in engine.list_managed(all_states=True, labels={"io.dsenv.sweep": sweep_id})]


def rmse_by_name(rows: list[dict]) -> dict[str, float]:
    return {r["name"]: round(r["records"]["rmse"], 12) for r in rows}


@pytest.fixture(scope="module")
def slurm_sweep(slurm, example, registry, tmp_path_factory):
    folder, built = example
    out = tmp_path_factory.mktemp("slurm-out")
    r = dsenv("sweep", str(folder / "sine_fit.ipynb"), *GRID, "--on", "slurm", "--cpus", "1", "--memory", "1g",
              "--registry", registry, "--out", str(out), "--wait")
    assert r.returncode == 0, r.stderr + slurm.log_tail()
    return r.stdout.strip(), out, built


def test_six_point_sweep_on_three_nodes(slurm_sweep, registry):
    sid, out, built = slurm_sweep
    files = sorted(out.glob("sine_fit-*.ipynb"))
    assert len(files) == 6
    provs = [json.loads(f.read_text())["metadata"]["dsenv"]["provenance"] for f in files]
    refs = {p["image_ref"] for p in provs}
    assert len(refs) == 1 and next(iter(refs)).startswith(f"{registry}/") and "@sha256:" in next(iter(refs))
    assert {p["image_id"] for p in provs} == {built.image_id}
    assert all(p["exit_code"] == 0 and p["sweep"]["array_job_id"] and p["sweep"]["node"] in NODES for p in provs)
    assert sorted(p["sweep"]["array_task_id"] for p in provs) == [str(i) for i in range(6)]
    script = (out / ".dsenv" / "sbatch-0.sh").read_text()
    assert "#SBATCH --array=0-5" in script and "--init" in script
    log = next((out / ".dsenv" / "logs").glob("slurm-*_0.log")).read_text()
    assert "--cpus 1 " in log and "--memory 1024m" in log  # Slurm's allocation, passed to the container
    rows = json.loads(dsenv("sweep", "collect", sid, "--json").stdout)
    assert len(rows) == 6 and all(isinstance(r["records"]["rmse"], float) for r in rows)
    assert len({r["provenance"]["image_digest"] for r in rows}) == 1
    status = dsenv("sweep", "status", sid)
    assert "6 completed" in status.stdout and " n" in status.stdout


def test_same_table_as_local_backend(slurm_sweep, example, tmp_path):
    sid, _, _ = slurm_sweep
    folder, _ = example
    r = dsenv("sweep", str(folder / "sine_fit.ipynb"), *GRID, "--on", "local", "-j", "2", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    local = json.loads(dsenv("sweep", "collect", r.stdout.strip(), "--json").stdout)
    remote = json.loads(dsenv("sweep", "collect", sid, "--json").stdout)
    assert rmse_by_name(local) == rmse_by_name(remote)
    assert [r["parameters"] for r in local] == [r["parameters"] for r in remote]


def test_second_sweep_submits_nothing(slurm_sweep, example, registry):
    sid, out, _ = slurm_sweep
    folder, _ = example
    before = json.loads((out / ".dsenv" / "sweep.json").read_text())["submissions"]
    r = dsenv("sweep", str(folder / "sine_fit.ipynb"), *GRID, "--on", "slurm", "--cpus", "1", "--memory", "1g",
              "--registry", registry, "--out", str(out))
    assert r.returncode == 0 and "0 submitted" in r.stderr and "6 already done" in r.stderr
    assert json.loads((out / ".dsenv" / "sweep.json").read_text())["submissions"] == before


def test_cancel_mid_sweep_leaves_no_container(slurm, example, registry, tmp_path):
    folder, _ = example
    # 2 CPUs a task: one task per node runs, three wait in the queue; cancel meets both kinds
    r = dsenv("sweep", str(folder / "sine_fit.ipynb"), *GRID, "--on", "slurm", "--cpus", "2", "--registry", registry,
              "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    deadline = time.monotonic() + 60
    while not sweep_containers(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sweep_containers(sid), "no task container started"
    again = dsenv("sweep", str(folder / "sine_fit.ipynb"), *GRID, "--on", "slurm", "--cpus", "2",
                  "--registry", registry, "--out", str(tmp_path))  # while the first is queued or running: nothing submitted twice
    assert again.returncode == 0 and "0 submitted" in again.stderr and "6 still queued or running" in again.stderr
    c = dsenv("sweep", "cancel", sid)
    assert c.returncode == 0 and "cancelled job" in c.stderr
    deadline = time.monotonic() + 30
    while sweep_containers(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sweep_containers(sid) == []
    states = json.loads(dsenv("sweep", "status", sid, "--json").stdout)["tasks"]
    assert any(t["state"] == "CANCELLED" for t in states)
    retried = dsenv("sweep", "retry", sid, "0", "--wait")
    assert retried.returncode == 0, retried.stderr
    states = json.loads(dsenv("sweep", "status", sid, "--json").stdout)["tasks"]
    assert states[0]["state"] == "COMPLETED" and states[0]["exit_code"] == 0


def test_gpus_from_slurm_reach_the_device_request(slurm, example, registry, tmp_path):
    folder, _ = example
    r = dsenv("sweep", str(folder / "sine_fit.ipynb"), "-p", "n_points", "20", "--on", "slurm", "--gpus", "1",
              "--registry", registry, "--out", str(tmp_path), "--wait")
    log = "".join(p.read_text() for p in (tmp_path / ".dsenv" / "logs").glob("slurm-*.log"))
    assert '--gpus "device=0"' in log and "DSENV_GPUS=0" in log  # SLURM_JOB_GPUS -> docker's device request
    assert r.returncode == 1 and "could not select device driver" in log  # no NVIDIA runtime here
    assert sweep_containers(r.stdout.strip()) == []


@pytest.mark.parametrize("args,message", [
    (["--on", "slurm:nope"], "no Slurm partition named 'nope'"),
    (["--on", "slurm", "--cpus", "64"], "no node of partition debug has 64 CPUs"),
    (["--on", "slurm", "--gpus", "4"], "has 4 GPUs"),
])
def test_scheduler_refusals_are_one_line(slurm, example, registry, tmp_path, args, message):
    folder, _ = example
    r = dsenv("sweep", str(folder / "sine_fit.ipynb"), "-p", "n_points", "20", *args, "--registry", registry,
              "--out", str(tmp_path))
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 12 and len(lines) == 1 and message in lines[0] and "hint:" in lines[0], r.stderr


def test_unreachable_registry_is_one_line(slurm, example, tmp_path):
    folder, _ = example
    r = dsenv("sweep", str(folder / "sine_fit.ipynb"), "-p", "n_points", "20", "--on", "slurm",
              "--registry", "127.0.0.1:1", "--out", str(tmp_path))
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("[")]
    assert r.returncode == 12 and "cannot push the sweep's image to 127.0.0.1:1" in lines[-1], r.stderr
    assert "Traceback" not in r.stderr
