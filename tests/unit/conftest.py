"""Unit-test fixtures: an isolated cell-findings cache and config per test, notebook and lock builders.

Nothing here needs a Docker daemon or the network: locks are written by hand in uv's output format."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from dsenv.lock import Lock, parse_packages

INPUTS_SHA = "a" * 64

# A small `uv pip compile --generate-hashes` output, after dsenv renamed the input files:
# user closure = numpy, pandas, python-dateutil, six (and traitlets, reached from both sides);
# runtime only = ipykernel, papermill, tornado.
UV_BODY = """\
ipykernel==6.29.0 \\
    --hash=sha256:1111111111111111111111111111111111111111111111111111111111111111
    # via
    #   -r dsenv runtime
    #   papermill
numpy==1.26.4 \\
    --hash=sha256:2222222222222222222222222222222222222222222222222222222222222222 \\
    --hash=sha256:2323232323232323232323232323232323232323232323232323232323232323
    # via
    #   -r notebook requirements
    #   pandas
pandas==2.2.0 \\
    --hash=sha256:3333333333333333333333333333333333333333333333333333333333333333
    # via -r notebook requirements
papermill==2.5.0 \\
    --hash=sha256:4444444444444444444444444444444444444444444444444444444444444444
    # via -r dsenv runtime
python-dateutil==2.9.0.post0 \\
    --hash=sha256:5555555555555555555555555555555555555555555555555555555555555555
    # via pandas
six==1.16.0 \\
    --hash=sha256:6666666666666666666666666666666666666666666666666666666666666666
    # via python-dateutil
tornado==6.4 \\
    --hash=sha256:7777777777777777777777777777777777777777777777777777777777777777
    # via ipykernel
traitlets==5.14.1 \\
    --hash=sha256:8888888888888888888888888888888888888888888888888888888888888888
    # via
    #   ipykernel
    #   pandas
"""


def lock_file_text(body: str = UV_BODY, inputs_sha: str = INPUTS_SHA) -> str:
    """A lock file as dsenv writes it: its header, then uv's output."""
    return (
        "# dsenv lock for Python 3.11 on x86_64-manylinux_2_28\n"
        "# Made by `dsenv lock` with `uv pip compile`; edit the notebook or its requirement files, not this file.\n"
        f"# inputs: sha256:{inputs_sha}\n"
        "\n" + body
    )


def make_lock(body: str = UV_BODY, inputs_sha: str = INPUTS_SHA) -> Lock:
    text = lock_file_text(body, inputs_sha)
    return Lock(text=text, inputs_sha256=inputs_sha, packages=parse_packages(text))


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Each test gets its own findings cache and no user config, whatever the caller's environment holds."""
    root = tmp_path_factory.mktemp("env")
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))
    monkeypatch.setenv("DSENV_CONFIG", str(root / "no-such-config.toml"))
    for var in ("DSENV_BASE_IMAGE", "DSENV_PYTHON", "DSENV_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def write_notebook():
    """write_notebook(folder, cells, metadata=None, name="nb.ipynb") -> path. A cell string starting with
    '#md ' becomes a markdown cell; any other string a code cell."""

    def _write(folder: Path, cells: list[str], metadata: dict | None = None, name: str = "nb.ipynb") -> Path:
        nb = new_notebook(cells=[
            new_markdown_cell(c[4:]) if c.startswith("#md ") else new_code_cell(c) for c in cells
        ])
        nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
        if metadata:
            nb.metadata.update(metadata)
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(path))
        return path

    return _write
