"""Browser fixtures: JupyterLab with dsenv's extension on 127.0.0.1 (a token, isolated settings) serving a uniquely
named copy of notebooks/, and Debian's Chromium driven by Playwright. Skipped, with the reason, where a part is
missing; every container and image the tests make is removed."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("DSENV_CHROMIUM", "/usr/bin/chromium")
SESSION = uuid.uuid4().hex[:6]


def _missing() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or .ci/setup.d/lab.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return "jupyterlab is not installed (pip install -e '.[test]')"
    if not (Path(sys.prefix) / "share/jupyter/labextensions/dsenv/package.json").is_file():
        return "the dsenv labextension is not built into this environment (run .ci/setup.d/lab.sh)"
    from dsenv import containers
    from dsenv.errors import DsenvError

    try:
        containers.ps()
    except DsenvError as e:
        return f"requires_docker: {e.one_line()}"
    return None


MISSING = _missing()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser" in str(item.fspath) and MISSING:
            item.add_marker(pytest.mark.skip(reason=MISSING))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab: its base URL, token, root folder and the example notebook's root-relative path."""

    def __init__(self, url: str, token: str, root: Path, notebook: str, process: subprocess.Popen,
                 gpus: Path) -> None:
        self.url, self.token, self.root, self.notebook, self.process = url, token, root, notebook, process
        self.gpus = gpus  # the server's GPU list (DSENV_GPU_DEVICES): tests rewrite it to change what NVML "sees"

    def set_gpus(self, devices: list[dict], driver: str = "580.95", cuda_driver: str = "13.0") -> None:
        """What the server's next GPU reading returns (written whole, then renamed into place)."""
        tmp = self.gpus.with_suffix(".tmp")
        tmp.write_text(json.dumps({"driver": driver, "cuda_driver": cuda_driver, "devices": devices}))
        tmp.replace(self.gpus)


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """JupyterLab with the extension, serving a copy of notebooks/ in a uniquely named folder."""
    root = tmp_path_factory.mktemp("lab-root")
    home = tmp_path_factory.mktemp("lab-home")
    folder = f"brw-{SESSION}"
    shutil.copytree(REPO / "notebooks", root / folder)
    token, port = uuid.uuid4().hex, _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "HOME": str(home), "DSENV_GPU_DEVICES": str(home / "gpus.json")}
    (home / "gpus.json").write_text('{"devices": []}')  # no GPU, until a test gives the server some
    notifications = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notifications.parent.mkdir(parents=True)
    notifications.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no news toast over the panel
    with open(home / "lab.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
             "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(url, token, process, home / "lab.log")
            yield Lab(url, token, root, f"{folder}/sine_fit.ipynb", process, home / "gpus.json")
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            _cleanup(folder)


def _wait_for(url: str, token: str, process: subprocess.Popen, log: Path) -> None:
    """Wait until the server answers on the extension's API (60 s at most)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            req = urllib.request.Request(f"{url}/dsenv/api/version", headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"JupyterLab did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def _cleanup(name: str) -> None:
    """Remove the containers and images of environment `name`."""
    from dsenv import api, containers

    for c in containers.ps():
        if c.env == name:
            containers.rm(c.name)
    for info in api.images():
        if info.labels.get("io.dsenv.name") == name:
            for tag in info.tags:
                subprocess.run(["docker", "image", "rm", "-f", tag], check=False, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless (no sandbox: tests run as root), driven by Playwright. Module-scoped: while
    Playwright's sync API is open its event loop counts as running in this thread, which breaks every later test
    that runs an asyncio loop of its own (jupyter_client, pytest-jupyter)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page with a window the size of a laptop screen."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    p = context.new_page()
    yield p
    context.close()


@pytest.fixture
def artifacts(tmp_path) -> Path:
    """Where screenshots go: the test's tmp folder (copied to tests/browser/artifacts/ by save_artifact)."""
    return tmp_path


def save_artifact(path: Path) -> Path:
    """Copy an artifact to tests/browser/artifacts/ (gitignored) so it outlives pytest's tmp folders."""
    ARTIFACTS.mkdir(exist_ok=True)
    return Path(shutil.copy(path, ARTIFACTS / path.name))
