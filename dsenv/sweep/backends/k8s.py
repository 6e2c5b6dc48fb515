"""The Kubernetes backend: an Indexed Job (one completion index per parameter set, `nvidia.com/gpu` limits, the image
by registry digest), validated against the Kubernetes schema (kubernetes-validate) and applied with kubectl when a
context exists; otherwise the manifest is written beside the outputs for `kubectl apply -f`.

The notebook folder and the output folder are mounted from the node (hostPath, at the same paths as here): the
cluster's nodes must see them, as on a single-node cluster or with a shared filesystem mounted at the same place."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from ...containers import WORKDIR
from ..errors import ManifestInvalid, SchedulerMissing, SubmitError
from .. import state as st
from ..state import MOUNT, Sweep, Task
from . import Backend, Resources
from .slurm import gpu_count, memory_mb

K8S_VERSION = "1.30"


def job_name(sweep: Sweep, n: int = 0) -> str:
    """A DNS-1123 name for the n-th Job of a sweep (at most 63 characters)."""
    base = re.sub(r"[^a-z0-9-]+", "-", f"dsenv-{sweep.id}".lower()).strip("-")[:55]
    return f"{base}-{n}"


def render_job(sweep: Sweep, tasks: list[Task], resources: Resources, n: int = 0) -> dict[str, Any]:
    """The Indexed Job for these tasks: completion index i runs tasks[i] (DSENV_TASK_SUBSET maps it)."""
    labels = {"app.kubernetes.io/managed-by": "dsenv", "io.dsenv.sweep": re.sub(r"[^A-Za-z0-9_.-]", "-", sweep.id)[:63]}
    limits: dict[str, str] = {}
    if resources.cpus:
        limits["cpu"] = f"{resources.cpus:g}"
    if resources.memory:
        limits["memory"] = f"{memory_mb(resources.memory)}Mi"
    gpus = gpu_count(resources.gpus)
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    env = [{"name": "DSENV_SWEEP_DIR", "value": MOUNT},
           {"name": "DSENV_TASK_FROM", "value": "JOB_COMPLETION_INDEX"},
           {"name": "DSENV_TASK_SUBSET", "value": ",".join(str(t.index) for t in tasks)},
           {"name": "DSENV_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
           {"name": "DSENV_JOB_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    if not gpus:
        env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"})
    container: dict[str, Any] = {
        "name": "task", "image": sweep.image["ref"], "command": ["python", f"{MOUNT}/{st.META}/runner.py"],
        "workingDir": WORKDIR, "env": env,
        "volumeMounts": [{"name": "work", "mountPath": WORKDIR}, {"name": "out", "mountPath": MOUNT}],
    }
    if limits:
        container["resources"] = {"limits": limits, "requests": dict(limits)}
    spec: dict[str, Any] = {
        "completionMode": "Indexed", "completions": len(tasks), "parallelism": max(1, min(resources.jobs or len(tasks),
                                                                                            len(tasks))),
        "backoffLimit": 0, "ttlSecondsAfterFinished": 86400,
        "template": {"metadata": {"labels": labels}, "spec": {
            "restartPolicy": "Never", "containers": [container],
            "volumes": [{"name": "work", "hostPath": {"path": sweep.folder, "type": "Directory"}},
                        {"name": "out", "hostPath": {"path": sweep.out, "type": "Directory"}}]}},
    }
    if resources.time:
        spec["activeDeadlineSeconds"] = int(_seconds(resources.time))
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(sweep, n), "labels": labels,
                         "annotations": {"io.dsenv.notebook": sweep.notebook, "io.dsenv.image": sweep.image["ref"]}},
            "spec": spec}


def _seconds(text: str) -> float:
    from .slurm import parse_elapsed

    value = parse_elapsed(text)
    return value if value else 0


def validate(manifest: dict[str, Any], version: str = K8S_VERSION) -> None:
    """Validate a manifest against the Kubernetes schema of `version` (strict: unknown fields are errors)."""
    try:
        import kubernetes_validate
    except ImportError as e:
        raise SchedulerMissing("kubernetes-validate is not installed", "pip install 'dsenv[k8s]'") from e
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in getattr(e, "path", []) or [])
        raise ManifestInvalid(f"the {manifest.get('kind')} manifest is invalid at {path or '(top)'}: {e.message}"[:300],
                              "this is a dsenv bug: report it with the manifest") from e


PHASES = {"Pending": "PENDING", "Running": "RUNNING", "Succeeded": "COMPLETED", "Failed": "FAILED"}


def parse_pods(text: str) -> dict[int, dict[str, Any]]:
    """`kubectl get pods -o json` of an Indexed Job -> completion index -> state, node, elapsed, exit code (the
    newest pod of an index wins)."""
    from datetime import datetime

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    out: dict[int, dict[str, Any]] = {}
    pods = sorted(json.loads(text).get("items", []), key=lambda p: p["metadata"].get("creationTimestamp", ""))
    for pod in pods:
        meta = pod.get("metadata", {})
        index = (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
        if index is None:
            continue
        status = pod.get("status", {})
        term = next((c.get("state", {}).get("terminated") for c in status.get("containerStatuses", [])
                     if c.get("state", {}).get("terminated")), None)
        start, end = when(status.get("startTime")), when((term or {}).get("finishedAt"))
        out[int(index)] = {"state": PHASES.get(status.get("phase", ""), "UNKNOWN"),
                           "node": pod.get("spec", {}).get("nodeName", ""),
                           "elapsed": (end - start).total_seconds() if start and end else None,
                           "exit_code": (term or {}).get("exitCode")}
    return out


def kube_context() -> str | None:
    """kubectl's current context, or None (no kubectl, no config)."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    r = subprocess.run([kubectl, "config", "current-context"], capture_output=True, text=True, timeout=30)
    return r.stdout.strip() or None if r.returncode == 0 else None


class K8sBackend(Backend):
    """Renders, validates and (with a kubectl context) applies one Indexed Job per submission."""

    name = "k8s"
    needs_registry = True

    def check(self, resources: Resources) -> None:
        """GPUs as a number; kubectl present when a context is named."""
        gpu_count(resources.gpus)
        if resources.target and not shutil.which("kubectl"):
            raise SchedulerMissing("kubectl not found, but a context was named (--on k8s:CONTEXT)",
                                   "install kubectl, or use --on k8s to only write the validated manifest")

    def submit(self, sweep: Sweep, tasks: list[Task], resources: Resources,
               on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Write <out>/.dsenv/job-N.json (validated); apply it with kubectl when a context exists."""
        n = len(list(sweep.meta.glob("job-*.json")))
        manifest = render_job(sweep, tasks, resources, n)
        validate(manifest)
        path = sweep.meta / f"job-{n}.json"
        path.write_text(json.dumps(manifest, indent=2))
        context = resources.target or kube_context()
        record: dict[str, Any] = {"job_id": manifest["metadata"]["name"], "manifest": str(path), "applied": False}
        if context is None:
            if on_event:
                on_event(f"no kubectl context: wrote {path} (validated); apply it with 'kubectl apply -f {path}'")
            return record
        r = subprocess.run(["kubectl", "--context", context, "apply", "-f", str(path)], capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise SubmitError(f"kubectl apply failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"[:300],
                              f"the validated manifest is {path}")
        record.update(applied=True, context=context)
        if on_event:
            on_event(f"applied {manifest['metadata']['name']} in context {context}")
        return record

    def status(self, sweep: Sweep) -> dict[str, dict[str, Any]]:
        """The pods of the sweep's applied Jobs (kubectl get pods), by completion index."""
        view: dict[str, dict[str, Any]] = {}
        if not shutil.which("kubectl"):
            return view
        for sub in sweep.submissions:
            if not sub.get("applied"):
                continue
            r = subprocess.run(["kubectl", "--context", sub.get("context", ""), "get", "pods", "-l",
                                f"job-name={sub['job_id']}", "-o", "json"], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                continue
            names = list((sub.get("tasks") or {}).values())
            for index, facts in parse_pods(r.stdout).items():
                if index < len(names):
                    view[names[index]] = {**facts, "job_id": f"{sub['job_id']}/{index}"}
        return view

    def cancel(self, sweep: Sweep) -> list[str]:
        """Delete the sweep's Jobs (their pods go with them)."""
        done = []
        for sub in sweep.submissions:
            if sub.get("applied") and shutil.which("kubectl"):
                r = subprocess.run(["kubectl", "--context", sub.get("context", ""), "delete", "job", sub["job_id"],
                                    "--ignore-not-found"], capture_output=True, text=True, timeout=120)
                if r.returncode == 0:
                    done.append(f"job {sub['job_id']}")
        return done
