"""One sweep task inside the image: runs papermill on the task's parameter set and writes the output notebook with
provenance and recorded values. Standalone (standard library, papermill, nbformat), copied into the sweep's folder
and run as `python /dsenv-sweep/.dsenv/runner.py` by every backend; dsenv itself is not installed in images.

Which task: $DSENV_TASK, else the index in the variable $DSENV_TASK_FROM names (SLURM_ARRAY_TASK_ID,
JOB_COMPLETION_INDEX), mapped through $DSENV_TASK_SUBSET (comma-separated task indices) when that is set.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

ROOT = os.environ.get("DSENV_SWEEP_DIR", "/dsenv-sweep")
META = os.path.join(ROOT, ".dsenv")
RECORD_MIME = "application/vnd.dsenv.record+json"
SCRAP_MIME = "application/scrapbook.scrap.json+json"


def utc(t: float) -> str:
    """UTC time as ISO 8601."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def write_json(path: str, data) -> None:
    """Write JSON through a temporary file and a rename."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=str)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def task_index(env=os.environ) -> int:
    """The index of the task this process runs."""
    if env.get("DSENV_TASK", "") != "":
        return int(env["DSENV_TASK"])
    raw = env.get(env.get("DSENV_TASK_FROM", ""), "")
    if raw == "":
        raise SystemExit("dsenv task: no task index (set DSENV_TASK or DSENV_TASK_FROM)")
    subset = [s for s in env.get("DSENV_TASK_SUBSET", "").split(",") if s]
    return int(subset[int(raw)]) if subset else int(raw)


def gpus_of(env=os.environ) -> list:
    """The GPUs this task was given: Slurm's indices (DSENV_GPUS) or the UUIDs dsenv's allocator chose."""
    given = env.get("DSENV_GPUS") or env.get("NVIDIA_VISIBLE_DEVICES", "")
    return [] if given in ("void", "none", "all", "") else [g for g in given.split(",") if g]


def records_of(nb) -> dict:
    """Values recorded with dsenv.record (or scrapbook's glue), the last one of a name winning."""
    found: dict = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            data = out.get("data") or {}
            for mime, key in ((RECORD_MIME, "value"), (SCRAP_MIME, "data")):
                item = data.get(mime)
                if isinstance(item, str):
                    try:
                        item = json.loads(item)
                    except ValueError:
                        continue
                if isinstance(item, dict) and "name" in item:
                    found[str(item["name"])] = item.get(key)
    return found


def main() -> int:
    """Run the task; its exit code is 0 when every cell ran, 1 when a cell raised, 2 when papermill could not run."""
    with open(os.path.join(META, "sweep.json"), encoding="utf-8") as f:
        sweep = json.load(f)
    index = task_index()
    task = next(t for t in [*sweep["tasks"], *sweep.get("retired", [])] if int(t["index"]) == index)
    node = os.environ.get("DSENV_NODE") or os.environ.get("SLURMD_NODENAME") or os.uname().nodename
    scheduler = {k: os.environ.get(v, "") for k, v in (
        ("job_id", "DSENV_JOB_ID"), ("array_job_id", "SLURM_ARRAY_JOB_ID"), ("array_task_id", "SLURM_ARRAY_TASK_ID"))}
    state_path = os.path.join(META, "state", f"{task['name']}.json")
    started = time.time()
    write_json(state_path, {"state": "RUNNING", "node": node, "started": utc(started), **scheduler})

    ipython = tempfile.mkdtemp(prefix="dsenv-ipython-")
    startup = os.path.join(ipython, "profile_default", "startup")
    os.makedirs(startup)
    with open(os.path.join(startup, "00-dsenv-seed.py"), "w") as f:
        f.write(sweep.get("seed_startup", ""))
    os.environ["IPYTHONDIR"] = ipython
    os.environ["DSENV_SEED"] = os.environ["PYTHONHASHSEED"] = str(sweep.get("seed", 0))
    pylib = os.path.join(META, "pylib")  # a tiny `dsenv` package: dsenv.record works in the kernel
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (pylib, os.environ.get("PYTHONPATH", "")) if p)

    workdir = sweep["workdir"]
    source = f"{workdir}/{sweep['rel']}"
    cwd = os.path.dirname(source)
    final = os.path.join(ROOT, f"{task['name']}.ipynb")
    tmp = os.path.join(META, "tmp", f"{task['name']}.{os.getpid()}.ipynb")
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    code, error = 0, ""
    import nbformat
    import papermill

    try:
        papermill.execute_notebook(source, tmp, parameters=task["parameters"], kernel_name=sweep.get("kernel", "python3"),
                                   cwd=cwd, execution_timeout=int(sweep.get("timeout", 600)), log_output=True,
                                   progress_bar=False)
    except papermill.PapermillExecutionError as e:
        code, error = 1, f"cell {e.cell_index} raised {e.ename}: {e.evalue}"
    except Exception as e:  # papermill could not run at all (kernel died, bad notebook): still leave a record
        code, error = 2, f"{type(e).__name__}: {e}"
    ended = time.time()
    image = sweep.get("image", {})
    provenance = {
        "image_id": image.get("id", ""), "image_tag": image.get("tag", ""), "image_ref": image.get("ref", ""),
        "repo_digests": image.get("repo_digests", []), "spec_sha256": image.get("spec_sha256", ""),
        "lock_sha256": image.get("lock_sha256", ""),
        "gpus": gpus_of(os.environ),
        "host": node, "dsenv_version": sweep.get("dsenv_version", ""), "kernel": sweep.get("kernel", "python3"),
        "started": utc(started), "ended": utc(ended), "seconds": round(ended - started, 3), "exit_code": code,
        "seed": sweep.get("seed", 0), "input": sweep.get("notebook", ""),
        "sweep": {"id": sweep["id"], "task": index, "name": task["name"], "backend": sweep.get("backend", ""),
                  "node": node, **scheduler},
    }
    if os.path.isfile(tmp):
        nb = nbformat.read(tmp, as_version=4)
        pm = nb.metadata.get("papermill", {})
        provenance["parameters"] = dict(pm.get("parameters") or task["parameters"])
        provenance["papermill_version"] = pm.get("version", "")
        if error:
            provenance["error"] = error
        meta = nb.metadata.setdefault("dsenv", {})
        meta["provenance"] = provenance
        meta["records"] = records_of(nb)
        nbformat.write(nb, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    elif not error:
        code, error = 2, "papermill wrote no output notebook"
    write_json(state_path, {"state": "COMPLETED" if code == 0 else "FAILED", "node": node, "started": utc(started),
                            "ended": utc(ended), "elapsed": round(ended - started, 3), "exit_code": code,
                            "error": error, **scheduler})
    if error:
        print(f"dsenv task {index} ({task['name']}): {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
