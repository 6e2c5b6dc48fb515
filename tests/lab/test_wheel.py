"""A plain (non-editable) install of dsenv's wheel: the wheel carries the prebuilt labextension and the config file
that enables the server extension, and in a new virtual environment with JupyterLab both show as enabled with
nothing else done. Builds the wheel from this checkout with uv (its build requirements from the package index)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "dsenv/labserver/labextension/static/style.js"
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")

pytestmark = [
    pytest.mark.skipif(not BUILT.is_file(), reason="the labextension is not built (run .ci/setup.d/lab.sh)"),
    pytest.mark.skipif(UV is None, reason="uv is not installed (pip install -e .)"),
]


def _run(*cmd: str, cwd: Path | None = None, env: dict | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # jupyter colours its list whatever NO_COLOR says


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(UV, "build", "--wheel", "--out-dir", str(out), str(REPO))
    (found,) = out.glob("dsenv-*.whl")
    return found


def test_wheel_carries_the_prebuilt_labextension_and_the_server_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/")[0] for n in names if ".data/" in n)
    lab = f"{data}/data/share/jupyter/labextensions/dsenv"
    assert {f"{lab}/package.json", f"{lab}/install.json", f"{lab}/static/style.js"} <= names
    assert any(re.fullmatch(rf"{re.escape(lab)}/static/remoteEntry\.[0-9a-f]+\.js", n) for n in names)
    assert f"{data}/data/etc/jupyter/jupyter_server_config.d/dsenv.json" in names
    assert not any("node_modules" in n or n.endswith(".ts") for n in names)  # built output only


def test_plain_install_shows_both_extensions_enabled(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run(UV, "venv", "--quiet", "--python", sys.executable, str(venv))
    python = venv / "bin/python"
    _run(UV, "pip", "install", "--quiet", "--python", str(python), str(wheel), "jupyterlab>=4")
    env = {"JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_PLATFORM_DIRS": "1", "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    labext = _run(str(venv / "bin/jupyter"), "labextension", "list", env=env)
    assert re.search(r"dsenv v[\d.]+ enabled OK", labext), labext
    assert str(venv / "share/jupyter/labextensions") in labext  # from the wheel's data files, not this checkout
    server = _run(str(venv / "bin/jupyter"), "server", "extension", "list", env=env)
    enabled_by = re.search(r"Config dir: (\S+)\n\s+dsenv\.labserver enabled", server)
    assert enabled_by and enabled_by.group(1) == str(venv / "etc/jupyter"), server  # the wheel's config file
    assert re.search(r"dsenv\.labserver [\d.]+ OK", server), server
    # and a server set up there loads it with no option given: the extension mounts its REST API
    check = ("from jupyter_server.serverapp import ServerApp\n"
             "app = ServerApp()\napp.initialize(argv=['--ServerApp.port=0', '--ServerApp.open_browser=False'])\n"
             "print('enabled:', app.extension_manager.extensions['dsenv.labserver'].enabled)\n")
    printed = _run(str(python), "-c", check, env=env, cwd=tmp_path)
    assert "enabled: True" in printed and "dsenv: REST API at /dsenv/api/" in printed, printed
    assert "dsenv.labserver | extension was successfully loaded" in printed, printed
