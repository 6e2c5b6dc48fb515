"""Property-based fuzzing (hypothesis) of the spec readers and import inference: whatever a notebook or a
requirement file holds, dsenv either reads it or raises a DsenvError, never anything else."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsenv import sources
from dsenv.errors import DsenvError
from dsenv.infer import infer_cell
from dsenv.notebook import find_target, load_notebook
from dsenv.spec import build_spec, conda_map

pytestmark = pytest.mark.no_docker
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
cell_source = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["import numpy as np", "from sklearn import svm", "%pip install pandas", "!pip install -r x",
                              "!apt-get install -y curl", "%%bash", "try:", "    import torch", "except ImportError:",
                              "    pass", "!{sys.executable} -m pip install seaborn", "import ", "from . import x",
                              "!pip install 'a[b]>=1; python_version<\"3\"'", "%load_ext dsenv", "x = (", "?", "!!"]),
             max_size=8).map("\n".join))
cells = st.lists(st.fixed_dictionaries({
    "cell_type": st.sampled_from(["code", "markdown", "raw", "heading", 3]),
    "source": st.one_of(cell_source, st.lists(cell_source, max_size=3), json_values),
    "metadata": st.one_of(st.just({}), json_values),
}), max_size=5)
dsenv_meta = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "python": json_values | st.sampled_from(["3.11", "3.12", "2.7", "3.x"]),
    "requirements": st.lists(st.text(max_size=30) | st.sampled_from(["numpy", "pandas>=2", "torch==x", "a b"]),
                             max_size=4) | json_values,
    "apt": st.lists(st.text(max_size=20), max_size=3) | json_values,
    "base": json_values, "jupyter": json_values, "post_build": json_values,
}))
notebooks = st.one_of(
    st.builds(lambda c, m, v, mi: {"nbformat": v, "nbformat_minor": mi, "metadata": {"dsenv": m}, "cells": c},
              cells, dsenv_meta, st.sampled_from([4, 4, 3, 5, "4", None]), st.integers(-1, 99)),
    json_values,
)


def _read(folder: Path) -> None:
    try:
        build_spec(find_target(folder))
    except DsenvError:
        pass


@FUZZ
@given(nb=notebooks)
def test_random_notebooks_give_a_spec_or_a_dsenv_error(nb):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "t.ipynb").write_text(json.dumps(nb))
        _read(Path(tmp))


@FUZZ
@given(raw=st.binary(max_size=400))
def test_random_bytes_as_a_notebook_give_a_dsenv_error(raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.ipynb"
        path.write_bytes(raw)
        try:
            load_notebook(path)
        except DsenvError:
            pass


@FUZZ
@given(source=cell_source)
def test_inference_of_any_cell_never_raises(source):
    for finding in infer_cell(source):
        assert finding.value


line = st.one_of(st.text(max_size=40), st.sampled_from([
    "numpy", "numpy==1.26", "-r other.txt", "-c c.txt", "--index-url x", "-e .", "git+https://x/y.git", "a @ file:///x",
    "pkg; os_name == 'nt'", "pkg \\", "# c", "", "   ", "--hash=sha256:00", "pkg[extra]>=1,<2", "\\"]))
files = st.fixed_dictionaries({}, optional={
    "requirements.txt": st.lists(line, max_size=6).map("\n".join),
    "apt.txt": st.lists(line, max_size=4).map("\n".join),
    "runtime.txt": st.text(max_size=20) | st.sampled_from(["python-3.11", "python-3.12.1", "r-4.1"]),
    "environment.yml": st.text(max_size=80) | st.sampled_from(["dependencies: [numpy, {pip: [pandas]}]", "- a",
                                                              "dependencies: 3", "name: x\ndependencies:\n  - python=3.10"]),
    "pyproject.toml": st.text(max_size=80) | st.sampled_from(["[project]\ndependencies = ['numpy']", "[project]\n"
                                                             "dependencies = 3", "[project]\nrequires-python = '>=9'"]),
    "dsenv.toml": st.text(max_size=60) | st.sampled_from(["requirements = ['numpy']", "python = 3", "apt = 'x'"]),
})


@FUZZ
@given(found=files)
def test_random_sidecar_files_give_a_spec_or_a_dsenv_error(found):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "t.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                                    "cells": []}))
        for name, text in found.items():
            (folder / name).write_text(text, encoding="utf-8", errors="surrogatepass")
        _read(folder)
        try:
            sources.read_standard_files(folder, conda_map())
        except DsenvError:
            pass
