"""Inference from code cells: imports, %pip / !pip / !apt-get lines, cell magics, broken cells, optional imports."""
from __future__ import annotations

import json

import pytest

from dsenv.infer import CACHE_VERSION, Finding, cell_cache, infer_cell, infer_cells


def found(source: str) -> list[tuple[str, str]]:
    return sorted((f.kind, f.value) for f in infer_cell(source))


def test_imports_plain_dotted_and_from():
    assert found("import numpy\nimport os.path\nfrom a.b import c\nimport x.y.z as w\nimport p, q") == [
        ("import", "a.b"), ("import", "numpy"), ("import", "os.path"), ("import", "p"), ("import", "q"),
        ("import", "x.y.z"),
    ]


def test_relative_imports_ignored():
    assert found("from . import foo\nfrom .bar import baz\nfrom ..q import r\nimport real") == [("import", "real")]


def test_imports_nested_in_functions_count():
    assert found("def f():\n    import scipy.stats\n    return 1\n") == [("import", "scipy.stats")]


@pytest.mark.parametrize("source, expected", [
    ('%pip install -q numpy==1.26 "pandas>=2"', [("pip", "numpy==1.26"), ("pip", "pandas>=2")]),
    ("!pip install x", [("pip", "x")]),
    ("!pip3 install --upgrade x", [("pip", "x")]),
    ("!{sys.executable} -m pip install -U x", [("pip", "x")]),
    ("!python -m pip install x", [("pip", "x")]),
    ("!python3 -m pip install --quiet x", [("pip", "x")]),
    ("!uv pip install x", [("pip", "x")]),
    ("%pip install --index-url https://mirror.example/simple x", [("pip", "x")]),
    ("%pip install numpy  # a comment", [("pip", "numpy")]),
    ("%pip install -r req.txt", [("pip-file", "req.txt")]),
    ("!pip install --requirement more.txt rich", [("pip", "rich"), ("pip-file", "more.txt")]),
])
def test_pip_lines(source, expected):
    assert found(source) == sorted(expected)


def test_pip_list_and_uninstall_are_not_installs():
    assert found("!pip list\n%pip uninstall -y numpy\n!pip freeze") == []


@pytest.mark.parametrize("source, expected", [
    ("!apt-get install -y graphviz && echo done", [("apt", "graphviz")]),
    ("!sudo apt-get install -y x", [("apt", "x")]),
    ("!apt-get update && apt-get install -y --no-install-recommends libgl1 ffmpeg", [("apt", "ffmpeg"), ("apt", "libgl1")]),
    ("!DEBIAN_FRONTEND=noninteractive apt install -y zsh", [("apt", "zsh")]),
    ("!apt-get remove -y vim", []),
])
def test_apt_lines(source, expected):
    assert found(source) == sorted(expected)


def test_bash_cell_magic_body_scanned_for_installs():
    source = "%%bash\npip install foo\napt-get install -y bar\nimport baz\n"
    assert found(source) == [("apt", "bar"), ("pip", "foo")]


def test_time_cell_magic_body_reparsed_for_imports():
    assert found("%%time\nimport numpy\nfrom sklearn import svm\nx = numpy.zeros(3)\n") == [
        ("import", "numpy"), ("import", "sklearn"),
    ]


def test_capture_cell_magic_body_with_shell_escape():
    assert found("%%capture\n!pip install zzz\nimport yyy\n") == [("import", "yyy"), ("pip", "zzz")]


def test_line_magics_that_install_nothing_are_not_findings():
    assert found("%matplotlib inline\n%load_ext autoreload\n%autoreload 2\n!ls -la") == []


def test_syntax_error_cell_still_yields_parseable_lines():
    source = "import numpy\ndef broken(:\n    pass\nfrom scipy import stats\nx = (\nimport pandas\n"
    assert {v for k, v in found(source)} >= {"numpy", "scipy", "pandas"}
    assert all(k == "import" for k, _ in found(source))


@pytest.mark.parametrize("handler", ["ImportError", "ModuleNotFoundError", "(ImportError, OSError)"])
def test_imports_in_try_except_importerror_are_optional(handler):
    source = f"try:\n    import ujson\n    from orjson import dumps\nexcept {handler}:\n    ujson = None\nimport requests\n"
    by_value = {f.value: f.optional for f in infer_cell(source)}
    assert by_value == {"ujson": True, "orjson": True, "requests": False}


def test_try_except_other_error_is_not_optional():
    source = "try:\n    import ujson\nexcept KeyError:\n    pass\n"
    assert [f.optional for f in infer_cell(source)] == [False]


@pytest.mark.parametrize("source", ["x = 1\nprint(x)", "", "# just a comment\n", "def f(a):\n    return a * 2\n",
                                    "s = 'percent % in a string'"])
def test_cells_without_import_magic_or_shell_yield_nothing(source):
    assert infer_cell(source) == []


def test_infer_cells_keeps_cell_index():
    findings = infer_cells(["x = 1", "import numpy", "!pip install rich"])
    assert findings == [Finding("import", "numpy", 1), Finding("pip", "rich", 2)]


def test_infer_cells_cache_is_filled_and_reused():
    cache: dict = {}
    first = infer_cells(["import numpy", "x = 1"], cache)
    assert len(cache) == 2  # one entry a distinct cell, findings or not
    # a poisoned entry proves the second call reads the cache instead of parsing
    for key, value in cache.items():
        if value:
            cache[key] = [["import", "from_cache", False]]
    second = infer_cells(["import numpy", "x = 1"], cache)
    assert first == [Finding("import", "numpy", 0)]
    assert second == [Finding("import", "from_cache", 0)]


def test_cell_cache_persists_under_xdg_cache_home(_isolated):
    with cell_cache() as cache:
        infer_cells(["import numpy"], cache)
    path = _isolated / "cache" / "dsenv" / f"cells-v{CACHE_VERSION}.json"
    assert list(json.loads(path.read_text()).values()) == [[["import", "numpy", False]]]


@pytest.mark.parametrize("source, expected", [
    ("!pip install numpy; pip install pandas", [("pip", "numpy"), ("pip", "pandas")]),
    ("!pip install numpy&&echo ok", [("pip", "numpy")]),
    ("!pip install rich > /dev/null", [("pip", "rich")]),
    ('!pip install "pandas>=2" 2>&1 | tail -1', [("pip", "pandas>=2")]),
    ("!apt-get install -y graphviz; echo done", [("apt", "graphviz")]),
    ("!apt-get update && apt-get install -y graphviz >/dev/null", [("apt", "graphviz")]),
])
def test_shell_operators_and_redirections_are_not_packages(source, expected):
    assert found(source) == sorted(expected)
