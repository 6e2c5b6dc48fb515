"""The remote-host fixture: a network namespace with its own dockerd and sshd (see remotehost.py), the example
environment built here and loaded there through ssh, torn down at the end (processes by pid, namespace, veth)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from . import remotehost

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items):
    why = remotehost.problem()
    if why:
        for item in items:
            if "tests/remote" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=f"remote host tests: {why}"))


@pytest.fixture(scope="session")
def remote():
    """A running test remote; its client environment (ssh config, dsenv state and config dirs) in remote.env()."""
    host = remotehost.start(uuid.uuid4().hex[:6])
    try:
        yield host
    finally:
        remotehost.stop(host)


@pytest.fixture(scope="session")
def example_image():
    """The bundled example's environment, built (or found up to date) on this machine's daemon; its tag."""
    from dsenv import api, engine

    with engine.use_host(""):
        return api.build(REPO / "notebooks").tag


@pytest.fixture(scope="session")
def remote_with_image(remote, example_image):
    """The remote, with the example's image loaded there (it has no network to build it)."""
    remote.load_image(example_image)
    return remote


@pytest.fixture
def folder(tmp_path):
    """A copy of the example notebooks (named notebooks/, so its image tag is the one loaded on the remote)."""
    target = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.out.ipynb"))
    return target


def dsenv(remote, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, with the remote's client environment."""
    full = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    full.update({**remote.env(), **(env or {})})
    return subprocess.run([sys.executable, "-m", "dsenv.cli", *args], check=False, capture_output=True, text=True, env=full,
                          timeout=timeout)
