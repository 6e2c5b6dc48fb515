"""Concurrency against the real daemon: two builds of one environment make one image; twenty runs at once get
twenty names and ports; twenty GPU allocations at once, under the real host lock, get twenty different GPUs."""
from __future__ import annotations

import json
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dsenv import containers, engine, gpu

from .conftest import dsenv

REPO = Path(__file__).resolve().parents[2]


def test_two_builds_of_one_environment_at_once_make_one_image(tmp_path, made_names):
    folder = tmp_path / f"rel-twice-{uuid.uuid4().hex[:6]}"
    shutil.copytree(REPO / "notebooks", folder)
    (folder / "requirements.txt").write_text("tabulate\n")
    made_names.add(folder.name)
    assert dsenv("lock", str(folder)).returncode == 0
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: dsenv("build", str(folder), "--json"), range(2)))
    for out in outs:
        assert out.returncode == 0, out.stderr
    done = [json.loads(o.stdout.strip().splitlines()[-1]) for o in outs]
    assert done[0]["tag"] == done[1]["tag"] and done[0]["image_id"] == done[1]["image_id"]
    assert sorted(d["built"] for d in done) == [False, True]
    assert len(engine.list_images(filters={"io.dsenv.name": folder.name})) == 1


def test_twenty_runs_at_once_get_distinct_names_and_ports(example, cleanup_containers):
    _, built = example
    with ThreadPoolExecutor(20) as pool:
        outs = list(pool.map(lambda _: dsenv("run", "--image", built.tag, "--json", "--timeout", "300"), range(20)))
    results = [json.loads(o.stdout) for o in outs if o.returncode == 0]
    cleanup_containers.extend(r["name"] for r in results)
    assert len(results) == 20, [o.stderr for o in outs if o.returncode]
    assert len({r["name"] for r in results}) == 20
    assert len({r["url"].split("/lab")[0] for r in results}) == 20


def test_twenty_gpu_allocations_at_once_never_share_a_gpu(example, tmp_path, monkeypatch):
    _, built = example
    devices = [{"index": i, "uuid": f"GPU-{i:08d}-0000-0000-0000-{uuid.uuid4().hex[:12]}", "name": "NVIDIA H100",
                "memory_total": 80 * 2**30, "memory_used": i * 2**20, "utilization": 0} for i in range(24)]
    (tmp_path / "devices.json").write_text(json.dumps({"driver": "580", "cuda_driver": "13.0", "devices": devices}))
    monkeypatch.setenv("DSENV_GPU_DEVICES", str(tmp_path / "devices.json"))
    tag = uuid.uuid4().hex[:6]

    def allocate(i: int) -> tuple[str, list[str]]:
        with gpu.host_lock():
            uuids = containers.choose_gpus("1")
            spec = engine.ContainerSpec(image=built.tag, name=f"dsenv-rel-gpu-{tag}-{i}", command=["true"],
                                        environment=containers.gpu_environment(uuids), gpu_ids=uuids,
                                        labels={"io.dsenv.managed": "1", "io.dsenv.gpus": ",".join(uuids)})
            return engine.create(spec), uuids

    with ThreadPoolExecutor(20) as pool:
        made = list(pool.map(allocate, range(20)))
    try:
        chosen = [u for _, uuids in made for u in uuids]
        assert len(chosen) == 20 and len(set(chosen)) == 20
        holders, _ = containers.dsenv_gpu_holders()
        assert set(chosen) <= set(holders)
    finally:
        for cid, _ in made:
            engine.remove(cid)
