"""Readers of the explicit spec sources: requirements.txt, apt.txt, runtime.txt, environment.yml, pyproject.toml,
dsenv.toml and the metadata.dsenv mapping."""
from __future__ import annotations

import pytest

from dsenv import sources
from dsenv.errors import SpecError
from dsenv.spec import conda_map


# --- requirements.txt -------------------------------------------------------------------------------------------

def test_requirements_comments_blank_lines_continuations_and_includes(tmp_path):
    (tmp_path / "other.txt").write_text("scipy>=1.10  # from the include\n")
    (tmp_path / "requirements.txt").write_text(
        "# a comment line\n"
        "numpy==1.26.4   # trailing comment\n"
        "\n"
        "   \n"
        "pandas>=2,\\\n"
        "  <3\n"
        "-r other.txt\n"
        "requests[socks]; python_version >= '3.8'\n"
    )
    lines = sources.read_requirements_file(tmp_path / "requirements.txt")
    assert lines[0] == "numpy==1.26.4"
    assert lines[1].replace(" ", "") == "pandas>=2,<3"
    assert lines[2] == "scipy>=1.10"
    assert lines[3] == "requests[socks]; python_version >= '3.8'"
    assert len(lines) == 4


def test_requirements_long_include_option_and_include_cycle(tmp_path):
    (tmp_path / "a.txt").write_text("attrs\n--requirement b.txt\n")
    (tmp_path / "b.txt").write_text("rich\n-r a.txt\n")
    assert sources.read_requirements_file(tmp_path / "a.txt") == ["attrs", "rich"]


def test_requirements_name_at_url_is_accepted(tmp_path):
    (tmp_path / "requirements.txt").write_text("foo @ https://example.com/foo-1.0.tar.gz\n")
    assert sources.read_requirements_file(tmp_path / "requirements.txt") == ["foo @ https://example.com/foo-1.0.tar.gz"]


@pytest.mark.parametrize("line, problem", [
    ("-e .", "editable"),
    ("--editable ./pkg", "editable"),
    ("./pkg", "local path"),
    ("../sibling", "local path"),
    ("/abs/pkg", "local path"),
    (".", "local path"),
    ("file:///tmp/pkg", "local path"),
    ("git+https://github.com/org/repo.git", "no package name"),
    ("https://example.com/pkg-1.0-py3-none-any.whl", "no package name"),
    ("--index-url https://mirror.example/simple", "index option"),
    ("-i https://mirror.example/simple", "index option"),
    ("--extra-index-url https://mirror.example/simple", "index option"),
    ("--find-links https://mirror.example/", "index option"),
    ("--trusted-host mirror.example", "index option"),
    ("-c constraints.txt", "constraint"),
    ("numpy>=>1", "invalid requirement"),
    ("numpy==1.2.*.4", "invalid requirement"),
    ("pandas >= two", "invalid requirement"),
])
def test_requirements_errors_name_the_file(tmp_path, line, problem):
    (tmp_path / "requirements.txt").write_text("attrs\n" + line + "\n")
    with pytest.raises(SpecError) as info:
        sources.read_requirements_file(tmp_path / "requirements.txt")
    assert info.value.source == "requirements.txt"
    assert str(info.value).startswith("requirements.txt: ")
    assert problem in info.value.problem
    assert info.value.exit_code == 4


def test_requirements_error_in_an_include_names_the_included_file(tmp_path):
    (tmp_path / "base.txt").write_text("-e .\n")
    (tmp_path / "requirements.txt").write_text("attrs\n-r base.txt\n")
    with pytest.raises(SpecError) as info:
        sources.read_requirements_file(tmp_path / "requirements.txt")
    assert info.value.source == "base.txt"


def test_requirements_missing_include_is_an_error(tmp_path):
    (tmp_path / "requirements.txt").write_text("-r nowhere.txt\n")
    with pytest.raises(SpecError, match="nowhere.txt"):
        sources.read_requirements_file(tmp_path / "requirements.txt")


# --- apt.txt ----------------------------------------------------------------------------------------------------

def test_apt_names_valid(tmp_path):
    (tmp_path / "apt.txt").write_text("# graphics\ngraphviz libgl1  # inline comment\n\ng++\nlibc6:amd64\npython3.11=3.11.2-6\n")
    assert sources.read_apt_file(tmp_path / "apt.txt") == ["graphviz", "libgl1", "g++", "libc6:amd64", "python3.11=3.11.2-6"]


@pytest.mark.parametrize("line", ["vim; touch /tmp/pwned", "$(id)", "`id`", "curl|sh", "a&&b", "Vim", "-y", "x>y"])
def test_apt_names_that_are_shell_raise(tmp_path, line):
    (tmp_path / "apt.txt").write_text("git\n" + line + "\n")
    with pytest.raises(SpecError) as info:
        sources.read_apt_file(tmp_path / "apt.txt")
    assert info.value.source == "apt.txt"
    assert "not a valid Debian package name" in info.value.problem


# --- runtime.txt ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, version", [("python-3.10", "3.10"), ("python-3.10.4", "3.10"), ("python-3.12\n", "3.12")])
def test_runtime_txt(tmp_path, text, version):
    (tmp_path / "runtime.txt").write_text(text)
    assert sources.read_runtime_txt(tmp_path / "runtime.txt") == version


@pytest.mark.parametrize("text", ["python3.10", "r-4.0", "python-2.7", "3.10", "python-3", "python-3.10-slim"])
def test_runtime_txt_bad(tmp_path, text):
    (tmp_path / "runtime.txt").write_text(text)
    with pytest.raises(SpecError) as info:
        sources.read_runtime_txt(tmp_path / "runtime.txt")
    assert info.value.source == "runtime.txt"


# --- environment.yml --------------------------------------------------------------------------------------------

def test_environment_yml(tmp_path):
    (tmp_path / "environment.yml").write_text(
        "name: demo\n"
        "channels: [conda-forge]\n"
        "dependencies:\n"
        "  - python=3.10\n"
        "  - pip\n"
        "  - pytorch\n"
        "  - numpy=1.26\n"
        "  - scipy==1.11.0\n"
        "  - pandas>=2\n"
        "  - conda-forge::matplotlib-base=3.8.*\n"
        "  - cudatoolkit=11.8\n"
        "  - pip:\n"
        "    - requests==2.31\n"
        "    - rich\n"
    )
    d = sources.read_environment_yml(tmp_path / "environment.yml", conda_map())
    assert d.python == "3.10"
    assert d.source == "environment.yml"
    assert d.requirements == [
        "torch", "numpy==1.26.*", "scipy==1.11.0", "pandas>=2", "matplotlib==3.8.*", "requests==2.31", "rich",
    ]
    assert not any(r.split("=")[0] in {"pip", "python", "cudatoolkit"} for r in d.requirements)


def test_environment_yml_invalid_pip_line_raises(tmp_path):
    (tmp_path / "environment.yml").write_text("dependencies:\n  - pip:\n    - -e .\n")
    with pytest.raises(SpecError, match="environment.yml"):
        sources.read_environment_yml(tmp_path / "environment.yml", conda_map())


def test_environment_yml_not_yaml_raises(tmp_path):
    (tmp_path / "environment.yml").write_text("dependencies: [python=3.10\n")
    with pytest.raises(SpecError) as info:
        sources.read_environment_yml(tmp_path / "environment.yml", conda_map())
    assert info.value.source == "environment.yml"


# --- pyproject.toml ---------------------------------------------------------------------------------------------

def test_pyproject_dependencies_and_requires_python(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nrequires-python = ">=3.10"\ndependencies = ["attrs>=22", "httpx"]\n'
    )
    d = sources.read_pyproject(tmp_path / "pyproject.toml")
    assert d.requirements == ["attrs>=22", "httpx"]
    assert d.requires_python == ">=3.10"
    assert d.python is None


def test_pyproject_bad_dependency_raises(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "demo"\ndependencies = ["-e ."]\n')
    with pytest.raises(SpecError) as info:
        sources.read_pyproject(tmp_path / "pyproject.toml")
    assert info.value.source == "pyproject.toml"


def test_pyproject_bad_requires_python_raises(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "demo"\nrequires-python = "three"\n')
    with pytest.raises(SpecError, match="requires-python"):
        sources.read_pyproject(tmp_path / "pyproject.toml")


# --- dsenv.toml and metadata.dsenv ------------------------------------------------------------------------------

def test_dsenv_toml_top_level(tmp_path):
    (tmp_path / "dsenv.toml").write_text('python = "3.12"\nrequirements = ["numpy"]\napt = ["git"]\njupyter = "kernel"\n')
    d = sources.read_dsenv_toml(tmp_path / "dsenv.toml")
    assert (d.source, d.python, d.requirements, d.apt, d.jupyter) == ("dsenv.toml", "3.12", ["numpy"], ["git"], "kernel")


def test_dsenv_toml_under_dsenv_table(tmp_path):
    (tmp_path / "dsenv.toml").write_text('[dsenv]\npython = "3.10"\nrequirements = ["pandas>=2"]\n')
    d = sources.read_dsenv_toml(tmp_path / "dsenv.toml")
    assert (d.python, d.requirements) == ("3.10", ["pandas>=2"])


def test_dsenv_toml_invalid_toml_raises(tmp_path):
    (tmp_path / "dsenv.toml").write_text('python = \n')
    with pytest.raises(SpecError) as info:
        sources.read_dsenv_toml(tmp_path / "dsenv.toml")
    assert info.value.source == "dsenv.toml"


def test_dsenv_mapping_valid_and_ignores_provenance():
    d = sources.read_dsenv_mapping(
        {"python": "3.11", "requirements": ["numpy==1.26"], "apt": ["graphviz"], "base": "img:1",
         "jupyter": "notebook", "post_build": "echo hi", "provenance": {"image": "x"}},
        "metadata.dsenv (nb.ipynb)",
    )
    assert (d.python, d.requirements, d.apt, d.base, d.jupyter, d.post_build) == (
        "3.11", ["numpy==1.26"], ["graphviz"], "img:1", "notebook", "echo hi")


@pytest.mark.parametrize("data, problem", [
    ([1], "must be a mapping"),
    ("numpy", "must be a mapping"),
    ({"python": 3.11}, "'python' must be a str"),
    ({"requirements": "numpy"}, "'requirements' must be a list"),
    ({"apt": "git"}, "'apt' must be a list"),
    ({"requirements": [1]}, "must hold strings"),
    ({"apt": [None]}, "must hold strings"),
    ({"packages": ["numpy"]}, "unknown key(s) packages"),
    ({"python": "3"}, "not a version"),
    ({"python": "python-3.11"}, "not a version"),
    ({"jupyter": "classic"}, "not one of"),
    ({"apt": ["$(id)"]}, "not a valid Debian package name"),
    ({"requirements": ["-e ."]}, "editable"),
])
def test_dsenv_mapping_wrong_types_and_unknown_keys(data, problem):
    with pytest.raises(SpecError) as info:
        sources.read_dsenv_mapping(data, "metadata.dsenv (nb.ipynb)")
    assert info.value.source == "metadata.dsenv (nb.ipynb)"
    assert problem in info.value.problem
