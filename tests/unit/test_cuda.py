"""Driver-aware CUDA capping over given driver versions (no GPU needed)."""
from __future__ import annotations

import pytest

from dsenv.cuda import cap_base, decide, host_cuda_version, parse_cuda, torch_constraint
from dsenv.errors import SpecError, UsageError


def _never():
    raise AssertionError("the driver must not be queried")


@pytest.mark.parametrize("cap, expected", [
    ((13, 0), None), ((13, 2), None), ((12, 9), "torch<2.11"), ((12, 8), "torch<2.11"), ((12, 6), "torch<2.8"),
    ((12, 4), "torch<2.7"), ((12, 5), "torch<2.7"), ((12, 2), "torch<2.5"), ((12, 1), "torch<2.5"),
    ((11, 8), "torch<2.1"),
])
def test_torch_is_kept_at_a_build_the_cap_runs(cap, expected):
    assert torch_constraint(cap) == expected


def test_a_cap_older_than_every_torch_build_is_a_clear_error():
    with pytest.raises(SpecError, match="no PyPI build of torch 2.x runs with CUDA 11.4"):
        torch_constraint((11, 4))


@pytest.mark.parametrize("base, cap, expected", [
    ("nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04", (12, 4), "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"),
    ("nvidia/cuda:13.0.2-base-ubuntu24.04", (12, 7), "nvidia/cuda:12.6.3-base-ubuntu24.04"),
    ("registry.local:5000/nvidia/cuda:12.9-runtime", (12, 2), "registry.local:5000/nvidia/cuda:12.2.2-runtime"),
    ("nvidia/cuda:12.1.1-runtime-ubuntu22.04", (12, 4), "nvidia/cuda:12.1.1-runtime-ubuntu22.04"),
    ("python:3.11-slim", (11, 0), "python:3.11-slim"),
])
def test_cuda_bases_newer_than_the_cap_become_the_newest_release_that_fits(base, cap, expected):
    assert cap_base(base, cap)[0] == expected


def test_environments_without_torch_or_a_cuda_base_are_not_looked_at():
    assert decide(["numpy", "pandas"], None, host_cuda=_never).constraints == ()
    assert decide(["numpy"], "python:3.11-slim", configured="12.4", host_cuda=_never).notes == ()
    with pytest.raises(UsageError, match="--cuda twelve"):
        decide(["numpy"], None, option="twelve", host_cuda=_never)


def test_the_host_driver_caps_torch_and_the_plan_says_why():
    choice = decide(["torch", "torchvision"], None, host_cuda=lambda: "12.4")
    assert choice.constraints == ("torch<2.7",) and choice.cap == "12.4"
    assert "capped at 12.4 by this host's driver (CUDA 12.4): torch<2.7" in choice.notes[0]


def test_option_beats_config_beats_driver():
    assert decide(["torch"], None, option="12.6", configured="12.1", host_cuda=_never).constraints == ("torch<2.8",)
    assert decide(["torch"], None, configured="12.1", host_cuda=_never).origin.startswith("the config")
    assert decide(["Torch"], None, host_cuda=lambda: "13.0").constraints == ()


def test_no_driver_and_no_option_means_no_cap_said_plainly():
    choice = decide(["torch"], None, host_cuda=lambda: None)
    assert choice.constraints == () and choice.cap is None
    assert "no NVIDIA driver on this host and no --cuda" in choice.notes[0]


def test_a_cuda_base_is_capped_with_a_note():
    choice = decide([], "nvidia/cuda:12.8.1-runtime-ubuntu22.04", option="12.4", host_cuda=_never)
    assert choice.base == "nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    assert "base nvidia/cuda:12.8.1-runtime-ubuntu22.04 needs CUDA 12.8" in choice.notes[0]


@pytest.mark.parametrize("text", ["12", "twelve", "12.x", ""])
def test_bad_cuda_versions_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_cuda(text)


def test_host_cuda_version_reads_the_gpu_module(tmp_path, monkeypatch):
    devices = tmp_path / "devices.json"
    devices.write_text('{"driver": "550.54", "cuda_driver": "12.4", "devices": []}')
    monkeypatch.setenv("DSENV_GPU_DEVICES", str(devices))
    assert host_cuda_version() == "12.4"
