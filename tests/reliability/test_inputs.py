"""Bad input at every front door of the CLI: notebooks, requirement and apt files, run options. Each case: a
non-zero exit, one line saying what was wrong and what to do, no traceback, the folder and the engine unchanged."""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from .conftest import check_failure, dsenv, engine_state, files_of

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "notebooks" / "sine_fit.ipynb"


def _nb(**changes) -> str:
    nb = json.loads(EXAMPLE.read_text())
    nb.update(changes)
    return json.dumps(nb)


def _meta(dsenv_meta) -> str:
    nb = json.loads(EXAMPLE.read_text())
    nb["metadata"]["dsenv"] = dsenv_meta
    return json.dumps(nb)


NOTEBOOKS = {
    "truncated JSON": (EXAMPLE.read_text()[:300], "not valid JSON"),
    "not JSON": ("print('hello')\n", "not valid JSON"),
    "JSON but not a notebook": ('{"cells": 3}', "t.ipynb"),
    "a JSON list": ("[1, 2, 3]", "t.ipynb"),
    "binary file": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "not UTF-8"),
    "invalid UTF-8 in a cell": (_nb().replace('"import numpy', '"\udcff import numpy').encode("utf-8", "surrogateescape"),
                                "not UTF-8"),
    "nbformat 5": (_nb(nbformat=5), "t.ipynb"),
    "cells of the wrong type": (_nb(cells={"a": 1}), "t.ipynb"),
    "metadata.dsenv a list": (_meta(["numpy"]), "metadata.dsenv"),
    "metadata.dsenv requirements a string": (_meta({"requirements": "numpy"}), "requirements"),
    "metadata.dsenv python a number": (_meta({"python": 3.11}), "python"),
    "metadata.dsenv unknown key": (_meta({"pyhton": "3.11"}), "pyhton"),
    "metadata.dsenv bad requirement": (_meta({"requirements": ["numpy=>1"]}), "numpy=>1"),
    "metadata.dsenv apt injection": (_meta({"apt": ["curl && touch /tmp/dsenv-pwned-meta"]}), "not a valid Debian"),
}

FILES = {
    "unknown package": ("requirements.txt", "numpy\nnot-a-real-package-dsenv-xyz\n", "unknown package"),
    "unsatisfiable pins": ("requirements.txt", "numpy>=2,<1\n", "cannot be satisfied"),
    "invalid specifier": ("requirements.txt", "numpy=>1.0\n", "invalid requirement"),
    "invalid marker": ("requirements.txt", 'numpy; python_version >> "3"\n', "invalid requirement"),
    "VCS URL without a name": ("requirements.txt", "git+https://example.invalid/numpy.git\n", "no package name"),
    "plain URL without a name": ("requirements.txt", "https://example.invalid/numpy-1.0.tar.gz\n", "no package name"),
    "editable install": ("requirements.txt", "-e ./mypkg\n", "editable"),
    "local path": ("requirements.txt", "./localpkg\n", "local path"),
    "unreachable index URL with a password": ("requirements.txt",
                                              "--index-url https://alice:s3cr3t@pypi.example.invalid/simple\n", "index"),
    "index option that is not supported": ("requirements.txt", "--find-links https://example.invalid/\nnumpy\n",
                                           "index option"),
    "URL requirement with a password": ("requirements.txt", "pkg @ https://alice:s3cr3t@files.example.invalid/p.tgz\n",
                                        "password"),
    "missing -r file": ("requirements.txt", "-r other.txt\n", "other.txt"),
    "unsupported pip option": ("requirements.txt", "--no-binary :all:\nnumpy\n", "requirements.txt"),
    "apt ; command": ("apt.txt", "vim; touch /tmp/dsenv-pwned-1\n", "not a valid Debian"),
    "apt $(command)": ("apt.txt", "$(touch /tmp/dsenv-pwned-2)\n", "not a valid Debian"),
    "apt backticks": ("apt.txt", "`touch /tmp/dsenv-pwned-3`\n", "not a valid Debian"),
    "apt pipe": ("apt.txt", "vim | sh\n", "not a valid Debian"),
    "runtime.txt nonsense": ("runtime.txt", "python-three\n", "runtime.txt"),
    "environment.yml not YAML": ("environment.yml", "dependencies: [numpy\n", "environment.yml"),
    "pyproject not TOML": ("pyproject.toml", "[project\nname = 'x'\n", "pyproject.toml"),
}


@pytest.fixture
def folder(tmp_path) -> Path:
    f = tmp_path / f"rel-{uuid.uuid4().hex[:8]}"
    f.mkdir()
    return f


@pytest.mark.parametrize("case", list(NOTEBOOKS))
def test_bad_notebooks(case, folder):
    content, words = NOTEBOOKS[case]
    path = folder / "t.ipynb"
    path.write_bytes(content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content)
    before = files_of(folder)
    check_failure(dsenv("plan", str(folder)), folder=folder, before_files=before, words=(words,))
    assert not Path("/tmp/dsenv-pwned-meta").exists()


@pytest.mark.parametrize("case", list(FILES))
def test_bad_requirement_and_apt_files(case, folder):
    name, text, words = FILES[case]
    shutil.copy(EXAMPLE, folder / "t.ipynb")
    (folder / name).write_text(text)
    before, engine_before = files_of(folder), engine_state()
    line = check_failure(dsenv("build", str(folder)), folder=folder, before_files=before, words=(words,),
                         before_engine=engine_before)  # refused before any build step could run a shell
    assert "s3cr3t" not in line
    assert not any(Path(f"/tmp/dsenv-pwned-{i}").exists() for i in (1, 2, 3))


def test_two_sources_pinning_differently_name_both(folder):
    shutil.copy(EXAMPLE, folder / "t.ipynb")
    (folder / "requirements.txt").write_text("pandas==1.5.3\n")
    (folder / "environment.yml").write_text("dependencies:\n  - pandas=2.0\n")
    before = files_of(folder)
    check_failure(dsenv("plan", str(folder)), folder=folder, before_files=before,
                  words=("pandas", "requirements.txt", "environment.yml"))


def test_a_50_mb_notebook_is_read_and_left_alone(folder):
    nb = json.loads(EXAMPLE.read_text())
    blob = "A" * (1 << 20)
    nb["cells"].append({"cell_type": "markdown", "id": "big", "metadata": {}, "source": [blob] * 50})
    path = folder / "t.ipynb"
    path.write_text(json.dumps(nb))
    assert path.stat().st_size > 50 * 10**6
    before = files_of(folder)
    out = dsenv("plan", str(folder), "--json")
    assert out.returncode == 0, out.stderr
    assert "numpy" in {r["requirement"] for r in json.loads(out.stdout)["requirements"]}
    assert files_of(folder) == before


@pytest.mark.parametrize("case, change", [
    ("nbformat 3", {"nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": [
        {"cell_type": "code", "input": "import numpy", "language": "python", "outputs": []}]}]}),
    ("an unknown nbformat minor", {"nbformat_minor": 99}),
    ("duplicate cell ids", "dup"),
])
def test_old_newer_and_odd_notebooks_read_as_jupyter_would_and_stay_untouched(case, change, folder):
    nb = json.loads(EXAMPLE.read_text())
    if change == "dup":
        for c in nb["cells"]:
            c["id"] = "same"
    else:
        if "worksheets" in change:
            nb.pop("cells")
        nb.update(change)
    (folder / "t.ipynb").write_text(json.dumps(nb))
    before = files_of(folder)
    out = dsenv("plan", str(folder), "--json")
    assert out.returncode == 0, out.stderr
    assert "numpy" in {r["requirement"] for r in json.loads(out.stdout)["requirements"]}
    assert files_of(folder) == before


RUN_OPTIONS = {
    "port 0": (["-p", "0"], "out of range"),
    "port 65536": (["-p", "65536"], "out of range"),
    "host port below 1024": (["-p", "80"], "below 1024"),
    "port not a number": (["-p", "http"], "not a port"),
    "volume to a missing path": (["-v", "/nonexistent-dsenv-path:/data"], "does not exist"),
    "relative volume to a missing path": (["-v", "no/such/dir:/data"], "does not exist"),
    "volume with a relative container path": (["-v", "/tmp:data"], "HOST:CONTAINER"),
    "volume with a bad mode": (["-v", "/tmp:/data:rx"], "mode"),
    "mounting /": (["-v", "/:/host"], "--allow-dangerous-mounts"),
    "mounting the Docker socket": (["-v", "/var/run/docker.sock:/var/run/docker.sock"], "--allow-dangerous-mounts"),
    "mounting /etc": (["-v", "/etc:/host-etc"], "--allow-dangerous-mounts"),
    "env name starting with a digit": (["-e", "1BAD=x"], "environment variable name"),
    "env name with a dash": (["-e", "A-B=x"], "environment variable name"),
    "env without a name": (["-e", "=x"], "environment variable name"),
    "memory without a unit word": (["--memory", "lots"], "not a size"),
    "shm size nonsense": (["--shm-size", "huge"], "not a size"),
    "negative CPUs": (["--cpus", "-1"], "positive"),
    "container name with a slash": (["--name", "bad/name"], "container name"),
    "GPU request nonsense": (["--gpus", "fast"], "--gpus"),
}


@pytest.mark.parametrize("case", list(RUN_OPTIONS))
def test_bad_run_options(case, example):
    folder, _ = example
    args, words = RUN_OPTIONS[case]
    before_files, before_engine = files_of(folder), engine_state()
    check_failure(dsenv("run", str(folder), *args, "--", "true"), folder=folder, before_files=before_files,
                  before_engine=before_engine, words=(words,))


def test_a_taken_port_is_named_and_nothing_starts(example):
    import socket

    folder, _ = example
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        before = engine_state()
        check_failure(dsenv("run", str(folder), "-p", f"{port}:8050"), before_engine=before, words=(str(port),))
