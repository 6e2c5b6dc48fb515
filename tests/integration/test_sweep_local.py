"""Sweeps on the local backend against the real Docker daemon: the bundled example notebook over a 6-point grid with
two workers, provenance and recorded values in every output, collect's table, a re-run that runs nothing, a failed
task retried alone, and the Kubernetes manifest of the same sweep validated against the schema (no Kubernetes
server can run here: schema validation only)."""
from __future__ import annotations

import json
from pathlib import Path

from dsenv import engine

from .conftest import dsenv

GRID = ["-p", "noise", "0.1", "0.3", "0.5", "-p", "n_points", "50", "100"]


def leftover_containers(sweep_id: str) -> list[str]:
    return [c.name for c in engine.list_managed(all_states=True) if c.name.startswith(f"dsenv-sweep-{sweep_id}")]


def outputs(out: Path) -> list[Path]:
    return sorted(out.glob("sine_fit-*.ipynb"))


def test_local_sweep_six_points_collect_and_skip(example, tmp_path):
    folder, built = example
    out = tmp_path / "local"
    r = dsenv("sweep", str(folder / "sine_fit.ipynb"), *GRID, "--on", "local", "-j", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    assert "6 submitted to local" in r.stderr
    files = outputs(out)
    assert len(files) == 6
    provs = [json.loads(f.read_text())["metadata"]["dsenv"]["provenance"] for f in files]
    assert {p["image_id"] for p in provs} == {built.image_id}
    assert all(p["exit_code"] == 0 and p["sweep"]["id"] == sid and p["sweep"]["backend"] == "local" for p in provs)
    assert sorted((p["parameters"]["noise"], p["parameters"]["n_points"]) for p in provs) == \
        sorted((n, k) for n in (0.1, 0.3, 0.5) for k in (50, 100))
    r = dsenv("sweep", "collect", sid, "--json")
    rows = json.loads(r.stdout)
    assert len(rows) == 6 and all(isinstance(row["records"]["rmse"], float) for row in rows)
    assert all(row["provenance"]["state"] == "COMPLETED" for row in rows)
    csv_lines = dsenv("sweep", "collect", sid, "--csv").stdout.splitlines()
    assert csv_lines[0].startswith("task,name,noise,n_points,rmse,state") and len(csv_lines) == 7
    status = dsenv("sweep", "status", sid)
    assert status.returncode == 0 and "6 completed" in status.stdout
    again = dsenv("sweep", str(folder / "sine_fit.ipynb"), *GRID, "--on", "local", "-j", "2", "--out", str(out))
    assert again.returncode == 0 and "0 submitted" in again.stderr and "6 already done" in again.stderr
    assert [f.stat().st_mtime for f in outputs(out)] == [f.stat().st_mtime for f in files]
    assert leftover_containers(sid) == []


def test_local_failed_task_is_marked_and_retried_alone(example, tmp_path):
    folder, _ = example
    out = tmp_path / "failing"
    r = dsenv("sweep", str(folder / "sine_fit.ipynb"), "-p", "n_points", "0", "30", "--out", str(out))
    assert r.returncode == 1 and "1 task(s) did not complete" in r.stderr
    sid = r.stdout.strip()
    status = json.loads(dsenv("sweep", "status", sid, "--json").stdout)["tasks"]
    assert [t["state"] for t in status] == ["FAILED", "COMPLETED"] and status[0]["exit_code"] == 1
    failed = Path(status[0]["output"])
    prov = json.loads(failed.read_text())["metadata"]["dsenv"]["provenance"]
    assert prov["exit_code"] == 1 and "raised" in prov["error"]  # the output is kept, the failing cell named
    good = Path(status[1]["output"]).stat().st_mtime
    retried = dsenv("sweep", "retry", sid)
    assert retried.returncode == 0 and "resubmitted 1 task(s): 0" in retried.stderr
    assert Path(status[1]["output"]).stat().st_mtime == good
    assert leftover_containers(sid) == []
    one = ["sweep", str(folder / "sine_fit.ipynb"), "-p", "n_points", "30", "--out", str(out)]
    skipped = dsenv(*one)
    assert skipped.returncode == 0 and "0 submitted" in skipped.stderr and "1 already done" in skipped.stderr
    forced = dsenv(*one, "--force")  # the same output, same image: redone all the same
    assert forced.returncode == 0 and "1 submitted" in forced.stderr, forced.stderr
    assert Path(status[1]["output"]).stat().st_mtime > good
    assert leftover_containers(forced.stdout.strip()) == []


def test_k8s_indexed_job_for_the_same_sweep_validates(example, tmp_path, registry):
    folder, built = example
    out = tmp_path / "k8s"
    r = dsenv("sweep", str(folder / "sine_fit.ipynb"), *GRID, "--on", "k8s", "--gpus", "1", "--cpus", "1",
              "--memory", "1g", "--registry", registry, "--out", str(out), "--json", env={"KUBECONFIG": "/nonexistent"})
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["submission"]["applied"] is False  # no Kubernetes server here: validated and written only
    job = json.loads(Path(result["submission"]["manifest"]).read_text())
    from dsenv.sweep.backends.k8s import validate

    validate(job)
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 6
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == result["image"]["ref"] and container["image"].startswith(f"{registry}/")
    assert "@sha256:" in container["image"] and container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_local_cancel_from_another_process(example, tmp_path):
    import subprocess
    import sys
    import time

    folder, _ = example
    out = tmp_path / "cancelled"
    proc = subprocess.Popen([sys.executable, "-m", "dsenv.cli", "sweep", str(folder / "sine_fit.ipynb"), *GRID,
                             "-j", "2", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                c.name.startswith("dsenv-sweep-sine_fit-") and c.status == "running"
                for c in engine.list_managed(all_states=False)):
            time.sleep(0.2)
        c = dsenv("sweep", "cancel", str(out))  # the output folder names the sweep too
        assert c.returncode == 0 and "the tasks still queued" in c.stderr, c.stderr
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and "did not complete" in err
    sid = json.loads((out / ".dsenv" / "sweep.json").read_text())["id"]
    assert leftover_containers(sid) == []
    states = [t["state"] for t in json.loads(dsenv("sweep", "status", sid, "--json").stdout)["tasks"]]
    assert "CANCELLED" in states and "RUNNING" not in states and len(outputs(out)) < 6
