"""Integration fixtures: the real Docker daemon, a base image, and images built once per session and removed after."""
from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dsenv import api
from dsenv.errors import DsenvError

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "scipy-2018-sklearn"
SESSION = uuid.uuid4().hex[:6]


def _daemon_problem() -> str | None:
    from dsenv import engine

    try:
        engine.server_info()
    except DsenvError as e:
        return e.one_line()
    return None


_PROBLEM = _daemon_problem()
requires_docker = pytest.mark.skipif(_PROBLEM is not None, reason=f"requires_docker: {_PROBLEM}")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(requires_docker)


def dsenv(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (the front door a user has)."""
    import os

    return subprocess.run([sys.executable, "-m", "dsenv.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=900)


@pytest.fixture(scope="session")
def made_names():
    """Environment names created by this session; their images are removed at the end."""
    names: set[str] = set()
    yield names
    if _PROBLEM is None:
        from dsenv import engine

        for name in names:
            for info in engine.list_images(filters={"io.dsenv.name": name}):
                for tag in info.tags:
                    engine.remove_image(tag)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("envs")


def new_env(workdir: Path, made_names: set, source: Path, stem: str) -> Path:
    """Copy a folder of notebooks to a fresh, uniquely named folder (its image repository name is unique too)."""
    folder = workdir / f"it-{SESSION}-{stem}"
    shutil.copytree(source, folder)
    made_names.add(folder.name)
    return folder


@pytest.fixture(scope="session")
def example(workdir, made_names):
    """The bundled example notebook's environment, built once."""
    folder = new_env(workdir, made_names, REPO / "notebooks", "example")
    result = api.build(folder)
    return folder, result


@pytest.fixture(scope="session")
def corpus(workdir, made_names):
    """A copy of the scipy-2018-sklearn corpus (read-only original)."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    return new_env(workdir, made_names, CORPUS, "sklearn")


def image_run(tag: str, script: str) -> str:
    """Run a Python script in a throwaway container of the image and return its output (asserting success)."""
    from dsenv import engine

    code, out = engine.run_once(tag, ["python", "-c", script])
    assert code == 0, out
    return out


def _start_registry(root: Path, auth: str = ""):
    """Debian's docker-registry on a free 127.0.0.1 port; returns (address, process)."""
    import os
    import shutil as sh
    import socket
    import time

    binary = sh.which("docker-registry")
    if not binary:
        pytest.skip("requires docker-registry (apt-get install docker-registry)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = root / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n{auth}")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"})
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    return f"127.0.0.1:{port}", proc


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A real registry (Debian's docker-registry) on a free 127.0.0.1 port for this session."""
    address, proc = _start_registry(tmp_path_factory.mktemp("registry"))
    yield address
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory):
    """A registry that demands a password (htpasswd, bcrypt) nobody here has given to Docker."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt

            digest = crypt.crypt("secret", crypt.mksalt(crypt.METHOD_BLOWFISH))
        except (ImportError, AttributeError, OSError):
            pytest.skip("no bcrypt available to make an htpasswd file")
    root = tmp_path_factory.mktemp("auth-registry")
    (root / "htpasswd").write_text(f"alice:{digest}\n")
    address, proc = _start_registry(root, f"auth:\n  htpasswd:\n    realm: dsenv-test\n    path: {root}/htpasswd\n")
    yield address
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def cleanup_containers():
    """Names of containers a test started; removed afterwards whatever happened."""
    names: list[str] = []
    yield names
    from dsenv import engine

    for name in names:
        engine.remove(name)
