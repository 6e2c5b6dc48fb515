"""The Slurm backend: one `sbatch --array` per submission; each array task runs the sweep's image (by registry
digest) with `docker run --init`, Slurm's CPU, memory and GPU allocation passed on, and a trap that removes the
container through its cid file when Slurm cancels the task. Status from sacct where accounting exists, otherwise
scontrol/squeue; submission never waits (no `sbatch --wait`)."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from ...containers import WORKDIR
from ...errors import UsageError
from .. import state as st
from ..errors import NotEnoughResources, SchedulerMissing, SchedulerUnavailable, SubmitError, UnknownPartition
from ..state import MOUNT, Sweep, Task
from . import Backend, Resources

STATE_WORDS = {"CA": "CANCELLED", "CD": "COMPLETED", "F": "FAILED", "PD": "PENDING", "R": "RUNNING", "TO": "TIMEOUT"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise SchedulerMissing(f"{name} not found: this machine is not a Slurm submit host",
                               "run the sweep on a Slurm login node (slurm-client installed), or use --on local")
    return path


def _call(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise SchedulerUnavailable(f"{argv[0]} did not answer within {timeout:.0f} s",
                                   "is slurmctld running? try 'sinfo'") from e


def memory_mb(text: str) -> int:
    """'16g' / '512m' / '2G' / '1024' (MB) -> megabytes, as Slurm counts them."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise UsageError(f"--memory {text}: not a size", "write e.g. 16g or 512m")
    value, unit = float(m.group(1)), m.group(2) or "m"
    return max(1, int(value * {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}[unit]))


def compress(indices: list[int]) -> str:
    """[0,1,2,5,7,8] -> '0-2,5,7-8' (sbatch --array syntax)."""
    out: list[str] = []
    s = sorted(set(indices))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ",".join(out)


def expand_indices(text: str) -> list[int]:
    """'0-2,5,7-8%2' or '[0-2]' -> [0,1,2,5,7,8]."""
    text = text.strip().strip("[]").split("%")[0]
    out: list[int] = []
    for part in filter(None, text.split(",")):
        if "-" in part:
            a, b = part.split("-", 1)
            step = 1
            if ":" in b:
                b, st_ = b.split(":", 1)
                step = int(st_)
            out += list(range(int(a), int(b) + 1, step))
        elif part.isdigit():
            out.append(int(part))
    return out


def gpu_count(request: str | None) -> int:
    """--gpus for Slurm: a number of GPUs per task (UUIDs and 'all' mean nothing to a scheduler)."""
    if not request:
        return 0
    if not request.isdigit():
        raise UsageError(f"--gpus {request}: Slurm takes a number of GPUs per task", "write --gpus N")
    return int(request)


def render_script(sweep: Sweep, tasks: list[Task], resources: Resources, docker: str = "docker") -> str:
    """The sbatch script of one submission: #SBATCH lines for the array and each task's resources, then a
    `docker run --init` of the image by digest, cleaned up through its cid file when Slurm cancels the task."""
    q = shlex.quote
    logs = f"{sweep.out}/{st.META}/logs/slurm-%A_%a.log"
    lines = ["#!/bin/bash", f"#SBATCH --job-name=dsenv-{sweep.id}", f"#SBATCH --array={compress([t.index for t in tasks])}",
             f"#SBATCH --output={logs}", "#SBATCH --open-mode=append"]
    if resources.target:
        lines.append(f"#SBATCH --partition={resources.target}")
    if resources.cpus:
        lines.append(f"#SBATCH --cpus-per-task={max(1, int(round(resources.cpus)))}")
    if resources.memory:
        lines.append(f"#SBATCH --mem={memory_mb(resources.memory)}M")
    if gpu_count(resources.gpus):
        lines.append(f"#SBATCH --gres=gpu:{gpu_count(resources.gpus)}")
    if resources.time:
        lines.append(f"#SBATCH --time={resources.time}")
    lines.append(f"""# dsenv sweep {sweep.id}: {len(tasks)} task(s) of {sweep.notebook}
set -u
DOCKER=${{DSENV_DOCKER:-{q(docker)}}}
SWEEP_DIR={q(sweep.out)}
FOLDER={q(sweep.folder)}
IMAGE={q(sweep.image["ref"])}
task="${{SLURM_ARRAY_TASK_ID:?not an array task}}"
node="${{SLURMD_NODENAME:-$(hostname)}}"
mkdir -p "$SWEEP_DIR/{st.META}/cid"
cid="$SWEEP_DIR/{st.META}/cid/${{SLURM_ARRAY_JOB_ID}}_${{task}}.cid"
rm -f "$cid"
cleanup() {{  # a cancelled job must not leave its container running: remove it by the id docker wrote
  if [ -s "$cid" ]; then "$DOCKER" rm -f "$(cat "$cid")" >/dev/null 2>&1 || true; fi
  rm -f "$cid"
}}
trap 'cleanup; exit 143' TERM INT HUP
trap cleanup EXIT
args=(--init --rm --cidfile "$cid" --name "dsenv-sweep-{sweep.id}-${{task}}-${{SLURM_JOB_ID}}"
      --label io.dsenv.managed=1 --label io.dsenv.sweep={q(sweep.id)} --label "io.dsenv.task=$task"
      --user "$(id -u):$(id -g)" --shm-size 1g -w {WORKDIR}
      -v "$FOLDER:{WORKDIR}:rw" -v "$SWEEP_DIR:{MOUNT}:rw"
      -e DSENV_SWEEP_DIR={MOUNT} -e "DSENV_TASK=$task" -e "DSENV_NODE=$node" -e "DSENV_JOB_ID=${{SLURM_JOB_ID}}"
      -e "SLURM_ARRAY_JOB_ID=${{SLURM_ARRAY_JOB_ID}}" -e "SLURM_ARRAY_TASK_ID=$task" -e "SLURM_JOB_ID=${{SLURM_JOB_ID}}")
cpus="${{SLURM_CPUS_PER_TASK:-${{SLURM_CPUS_ON_NODE:-}}}}"
if [ -n "$cpus" ]; then args+=(--cpus "$cpus"); fi
if [ -n "${{SLURM_MEM_PER_NODE:-}}" ]; then args+=(--memory "${{SLURM_MEM_PER_NODE}}m")
elif [ -n "${{SLURM_MEM_PER_CPU:-}}" ]; then args+=(--memory "$(( SLURM_MEM_PER_CPU * ${{cpus:-1}} ))m"); fi
gpus="${{SLURM_JOB_GPUS:-${{SLURM_STEP_GPUS:-}}}}"
if [ -n "$gpus" ]; then args+=(--gpus "\\"device=$gpus\\"" -e "DSENV_GPUS=$gpus")
else args+=(-e NVIDIA_VISIBLE_DEVICES=void); fi
echo "dsenv: task $task on $node: $DOCKER run ${{args[*]}} $IMAGE" >&2
"$DOCKER" run "${{args[@]}}" "$IMAGE" python {MOUNT}/{st.META}/runner.py &
wait $!
""")
    return "\n".join(lines)


def parse_elapsed(text: str) -> float | None:
    """Slurm durations ('2:03', '01:02:03', '1-02:03:04') -> seconds."""
    text = text.strip()
    if not text or text in ("INVALID", "UNLIMITED", "N/A"):
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [float(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    h, m, s = parts[-3:]
    return days * 86400 + h * 3600 + m * 60 + s


def _exit(text: str) -> int | None:
    m = re.match(r"(\d+):(\d+)", text.strip())
    if not m:
        return None
    code, sig = int(m.group(1)), int(m.group(2))
    return code if not sig else 128 + sig


def parse_sacct(text: str) -> dict[tuple[str, int], dict[str, Any]]:
    """`sacct -n -P -X -o JobID,State,NodeList,Elapsed,ExitCode` -> (array job id, index) -> facts."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5 or "_" not in parts[0] or "." in parts[0]:
            continue
        job, _, idx = parts[0].partition("_")
        state = parts[1].split()[0] if parts[1].strip() else "UNKNOWN"
        for i in expand_indices(idx):
            out[(job, i)] = {"state": state, "node": "" if parts[2] in ("None assigned", "(null)") else parts[2],
                             "elapsed": parse_elapsed(parts[3]), "exit_code": _exit(parts[4]),
                             "job_id": f"{job}_{i}"}
    return out


def parse_scontrol(text: str) -> dict[tuple[str, int], dict[str, Any]]:
    """`scontrol show job -o JOB` (one line per array element; pending ones grouped) -> facts by (job, index)."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for line in text.splitlines():
        fields = dict(m.groups() for m in re.finditer(r"(\w[\w/:]*)=(\S*)", line))
        job, idx = fields.get("ArrayJobId"), fields.get("ArrayTaskId")
        if not job or idx is None:
            continue
        node = fields.get("NodeList", "")
        for i in expand_indices(idx):
            out[(job, i)] = {"state": fields.get("JobState", "UNKNOWN"), "node": "" if node == "(null)" else node,
                             "elapsed": parse_elapsed(fields.get("RunTime", "")),
                             "exit_code": _exit(fields.get("ExitCode", "")), "job_id": f"{job}_{i}",
                             "reason": "" if fields.get("Reason") in (None, "None") else fields["Reason"]}
    return out


def parse_squeue(text: str) -> dict[tuple[str, int], dict[str, Any]]:
    """`squeue -h -r -o %i|%T|%N|%M|%r` -> facts by (job, index) of queued and running array elements."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 4 or "_" not in parts[0]:
            continue
        job, _, idx = parts[0].partition("_")
        for i in expand_indices(idx):
            out[(job, i)] = {"state": STATE_WORDS.get(parts[1], parts[1]), "node": parts[2],
                             "elapsed": parse_elapsed(parts[3]), "exit_code": None, "job_id": f"{job}_{i}",
                             "reason": parts[4] if len(parts) > 4 and parts[4] != "None" else ""}
    return out


def parse_nodes(text: str) -> list[dict[str, Any]]:
    """`sinfo -h -N -o %R|%N|%c|%m|%G` -> nodes: partition, name, CPUs, memory (MB), GPUs."""
    nodes = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 5:
            continue
        gpus = 0
        for item in parts[4].split(","):
            m = re.match(r"gpu(?::[^:(]+)?:(\d+)", item)
            if m:
                gpus += int(m.group(1))
        mem = re.match(r"\d+", parts[3])
        nodes.append({"partition": parts[0], "node": parts[1], "cpus": int(parts[2]) if parts[2].isdigit() else 0,
                      "memory": int(mem.group(0)) if mem else 0, "gpus": gpus})
    return nodes


def check_fit(nodes: list[dict[str, Any]], resources: Resources, partitions: list[str], default: str | None) -> None:
    """UnknownPartition or NotEnoughResources when no node of the partition can hold one task."""
    part = resources.target or default
    if resources.target and resources.target not in partitions:
        raise UnknownPartition(f"no Slurm partition named {resources.target!r}",
                               f"partitions here: {', '.join(partitions) or '(none)'}; use --on slurm:NAME")
    pool = [n for n in nodes if part is None or n["partition"] == part]
    where = f"partition {part}" if part else "the cluster"
    if not pool:
        raise NotEnoughResources(f"{where} has no nodes", "use another partition with --on slurm:NAME")
    want = {"cpus": int(round(resources.cpus)) if resources.cpus else 0,
            "memory": memory_mb(resources.memory) if resources.memory else 0, "gpus": gpu_count(resources.gpus)}
    label = {"cpus": "CPUs", "memory": "MB of memory", "gpus": "GPUs"}
    for key, n in want.items():
        if n and not any(node[key] >= n for node in pool):
            best = max(node[key] for node in pool)
            raise NotEnoughResources(f"no node of {where} has {n} {label[key]} for one task (the most is {best})",
                                     f"ask for at most {best} {label[key]} per task, or choose another partition")
    if want["cpus"] or want["memory"] or want["gpus"]:
        if not any(all(node[k] >= n for k, n in want.items()) for node in pool):
            raise NotEnoughResources(f"no single node of {where} has {want['cpus']} CPUs, {want['memory']} MB and "
                                     f"{want['gpus']} GPUs together", "ask for less per task")


def submit_error(stderr: str) -> Exception:
    """sbatch's refusal as a dsenv error."""
    line = next((x for x in stderr.strip().splitlines() if x.strip()), "no message").replace("sbatch: error: ", "")
    low = line.lower()
    if "invalid partition" in low:
        return UnknownPartition(f"sbatch: {line}", "list partitions with 'sinfo'; use --on slurm:NAME")
    if any(w in low for w in ("node configuration is not available", "more processors requested", "memory specification",
                              "invalid generic resource", "gres", "requested node config")):
        return NotEnoughResources(f"sbatch: {line}", "ask for fewer CPUs, less memory or fewer GPUs per task")
    return SubmitError(f"sbatch refused the sweep: {line}", "read the message; the script is in the sweep's .dsenv folder")


class SlurmBackend(Backend):
    """One sbatch array per submission; tasks pull the image by digest from the registry."""

    name = "slurm"
    needs_registry = True

    def check(self, resources: Resources) -> None:
        """sbatch present, the controller answering, the partition known, one task fitting on one node."""
        _tool("sbatch")
        sinfo = _tool("sinfo")
        gpu_count(resources.gpus)
        r = _call([sinfo, "-h", "-N", "-o", "%R|%N|%c|%m|%G"])
        if r.returncode != 0:
            raise SchedulerUnavailable(f"sinfo failed: {(r.stderr or r.stdout).strip().splitlines()[-1:] or ['?']}"[:300],
                                       "is slurmctld running and SLURM_CONF right?")
        parts = _call([sinfo, "-h", "-o", "%P"]).stdout.split()
        default = next((p.rstrip("*") for p in parts if p.endswith("*")), None)
        check_fit(parse_nodes(r.stdout), resources, [p.rstrip("*") for p in parts], default)

    def submit(self, sweep: Sweep, tasks: list[Task], resources: Resources,
               on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Write the script beside the outputs and sbatch it (--parsable); the array job id."""
        sbatch = _tool("sbatch")
        script = sweep.meta / f"sbatch-{len(list(sweep.meta.glob('sbatch-*.sh')))}.sh"
        script.write_text(render_script(sweep, tasks, resources))
        r = _call([sbatch, "--parsable", str(script)])
        if r.returncode != 0:
            raise submit_error(r.stderr or r.stdout)
        job = r.stdout.strip().split(";")[0]
        if on_event:
            on_event(f"submitted array job {job} ({len(tasks)} task(s)) with {script}")
        return {"job_id": job, "script": str(script), "array": compress([t.index for t in tasks])}

    def _jobs(self, sweep: Sweep) -> dict[str, dict[int, str]]:
        return {str(s["job_id"]): {int(k): v for k, v in (s.get("tasks") or {}).items()}
                for s in sweep.submissions if s.get("job_id") and s.get("backend") == self.name}

    def status(self, sweep: Sweep) -> dict[str, dict[str, Any]]:
        """sacct where accounting exists, otherwise scontrol (recently finished jobs too), otherwise squeue."""
        jobs = self._jobs(sweep)
        if not jobs:
            return {}
        ids = ",".join(jobs)
        facts: dict[tuple[str, int], dict[str, Any]] = {}
        if shutil.which("sacct"):
            r = _call(["sacct", "-n", "-P", "-X", "-j", ids, "-o", "JobID,State,NodeList,Elapsed,ExitCode"])
            if r.returncode == 0:
                facts = parse_sacct(r.stdout)
        if not facts and shutil.which("scontrol"):
            for job in jobs:
                r = _call(["scontrol", "show", "job", "-o", job])
                if r.returncode == 0:
                    facts.update(parse_scontrol(r.stdout))
        if not facts and shutil.which("squeue"):
            r = _call(["squeue", "-h", "-r", "-j", ids, "-o", "%i|%T|%N|%M|%r"])
            if r.returncode == 0:
                facts = parse_squeue(r.stdout)
        view: dict[str, dict[str, Any]] = {}
        for job, mapping in jobs.items():  # later submissions override earlier ones
            for index, name in mapping.items():
                if (job, index) in facts:
                    view[name] = facts[(job, index)]
        return view

    def cancel(self, sweep: Sweep) -> list[str]:
        """scancel every array job of the sweep; each task's trap removes its container."""
        scancel = _tool("scancel")
        done = []
        for job in self._jobs(sweep):
            r = _call([scancel, job])
            if r.returncode == 0:
                done.append(f"job {job}")
        return done
