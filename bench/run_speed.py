#!/usr/bin/env python3
"""Time from `dsenv run` to JupyterLab answering, against `docker run` of the hand-written-Dockerfile image.

    python bench/run_speed.py [--folder notebooks] [--runs 5]

Both images hold the same packages (the example's imports + jupyterlab, ipykernel, papermill) on the same base;
both containers publish Jupyter on 127.0.0.1 with a token; the clock stops at the first 200 from /api/status.
The hand-written image is the build_speed benchmark's (COPY . . + pip install -r requirements.txt). Reports the
median and best of each and their ratio.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def wait_ready(port: int, token: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(req, timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    sys.exit("bench: Jupyter did not answer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_dsenv(folder: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dsenv.cli", "run", str(folder), "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"bench: dsenv run failed: {out.stderr}")
    import json

    result = json.loads(out.stdout)
    subprocess.run(["docker", "rm", "-f", result["name"]], capture_output=True)
    return seconds


def time_docker(tag: str) -> float:
    token, port = secrets.token_hex(24), free_port()
    start = time.perf_counter()
    cid = subprocess.run(["docker", "run", "-d", "-p", f"127.0.0.1:{port}:8888", "-e", f"JUPYTER_TOKEN={token}", tag,
                          "/venv/bin/jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--allow-root"],
                         capture_output=True, text=True, check=True).stdout.strip()
    wait_ready(port, token)
    seconds = time.perf_counter() - start
    subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(REPO / "notebooks"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from build_speed import HANDWRITTEN

    from dsenv import api

    work = Path(tempfile.mkdtemp(prefix="dsenv-runbench-"))
    try:
        ours = work / "runbench"
        shutil.copytree(args.folder, ours)
        built = api.build(ours)
        plan = built.plan
        theirs = work / "handwritten"
        shutil.copytree(args.folder, theirs)
        reqs = [r.requirement for r in plan.spec.requirements] + ["jupyterlab", "ipykernel", "papermill"]
        (theirs / "requirements.txt").write_text("\n".join(reqs) + "\n")
        (theirs / "Dockerfile").write_text(HANDWRITTEN.format(base=plan.base))
        bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
        shutil.copy(bundle, theirs / "ca.crt")
        tag = "dsenv-runbench-handwritten:latest"
        subprocess.run(["docker", "build", "-q", "-t", tag, str(theirs)], check=True, capture_output=True,
                       env={**os.environ, "DOCKER_BUILDKIT": "0"})
        time_dsenv(ours), time_docker(tag)  # warm both once (page cache), not counted
        ds = [time_dsenv(ours) for _ in range(args.runs)]
        dk = [time_docker(tag) for _ in range(args.runs)]
    finally:
        subprocess.run(["docker", "rmi", "-f", "dsenv-runbench-handwritten:latest"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.runs} runs each, image already built\n")
    print("| from the command to Jupyter answering | median (s) | best (s) |")
    print("|---|---:|---:|")
    print(f"| dsenv run FOLDER | {statistics.median(ds):.2f} | {min(ds):.2f} |")
    print(f"| docker run (hand-written image) | {statistics.median(dk):.2f} | {min(dk):.2f} |")
    print(f"| ratio | {statistics.median(ds) / statistics.median(dk):.2f}x | {min(ds) / min(dk):.2f}x |")


if __name__ == "__main__":
    main()
