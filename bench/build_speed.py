#!/usr/bin/env python3
"""Build speed: dsenv against the hand-written-Dockerfile workflow, in one run, on the same example folder.

    python bench/build_speed.py [--folder notebooks] [--base IMAGE]

Scenarios, each timed as the wall time of the command a user types:
  cold_resolve  no image, no builder cache, no lock, empty uv caches | docker build --no-cache
  cold       the same with the lock beside the notebook (as committed) | docker build --no-cache
  first      the same, but uv's caches are warm (a new env on a machine that built others) | (= cold)
  edit       a notebook's markdown and code edited (imports same) | docker build (COPY . . invalidates pip install)
  unchanged  nothing changed                                      | docker build (every layer from cache)
  add        one package added to requirements.txt                | docker build (pip installs everything again)
The hand-written Dockerfile is the tutorial style: same base, `COPY . .`, then `pip install -r requirements.txt`
with the same top-level packages dsenv installs (the notebook's imports plus jupyterlab, ipykernel, papermill).
Prints a Markdown table with the ratios and the image sizes, and writes bench/results/build_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
ADDED = "tabulate"
HANDWRITTEN = """FROM {base}
COPY ca.crt /etc/ssl/certs/bench-ca.crt
ENV PIP_CERT=/etc/ssl/certs/bench-ca.crt
WORKDIR /app
COPY . .
RUN python3 -m venv /venv && /venv/bin/pip install -r requirements.txt
CMD ["/venv/bin/jupyter", "lab", "--ip=0.0.0.0"]
"""


def run(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout.strip()


def size(tag: str) -> int:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", tag])[1])


def edit_notebook(folder: Path, n: int) -> None:
    path = next(folder.glob("*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += f"\n\nEdit {n}."
    nb.cells.append(nbformat.v4.new_code_cell(f"print('edit {n}')"))
    nbformat.write(nb, path)


def remove_images(ref_prefix: str) -> None:
    out = run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", ref_prefix])[1]
    for tag in out.split():
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def bench_dsenv(folder: Path, uv_cache: Path, cli: str | None) -> dict:
    dsenv = [sys.executable, "-m", "dsenv.cli", "build"]
    env = {"UV_CACHE_DIR": str(uv_cache)}
    (folder / "dsenv.lock").unlink(missing_ok=True)
    r: dict = {}

    def empty_caches() -> None:  # uv's host cache and BuildKit's uv cache mount
        shutil.rmtree(uv_cache, ignore_errors=True)
        if cli:
            subprocess.run([cli, "builder", "prune", "-f", "--filter", "type=exec.cachemount"], capture_output=True,
                           env={**os.environ, "DOCKER_BUILDKIT": "1"})

    empty_caches()
    r["cold_resolve"], tag = run(dsenv + [str(folder), "--no-cache"], env)  # no lock yet: resolves first
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    empty_caches()
    r["cold"], tag = run(dsenv + [str(folder), "--no-cache"], env)  # the lock is there, as committed beside a notebook
    r["size_cold"] = size(tag)
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    r["first"], tag = run(dsenv + [str(folder), "--no-cache"], env)
    edit_notebook(folder, 1)
    r["edit"], tag2 = run(dsenv + [str(folder)], env)
    assert tag2 == tag, "a notebook edit changed the dsenv tag"
    r["unchanged"], _ = run(dsenv + [str(folder)], env)
    (folder / "requirements.txt").write_text(ADDED + "\n")
    r["add"], tag3 = run(dsenv + [str(folder)], env)
    r["size_add"] = size(tag3)
    r["tags"] = [tag, tag3]
    return r


def bench_handwritten(folder: Path, base: str, imports: list[str], cli: str, buildkit: bool) -> dict:
    (folder / "requirements.txt").write_text("\n".join(imports + ["jupyterlab", "ipykernel", "papermill"]) + "\n")
    (folder / "Dockerfile").write_text(HANDWRITTEN.format(base=base))
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    shutil.copy(bundle, folder / "ca.crt")
    tag = f"bench-handwritten-{uuid.uuid4().hex[:6]}:latest"
    docker = [cli, "build", "-q", "-t", tag, "."]
    env = {"DOCKER_BUILDKIT": "1" if buildkit else "0"}
    r: dict = {}
    r["cold"], _ = run(docker[:2] + ["--no-cache"] + docker[2:], env, folder)
    r["size_cold"] = size(tag)
    edit_notebook(folder, 1)
    r["edit"], _ = run(docker, env, folder)
    r["unchanged"], _ = run(docker, env, folder)
    with (folder / "requirements.txt").open("a") as f:
        f.write(ADDED + "\n")
    r["add"], _ = run(docker, env, folder)
    r["size_add"] = size(tag)
    r["tags"] = [tag]
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(REPO / "notebooks"))
    parser.add_argument("--base", default=None, help="base image for both (default: the one dsenv picks)")
    parser.add_argument("--keep", action="store_true", help="keep the images built")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from dsenv import api

    work = Path(tempfile.mkdtemp(prefix="dsenv-bench-"))
    name = f"bench-{uuid.uuid4().hex[:6]}"
    src = Path(args.folder)
    ours, theirs, theirs_bk = work / name, work / "handwritten", work / "handwritten-bk"
    for dst in (ours, theirs, theirs_bk):
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("dsenv.lock", "*.dsenv.lock", ".ipynb_checkpoints"))
    spec_plan = api.plan(ours)
    base = args.base or spec_plan.base
    imports = [r.requirement for r in spec_plan.spec.requirements]
    (ours / "dsenv.lock").unlink(missing_ok=True)
    try:
        from dsenv import engine

        cli = engine.buildkit_cli()
        d = bench_dsenv(ours, work / "uv-cache", cli)
        h = bench_handwritten(theirs, base, imports, cli or "docker", buildkit=False)
        hb = bench_handwritten(theirs_bk, base, imports, cli, buildkit=True) if cli else None
    finally:
        if not args.keep:
            remove_images(f"dsenv/{name}")
            for key in ("h", "hb"):
                for t in (locals().get(key) or {}).get("tags", []):
                    subprocess.run(["docker", "rmi", "-f", t], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    rows = [("cold build, no lock yet (resolves, then builds; empty uv caches, no image, no layer cache)", "cold_resolve"),
            ("cold build with the lock beside the notebook (empty uv caches, no image, no layer cache)", "cold"),
            ("first build of this environment (no image, no layer cache; uv caches warm from the cold build)", "first"),
            ("rebuild after a notebook edit", "edit"), ("rebuild, nothing changed", "unchanged"),
            (f"rebuild after adding one package ({ADDED})", "add")]
    print(f"\nBase image: {base}; packages: {', '.join(imports)} + jupyterlab, ipykernel, papermill\n")
    builder = "BuildKit" if cli else "classic builder"
    bk = hb or {k: float("nan") for k in ("cold", "edit", "unchanged", "add", "size_cold", "size_add")}
    for key in ("first", "cold_resolve"):  # pip keeps no useful cache here, and resolves as it installs
        h[key], bk[key] = h["cold"], bk["cold"]
    print(f"dsenv built with: {builder}\n")
    print("| scenario | dsenv (s) | hand-written, classic builder (s) | ratio | hand-written, BuildKit (s) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, key in rows:
        print(f"| {label} | {d[key]:.2f} | {h[key]:.2f} | {d[key] / h[key]:.2f}x | {bk[key]:.2f} | {d[key] / bk[key]:.2f}x |")
    for label, key in (("image size after cold build (MB)", "size_cold"), (f"image size after adding {ADDED} (MB)", "size_add")):
        print(f"| {label} | {d[key] / 1e6:.0f} | {h[key] / 1e6:.0f} | {d[key] / h[key]:.2f}x | {bk[key] / 1e6:.0f} | {d[key] / bk[key]:.2f}x |")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "build_speed.json").write_text(json.dumps({"base": base, "builder": builder, "dsenv": d,
                                                      "handwritten_classic": h, "handwritten_buildkit": hb}, indent=2))


if __name__ == "__main__":
    main()
