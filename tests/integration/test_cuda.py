"""Driver-aware CUDA against the real resolver: torch is locked at a build the (injected) host driver runs."""
from __future__ import annotations

import json

import nbformat

from .conftest import dsenv


def _torch_env(tmp_path):
    (tmp_path / "requirements.txt").write_text("torch\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import torch\ntorch.ones(3)")]
    nbformat.write(nb, tmp_path / "train.ipynb")
    return tmp_path


def _plan(folder, *args, env=None) -> dict:
    out = dsenv("plan", str(folder), "--json", *args, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_host_driver_caps_torch_and_cuda_flag_overrides_it(tmp_path):
    (tmp_path / "env").mkdir()
    folder = _torch_env(tmp_path / "env")
    devices = tmp_path / "devices.json"
    devices.write_text(json.dumps({"driver": "550.54.15", "cuda_driver": "12.4", "devices": []}))
    by_driver = _plan(folder, env={"DSENV_GPU_DEVICES": str(devices)})
    packages = by_driver["lock"]["packages"]
    assert packages["torch"].startswith("2.6.") and packages["nvidia-cuda-runtime-cu12"].startswith("12.4.")
    assert any("capped at 12.4 by this host's driver" in n and "torch<2.7" in n for n in by_driver["notes"])
    by_flag = _plan(folder, "--cuda", "12.1", env={"DSENV_GPU_DEVICES": str(devices)})
    assert by_flag["lock"]["packages"]["torch"].startswith("2.4.")
    assert by_flag["tag"] != by_driver["tag"]


def test_lock_records_the_cap_and_stays_current_until_it_changes(tmp_path):
    folder = _torch_env(tmp_path)
    assert dsenv("lock", str(folder), "--cuda", "12.4").returncode == 0
    text = (folder / "dsenv.lock").read_text()
    assert "# Constrained for this host's CUDA: torch<2.7" in text and "torch==2.6." in text
    again = dsenv("lock", str(folder), "--cuda", "12.5")  # same constraint: nothing to do
    assert "is up to date" in again.stdout, again.stderr
    refused = dsenv("lock", str(folder), "--cuda", "11.4")
    assert refused.returncode == 4 and "no PyPI build of torch 2.x runs with CUDA 11.4" in refused.stderr
    assert "Traceback" not in refused.stderr
