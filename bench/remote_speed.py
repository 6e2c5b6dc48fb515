"""Time from `dsenv run` to the JupyterLab URL answering: on a remote host over SSH (the image already there) against
the same run on this machine's daemon. The remote is the test one (tests/remote/remotehost.py: a network namespace
with its own dockerd and sshd), so this needs root. Usage: python bench/remote_speed.py [--repeat N]"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.remote import remotehost  # noqa: E402


def _dsenv(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dsenv.cli", *args], check=False, capture_output=True, text=True, env=env,
                          timeout=600)


def _timed_run(env: dict[str, str], folder: Path, host: list[str]) -> tuple[float, float, str]:
    """(seconds until `dsenv run` printed the URL, seconds until the URL answered 200, container name)."""
    started = time.monotonic()
    result = _dsenv(env, "run", str(folder), *host, "--json")
    printed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"dsenv run failed: {result.stderr.strip()}")
    out = json.loads(result.stdout)
    while True:
        try:
            with urllib.request.urlopen(out["url"], timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.05)
    return printed, time.monotonic() - started, out["name"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    why = remotehost.problem()
    if why:
        raise SystemExit(f"cannot make the test remote: {why}")
    base_env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    with tempfile.TemporaryDirectory(prefix="dsenv-bench-") as tmp:
        folder = Path(tmp) / "notebooks"
        shutil.copytree(REPO / "notebooks", folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.out.ipynb"))
        built = _dsenv(base_env, "build", str(folder), "--json")
        tag = json.loads(built.stdout.strip().splitlines()[-1])["tag"]
        host = remotehost.start(f"b{os.getpid()}")
        try:
            t = time.monotonic()
            host.load_image(tag)
            load = time.monotonic() - t
            env = {**base_env, **host.env()}
            results: dict[str, list[tuple[float, float]]] = {"local": [], "remote": []}
            for i in range(args.repeat + 1):  # the first remote round also sends the base image: reported apart
                for where, flags in (("local", []), ("remote", ["--host", host.url])):
                    printed, answered, name = _timed_run(env, folder, flags)
                    _dsenv(env, "rm", *flags, name)
                    if i == 0:
                        print(f"first {where} run (warm-up{', base image sent' if where == 'remote' else ''}): "
                              f"URL printed {printed:.2f} s, answering {answered:.2f} s")
                    else:
                        results[where].append((printed, answered))
            print(f"image {tag} loaded on the remote over ssh in {load:.1f} s")
            for where, flags in (("local", []), ("remote", ["--host", host.url])):
                times = []
                for _ in range(args.repeat):
                    t = time.monotonic()
                    _dsenv(env, "ps", *flags)
                    times.append(time.monotonic() - t)
                print(f"{where:>6}: dsenv ps, median {statistics.median(times):.2f} s")
            for where, runs in results.items():
                answered = [a for _, a in runs]
                print(f"{where:>6}: run -> URL answering, median {statistics.median(answered):.2f} s "
                      f"(min {min(answered):.2f}, max {max(answered):.2f}, n={len(answered)})")
        finally:
            remotehost.stop(host)


if __name__ == "__main__":
    main()
