"""A throwaway Slurm cluster on this machine for tests and benchmarks: Debian's slurm-wlm and munge, munged,
slurmctld and three `slurmd -N nX` (Debian builds Slurm with multiple-slurmd support), every file in one temporary
folder, fake GPUs for GRES as character devices, all processes stopped by their PIDs at the end."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

NODES = ("n1", "n2", "n3")


def missing() -> str | None:
    """Why no cluster can start here, or None."""
    for tool in ("slurmctld", "slurmd", "munged", "sbatch", "sinfo", "mknod"):
        if not shutil.which(tool):
            return f"{tool} is not installed (bash .ci/setup.d/slurm.sh installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    return None


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class SlurmCluster:
    """munged + slurmctld + three slurmd in `root`; `env` holds SLURM_CONF for clients; `stop()` ends them."""

    def __init__(self, root: Path, cpus: int = 2, memory_mb: int = 4000, gpus_per_node: int = 1) -> None:
        self.root = Path(root)
        self.cpus, self.memory_mb, self.gpus = cpus, memory_mb, gpus_per_node
        self.procs: list[subprocess.Popen] = []
        self.pids: list[int] = []
        self.conf = self.root / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}

    def _write(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "dev", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        ctl, *node_ports = _free_ports(1 + len(NODES))
        gres = []
        for node in NODES:
            for i in range(self.gpus):
                dev = r / "dev" / node / f"nvidia{i}"
                dev.parent.mkdir(parents=True, exist_ok=True)
                if not dev.exists():
                    subprocess.run(["mknod", str(dev), "c", "1", "3"], check=True)  # like /dev/null
                gres.append(f"NodeName={node} Name=gpu File={dev}")
        (r / "gres.conf").write_text("\n".join(gres) + "\n")
        gres_node = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        nodes = "\n".join(f"NodeName={n} NodeHostname=localhost NodeAddr=127.0.0.1 Port={p} CPUs={self.cpus} "
                          f"RealMemory={self.memory_mb}{gres_node} State=UNKNOWN" for n, p in zip(NODES, node_ports))
        self.conf.write_text(f"""ClusterName=dsenvtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctl}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
DefMemPerCPU=1000
KillWait=10
InactiveLimit=0
GresTypes=gpu
{nodes}
PartitionName=debug Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP
""")

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen:
        p = subprocess.Popen(argv, stdout=open(self.root / "log" / log, "w"), stderr=subprocess.STDOUT,
                             env={**os.environ, **self.env}, start_new_session=True)
        self.procs.append(p)
        return p

    def start(self, timeout: float = 30) -> SlurmCluster:
        """Start munged, slurmctld and the slurmds in the foreground (-D), then wait until every node is idle."""
        self._write()
        r = self.root
        key = r / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        os.chmod(r / "munge", 0o700)
        self._spawn(["munged", "-F", "--force", f"--socket={r}/munge/munge.socket", f"--key-file={key}",
                     f"--pid-file={r}/munge/munged.pid", f"--log-file={r}/log/munged.log",
                     f"--seed-file={r}/munge/munge.seed"], "munged.out")
        self._wait(lambda: (r / "munge" / "munge.socket").exists(), 10, "munged")
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld.out")
        for node in NODES:
            self._spawn(["slurmd", "-D", "-N", node, "-f", str(self.conf)], f"slurmd.{node}.out")
        self._wait(self._all_idle, timeout, "the nodes to be idle")
        return self

    def _all_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False).stdout.split()
        states = dict(zip(out[::2], out[1::2]))
        return all(states.get(n) == "idle" for n in NODES)

    def _wait(self, ok, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited with {p.returncode} while waiting for {what}: "
                                       f"{self.log_tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}: {self.log_tail()}")

    def log_tail(self) -> str:
        """The last lines of every log, for failure messages."""
        parts = []
        for f in sorted((self.root / "log").glob("*")):
            lines = f.read_text(errors="replace").strip().splitlines()[-3:]
            if lines:
                parts.append(f"{f.name}: " + " | ".join(lines))
        return " // ".join(parts)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=30,
                              env={**os.environ, **self.env})

    def stop(self) -> None:
        """Cancel every job, then end the daemons by PID (slurmds, slurmctld, munged), waiting for each."""
        self.run("scancel", "--full", "-u", "root", check=False) if shutil.which("scancel") else None
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
