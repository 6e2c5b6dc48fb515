"""Reading notebooks (invalid JSON, encodings, nbformat 3) and turning a user's path into a Target."""
from __future__ import annotations

import json
import re

import pytest

from dsenv.errors import NotebookError, UsageError
from dsenv.notebook import find_target, load_notebook


def test_reads_code_cells_metadata_and_language(tmp_path, write_notebook):
    path = write_notebook(tmp_path, ["#md # Title", "import numpy", "x = 1"], metadata={"dsenv": {"python": "3.12"}})
    nb = load_notebook(path)
    assert nb.code_cells == ["import numpy", "x = 1"]
    assert nb.dsenv_metadata == {"python": "3.12"}
    assert nb.language == "python"


def test_source_as_list_of_lines_is_joined(tmp_path):
    path = tmp_path / "lines.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "id": "c1", "metadata": {}, "outputs": [], "execution_count": None,
         "source": ["import numpy\n", "import pandas"]},
    ]}))
    assert load_notebook(path).code_cells == ["import numpy\nimport pandas"]


def test_invalid_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [\n  {"cell_type": "code",,}\n]}')
    with pytest.raises(NotebookError) as info:
        load_notebook(path)
    message = str(info.value)
    assert "broken.ipynb" in message
    assert re.search(r"line 2 column \d+", message)
    assert info.value.exit_code == 3


def test_empty_file_is_a_notebook_error(tmp_path):
    path = tmp_path / "empty.ipynb"
    path.write_text("")
    with pytest.raises(NotebookError, match="empty.ipynb"):
        load_notebook(path)


def test_not_utf8_is_a_notebook_error(tmp_path):
    path = tmp_path / "latin.ipynb"
    path.write_bytes(b'{"cells": [], "metadata": {"author": "J\xe9r\xf4me"}, "nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(NotebookError) as info:
        load_notebook(path)
    assert "latin.ipynb" in str(info.value)
    assert "UTF-8" in info.value.problem


def test_json_that_is_not_a_notebook_is_a_notebook_error(tmp_path):
    path = tmp_path / "list.ipynb"
    path.write_text("[1, 2, 3]")
    with pytest.raises(NotebookError, match="list.ipynb"):
        load_notebook(path)


def test_nbformat_3_is_converted(tmp_path):
    v3 = {
        "nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "old"},
        "worksheets": [{"metadata": {}, "cells": [
            {"cell_type": "heading", "level": 1, "metadata": {}, "source": ["Old notebook"]},
            {"cell_type": "code", "language": "python", "collapsed": False, "prompt_number": 1, "metadata": {},
             "outputs": [], "input": ["import numpy\n", "import pandas as pd"]},
            {"cell_type": "markdown", "metadata": {}, "source": ["import notthis"]},
            {"cell_type": "code", "language": "python", "collapsed": False, "metadata": {}, "outputs": [],
             "input": "%matplotlib inline"},
        ]}],
    }
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(v3))
    nb = load_notebook(path)
    assert nb.code_cells == ["import numpy\nimport pandas as pd", "%matplotlib inline"]
    assert nb.language == "python"


def test_kernel_language_from_metadata(tmp_path, write_notebook):
    path = write_notebook(tmp_path, ["1 + 1"], metadata={"kernelspec": {"name": "julia", "language": "Julia",
                                                                         "display_name": "Julia"}})
    assert load_notebook(path).language == "julia"


def test_folder_scan_skips_checkpoints_and_hidden_dirs(tmp_path, write_notebook):
    write_notebook(tmp_path, ["x = 1"], name="a.ipynb")
    write_notebook(tmp_path / "sub", ["x = 1"], name="b.ipynb")
    write_notebook(tmp_path / ".ipynb_checkpoints", ["x = 1"], name="a-checkpoint.ipynb")
    write_notebook(tmp_path / "sub" / ".ipynb_checkpoints", ["x = 1"], name="b-checkpoint.ipynb")
    write_notebook(tmp_path / ".hidden", ["x = 1"], name="c.ipynb")
    write_notebook(tmp_path, ["x = 1"], name=".d.ipynb")
    write_notebook(tmp_path, ["import torch"], name="a.out.ipynb")  # dsenv repro's output: not a notebook here
    (tmp_path / "notes.txt").write_text("not a notebook")
    target = find_target(tmp_path)
    assert target.single is False
    assert target.folder == tmp_path.resolve()
    assert [p.relative_to(tmp_path.resolve()).as_posix() for p in target.notebooks] == ["a.ipynb", "sub/b.ipynb"]


def test_an_output_notebook_given_by_name_is_a_target(tmp_path, write_notebook):
    path = write_notebook(tmp_path, ["x = 1"], name="a.out.ipynb")
    assert find_target(path).notebooks == (path.resolve(),)


def test_single_notebook_target(tmp_path, write_notebook):
    path = write_notebook(tmp_path, ["x = 1"], name="one.ipynb")
    target = find_target(path)
    assert target.notebooks == (path.resolve(),)
    assert target.folder == tmp_path.resolve()
    assert target.single is True


def test_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as info:
        find_target(tmp_path / "nope")
    assert "nope" in str(info.value)
    assert info.value.exit_code == 2


def test_non_notebook_file_is_a_usage_error(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("numpy\n")
    with pytest.raises(UsageError) as info:
        find_target(path)
    assert "requirements.txt" in str(info.value)
    assert ".ipynb" in str(info.value)


def test_folder_without_notebooks_or_environment_files_is_a_usage_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="no notebooks"):
        find_target(tmp_path)
    (tmp_path / "requirements.txt").write_text("numpy\n")
    assert find_target(tmp_path).notebooks == ()
