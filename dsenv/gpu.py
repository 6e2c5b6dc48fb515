"""GPUs: discovery through NVML (the only importer of pynvml), a pure allocation function, and a host-wide lock.

Runs where only the standard library and nvidia-ml-py are installed (a bare GPU host): `python -m dsenv.gpu`.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import GpuError

LOCK_PATH = Path(os.environ.get("DSENV_GPU_LOCK", "/tmp/dsenv-gpu.lock"))


@dataclass(frozen=True)
class GpuProcess:
    """A compute process on a GPU: host pid, memory, and the container it runs in when that can be told."""

    pid: int
    used_memory: int | None = None
    container: str | None = None


@dataclass(frozen=True)
class Gpu:
    """One allocatable device: a whole GPU, or a MIG device (with its parent's UUID)."""

    index: int
    uuid: str
    name: str
    memory_total: int
    memory_used: int
    utilization: int | None = None
    temperature: int | None = None
    mig_mode: bool | None = None
    parent: str | None = None
    processes: tuple[GpuProcess, ...] = ()

    @property
    def memory_free(self) -> int:
        """Bytes not in use."""
        return self.memory_total - self.memory_used


@dataclass
class HostGpus:
    """What NVML says of this host: driver version, CUDA driver version, devices."""

    driver: str
    cuda_driver: str
    devices: list[Gpu] = field(default_factory=list)

    def to_json(self) -> dict:
        """Plain data for --json."""
        return {"driver": self.driver, "cuda_driver": self.cuda_driver,
                "devices": [{**asdict(d), "memory_free": d.memory_free} for d in self.devices]}


def container_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The Docker container id a host pid runs in, from /proc/<pid>/cgroup (None when it is not in one)."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    m = re.search(r"(?:docker[-/]|/docker/)([0-9a-f]{64})", text)
    return m.group(1) if m else None


def _nvml():
    try:
        import pynvml
    except ImportError as e:
        raise GpuError("no NVML here (the nvidia-ml-py package is not installed)",
                       "pip install nvidia-ml-py on a host with an NVIDIA driver, or run without --gpus") from e
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise GpuError(f"no NVIDIA GPU here (NVML: {e})", "run without --gpus, or on a host with an NVIDIA driver") from e
    return pynvml


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def discover() -> HostGpus:
    """The GPUs of this host (MIG devices listed in place of their parent when MIG is on). DSENV_GPU_DEVICES may
    name a JSON file of devices to use instead (tests on hosts without a GPU)."""
    injected = os.environ.get("DSENV_GPU_DEVICES")
    if injected:
        data = json.loads(Path(injected).read_text())
        devices = [Gpu(**{**d, "processes": tuple(GpuProcess(**p) for p in d.get("processes", []))})
                   for d in data["devices"]]
        return HostGpus(data.get("driver", "injected"), data.get("cuda_driver", ""), devices)
    nv = _nvml()
    try:
        cuda = nv.nvmlSystemGetCudaDriverVersion_v2()
        host = HostGpus(_text(nv.nvmlSystemGetDriverVersion()), f"{cuda // 1000}.{cuda % 1000 // 10}")
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            host.devices.extend(_describe(nv, h, i))
        return host
    finally:
        nv.nvmlShutdown()


def _describe(nv, handle, index: int) -> list[Gpu]:
    def opt(fn, *args):
        try:
            return fn(*args)
        except nv.NVMLError:
            return None

    mem = nv.nvmlDeviceGetMemoryInfo(handle)
    util = opt(nv.nvmlDeviceGetUtilizationRates, handle)
    mig = opt(nv.nvmlDeviceGetMigMode, handle)
    mig_on = bool(mig and mig[0])
    procs = tuple(GpuProcess(p.pid, getattr(p, "usedGpuMemory", None), container_of(p.pid))
                  for p in (opt(nv.nvmlDeviceGetComputeRunningProcesses, handle) or []))
    gpu = Gpu(index, _text(nv.nvmlDeviceGetUUID(handle)), _text(nv.nvmlDeviceGetName(handle)), int(mem.total),
              int(mem.used), util.gpu if util else None,
              opt(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU), mig_on if mig else None, None, procs)
    if not mig_on:
        return [gpu]
    out = []
    for k in range(opt(nv.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
        m = opt(nv.nvmlDeviceGetMigDeviceHandleByIndex, handle, k)
        if m is None:
            continue
        mm = nv.nvmlDeviceGetMemoryInfo(m)
        out.append(Gpu(index, _text(nv.nvmlDeviceGetUUID(m)), f"{gpu.name} MIG {k}", int(mm.total), int(mm.used),
                       None, gpu.temperature, True, gpu.uuid, ()))
    return out


def holders_of(devices: list[Gpu], dsenv_holders: dict[str, list[str]],
               dsenv_ids: set[str] | frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Who holds each device: dsenv containers (from the engine's labels) and compute processes outside them
    (a process in another container is named by that container's id, one on the host by its pid)."""
    held: dict[str, list[str]] = {d.uuid: list(dsenv_holders.get(d.uuid, [])) for d in devices}
    for d in devices:
        for p in d.processes:
            if p.container and p.container in dsenv_ids:
                continue
            held[d.uuid].append(f"container {p.container[:12]}" if p.container else f"host pid {p.pid}")
    return held


def allocate(devices: list[Gpu], holders: dict[str, list[str]], request: str, share: bool = False) -> list[str]:
    """Pick devices for a request ('N', 'all', or UUIDs separated by commas): a pure function. Ranking: not held,
    then most free memory, then lowest utilisation. Held devices are used only with share=True."""
    if not devices:
        raise GpuError("no GPU on this host", "run without --gpus")
    by_uuid = {d.uuid: d for d in devices}
    usable = [d for d in devices if not d.mig_mode or d.parent]  # a MIG-enabled GPU is used through its MIG devices
    request = request.strip()
    if request == "all":
        chosen = usable
    elif request.isdigit():
        n = int(request)
        if n < 1:
            raise GpuError(f"--gpus {request}: ask for at least one GPU", "omit --gpus for a CPU-only run")
        ranked = sorted(usable, key=lambda d: (bool(holders.get(d.uuid)), -d.memory_free, d.utilization or 0, d.index))
        chosen = [d for d in ranked if share or not holders.get(d.uuid)][:n]
        if len(chosen) < n:
            busy = "; ".join(f"{d.uuid} held by {', '.join(holders[d.uuid])}" for d in usable if holders.get(d.uuid))
            raise GpuError(f"asked for {n} GPU(s), {len(chosen)} free of {len(usable)}" + (f": {busy}" if busy else ""),
                           "stop a container holding one, wait, or pass --share-gpu")
        return [d.uuid for d in chosen]
    else:
        wanted = [u.strip() for u in request.split(",") if u.strip()]
        unknown = [u for u in wanted if u not in by_uuid]
        if unknown:
            raise GpuError(f"unknown GPU {', '.join(unknown)}", f"known: {', '.join(by_uuid)} ('dsenv gpus' lists them)")
        chosen = [by_uuid[u] for u in wanted]
        whole_mig = [d.uuid for d in chosen if d.mig_mode and not d.parent]
        if whole_mig:
            raise GpuError(f"{', '.join(whole_mig)} has MIG enabled", "address its MIG- devices instead")
    if not share:
        busy = [f"{d.uuid} held by {', '.join(holders[d.uuid])}" for d in chosen if holders.get(d.uuid)]
        if busy:
            raise GpuError(f"GPU already in use: {'; '.join(busy)}", "pass --share-gpu to share it, or choose another")
    return [d.uuid for d in chosen]


@contextlib.contextmanager
def host_lock(path: Path | None = None) -> Iterator[None]:
    """A host-wide exclusive lock held while GPUs are chosen and the container is created."""
    from .locks import file_lock

    with file_lock(path or LOCK_PATH):
        yield


def main() -> None:  # pragma: no cover - for a bare GPU host: python -m dsenv.gpu [N]
    """Print this host's GPUs as JSON, and an allocation of N (default 1) from them."""
    import sys

    host = discover()
    print(json.dumps(host.to_json(), indent=2))
    n = sys.argv[1] if len(sys.argv) > 1 else "1"
    holders = holders_of(host.devices, {})
    print(json.dumps({"allocate": n, "chosen": allocate(host.devices, holders, n)}))


if __name__ == "__main__":  # pragma: no cover
    main()
