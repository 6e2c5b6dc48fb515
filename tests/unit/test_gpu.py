"""GPU allocation over injected device lists: ranking, MIG, all, UUIDs, errors, sharing, and the host-wide lock."""
from __future__ import annotations

import json
import multiprocessing
import time

import pytest

from dsenv import gpu
from dsenv.errors import GpuError
from dsenv.gpu import Gpu, GpuProcess

GiB = 2**30


def dev(i, free_gib=80, util=0, mig=False, parent=None, uuid=None, procs=()):
    return Gpu(index=i, uuid=uuid or f"GPU-{i:08d}-0000-0000-0000-000000000000", name="NVIDIA H100",
               memory_total=80 * GiB, memory_used=(80 - free_gib) * GiB, utilization=util, mig_mode=mig,
               parent=parent, processes=tuple(procs))


def test_one_gpu_goes_to_the_free_one_with_most_free_memory_then_lowest_utilisation():
    devices = [dev(0, free_gib=40), dev(1, free_gib=70, util=50), dev(2, free_gib=70, util=5), dev(3, free_gib=79)]
    assert gpu.allocate(devices, {}, "1") == [devices[3].uuid]
    held = {devices[3].uuid: ["dsenv-a"]}
    assert gpu.allocate(devices, held, "1") == [devices[2].uuid]
    assert gpu.allocate(devices, held, "2") == [devices[2].uuid, devices[1].uuid]


def test_not_enough_free_gpus_names_who_holds_them():
    devices = [dev(0), dev(1)]
    held = {devices[0].uuid: ["dsenv-train-1"], devices[1].uuid: ["host pid 4242"]}
    with pytest.raises(GpuError) as e:
        gpu.allocate(devices, held, "1")
    assert "dsenv-train-1" in e.value.message and "host pid 4242" in e.value.message
    assert "--share-gpu" in e.value.hint


def test_sharing_allows_held_gpus_still_preferring_free_ones():
    devices = [dev(0, free_gib=79), dev(1, free_gib=10)]
    held = {devices[0].uuid: ["dsenv-a"]}
    assert gpu.allocate(devices, held, "1", share=True) == [devices[1].uuid]
    assert gpu.allocate(devices, held, "2", share=True) == [devices[1].uuid, devices[0].uuid]


def test_explicit_uuids_unknown_and_held():
    devices = [dev(0), dev(1)]
    assert gpu.allocate(devices, {}, f"{devices[1].uuid}") == [devices[1].uuid]
    with pytest.raises(GpuError, match="unknown GPU GPU-nope"):
        gpu.allocate(devices, {}, "GPU-nope")
    with pytest.raises(GpuError, match="already in use"):
        gpu.allocate(devices, {devices[0].uuid: ["dsenv-a"]}, devices[0].uuid)
    assert gpu.allocate(devices, {devices[0].uuid: ["dsenv-a"]}, devices[0].uuid, share=True) == [devices[0].uuid]


def test_all_takes_every_device_and_refuses_held_ones_without_share():
    devices = [dev(0), dev(1), dev(2)]
    assert gpu.allocate(devices, {}, "all") == [d.uuid for d in devices]
    with pytest.raises(GpuError):
        gpu.allocate(devices, {devices[2].uuid: ["dsenv-x"]}, "all")


def test_mig_devices_are_the_units_of_a_mig_enabled_gpu():
    parent = dev(0, mig=True)
    migs = [dev(0, free_gib=10, mig=True, parent=parent.uuid, uuid=f"MIG-aaaa000{k}-0000-0000-0000-000000000000")
            for k in range(2)]
    devices = [parent, *migs, dev(1)]
    assert gpu.allocate(devices, {}, "3") == [devices[3].uuid, migs[0].uuid, migs[1].uuid]
    assert gpu.allocate(devices, {}, migs[1].uuid) == [migs[1].uuid]
    with pytest.raises(GpuError, match="MIG enabled"):
        gpu.allocate(devices, {}, parent.uuid)
    with pytest.raises(GpuError, match="3 free of 3"):
        gpu.allocate(devices, {}, "4")


def test_processes_outside_dsenv_count_against_a_gpu():
    devices = [dev(0, procs=[GpuProcess(pid=99, used_memory=GiB)]),
               dev(1, procs=[GpuProcess(pid=7, container="c" * 64)]), dev(2)]
    held = gpu.holders_of(devices, {}, dsenv_ids={"c" * 64})
    assert held[devices[0].uuid] == ["host pid 99"] and held[devices[1].uuid] == [] and held[devices[2].uuid] == []
    held_outside = gpu.holders_of(devices, {})
    assert held_outside[devices[1].uuid] == [f"container {'c' * 12}"]


def test_no_devices_is_a_clear_error():
    with pytest.raises(GpuError, match="no GPU"):
        gpu.allocate([], {}, "1")


def test_container_of_reads_the_cgroup_file(tmp_path):
    cid = "ab" * 32
    (tmp_path / "123").mkdir()
    (tmp_path / "123" / "cgroup").write_text(f"0::/system.slice/docker-{cid}.scope\n")
    (tmp_path / "456").mkdir()
    (tmp_path / "456" / "cgroup").write_text("0::/user.slice/session-1.scope\n")
    assert gpu.container_of(123, proc=tmp_path) == cid
    assert gpu.container_of(456, proc=tmp_path) is None
    assert gpu.container_of(789, proc=tmp_path) is None


def test_injected_device_list(tmp_path, monkeypatch):
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"driver": "580", "cuda_driver": "13.0", "devices": [
        {"index": 0, "uuid": "GPU-x", "name": "H100", "memory_total": 10, "memory_used": 1}]}))
    monkeypatch.setenv("DSENV_GPU_DEVICES", str(path))
    host = gpu.discover()
    assert host.cuda_driver == "13.0" and host.devices[0].memory_free == 9


def _worker(lock: str, registry: str, devices_json: str, out: multiprocessing.Queue) -> None:
    devices = [Gpu(**d) for d in json.loads(devices_json)]
    with gpu.host_lock(__import__("pathlib").Path(lock)):
        with open(registry) as f:
            holders = json.load(f)
        try:
            chosen = gpu.allocate(devices, holders, "1")
        except GpuError as e:
            out.put(("refused", e.message))
            return
        time.sleep(0.05)  # the container is being created: another process must not pick this GPU meanwhile
        holders[chosen[0]] = [f"pid {multiprocessing.current_process().pid}"]
        with open(registry, "w") as f:
            json.dump(holders, f)
    out.put(("got", chosen[0]))


def test_eight_processes_four_gpus_under_the_real_file_lock(tmp_path):
    devices = [dev(i) for i in range(4)]
    registry = tmp_path / "holders.json"
    registry.write_text("{}")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    payload = json.dumps([{k: v for k, v in d.__dict__.items() if k != "processes"} for d in devices])
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "gpu.lock"), str(registry), payload, queue)) for _ in range(8)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    got = [r[1] for r in results if r[0] == "got"]
    refused = [r for r in results if r[0] == "refused"]
    assert sorted(got) == sorted(d.uuid for d in devices)
    assert len(refused) == 4 and all("0 free of 4" in r[1] for r in refused)
