#!/usr/bin/env python3
"""Wall time of a 6-point sweep of the example notebook: Slurm (a throwaway 3-node cluster on this machine, image
pushed to a registry and run by digest) against the local backend with one and two workers, in the same run.

    python bench/sweep_speed.py [--runs 2] [--json OUT.json]

Each measurement is the `dsenv sweep ... --force` command a user types, from start to every output written (`--wait`
for Slurm, which polls the scheduler; it never blocks in sbatch). The image is built before the clock starts; the
first Slurm submission includes the push (reported apart). Needs root, Docker, docker-registry, slurm-wlm and munge
(bash .ci/setup.d/slurm.sh). All nodes share this machine's cores, so Slurm's gain here is bounded by them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.integration.conftest import _start_registry as start_registry  # noqa: E402

GRID = ["-p", "noise", "0.1", "0.3", "0.5", "-p", "n_points", "50", "100"]


def sweep(notebook: Path, out: Path, *args: str) -> float:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "dsenv.cli", "sweep", str(notebook), *GRID, "--out", str(out), "--force",
                        *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"bench: sweep {' '.join(args)} failed: {r.stderr.strip()[-600:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    from tests.slurm.cluster import SlurmCluster, missing

    why = missing()
    if why:
        sys.exit(f"bench: no Slurm cluster possible here: {why}")
    from dsenv import api, engine

    work = Path(tempfile.mkdtemp(prefix="dsenv-sweep-bench-"))
    cache = work / "cache"
    os.environ["XDG_CACHE_HOME"] = str(cache)  # the sweep index stays in the scratch folder
    folder = work / "notebooks"
    shutil.copytree(REPO / "notebooks", folder)
    built = api.build(folder)
    notebook = folder / "sine_fit.ipynb"
    (work / "registry").mkdir()
    registry, reg_proc = start_registry(work / "registry")
    cluster = SlurmCluster(work / "slurm")
    results: dict[str, list[float]] = {"local -j 1": [], "local -j 2": [], "slurm, 3 nodes": []}
    try:
        t0 = time.perf_counter()
        cluster.start()
        up = time.perf_counter() - t0
        os.environ.update(cluster.env)
        first = sweep(notebook, work / "slurm-out", "--on", "slurm", "--cpus", "1", "--memory", "1g",
                      "--registry", registry, "--wait")
        for _ in range(a.runs):
            results["local -j 1"].append(sweep(notebook, work / "local1", "--on", "local", "-j", "1"))
            results["local -j 2"].append(sweep(notebook, work / "local2", "--on", "local", "-j", "2"))
            results["slurm, 3 nodes"].append(sweep(notebook, work / "slurm-out", "--on", "slurm", "--cpus", "1",
                                                   "--memory", "1g", "--registry", registry, "--wait"))
    finally:
        cluster.stop()
        reg_proc.terminate()
        reg_proc.wait(timeout=10)
        for info in engine.list_images(filters={"io.dsenv.name": folder.name}):
            for tag in info.tags:
                if tag.startswith(registry):
                    engine.remove_image(tag)
        shutil.rmtree(work, ignore_errors=True)
    report = {"machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}", "image": built.tag,
              "points": 6, "cluster_start_s": round(up, 2), "slurm_first_with_push_s": round(first, 2),
              "median_s": {k: round(statistics.median(v), 2) for k, v in results.items()},
              "runs_s": {k: [round(x, 2) for x in v] for k, v in results.items()}}
    base = report["median_s"]["local -j 1"]
    print(f"6-point sweep of notebooks/sine_fit.ipynb on {report['machine']} (median of {a.runs}):")
    for k, v in report["median_s"].items():
        print(f"  {k:<16} {v:6.2f} s   x{base / v:.2f} against local -j 1")
    print(f"  (Slurm cluster up in {up:.2f} s; first Slurm sweep including the push: {first:.2f} s)")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
