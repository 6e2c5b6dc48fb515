"""build_spec over real folders: inference through the map, stdlib per target Python, local modules, merging,
conflicts, precedence, binder/, requires-python, canonical JSON and its hash, notes, lock paths."""
from __future__ import annotations

import pytest

from dsenv.errors import ConflictError, SpecError
from dsenv.notebook import find_target
from dsenv.spec import AptEntry, EnvSpec, ReqEntry, build_spec, distribution_for_import, stdlib_modules


def spec_of(path) -> EnvSpec:
    return build_spec(find_target(path))


def reqs(spec: EnvSpec) -> dict[str, str]:
    return {r.name: r.requirement for r in spec.requirements}


def test_inferred_imports_map_to_distributions(tmp_path, write_notebook):
    write_notebook(tmp_path, [
        "import sklearn.linear_model\nimport PIL.Image\nimport cv2, yaml\nfrom mpl_toolkits.mplot3d import Axes3D",
        "import numpy as np\nfrom bs4 import BeautifulSoup",
    ])
    spec = spec_of(tmp_path)
    assert set(reqs(spec)) == {"scikit-learn", "pillow", "opencv-python", "pyyaml", "matplotlib", "numpy",
                               "beautifulsoup4"}
    sk = next(r for r in spec.requirements if r.name == "scikit-learn")
    assert sk.sources == ("import sklearn (nb.ipynb)",)
    assert sk.explicit is False
    assert set(spec.imports) == {"sklearn", "PIL", "cv2", "yaml", "mpl_toolkits", "numpy", "bs4"}


def test_distribution_for_dotted_import_uses_longest_prefix():
    assert distribution_for_import("google.protobuf.message") == "protobuf"
    assert distribution_for_import("sklearn.svm") == "scikit-learn"
    assert distribution_for_import("somepkg.sub") == "somepkg"


def test_stdlib_table_is_per_version():
    assert "tomllib" in stdlib_modules("3.11") and "tomllib" not in stdlib_modules("3.10")
    assert "distutils" in stdlib_modules("3.11") and "distutils" not in stdlib_modules("3.12")


def test_stdlib_excluded_per_target_python_311(tmp_path, write_notebook):
    write_notebook(tmp_path, ["import os, sys, json, tomllib, distutils\nimport collections.abc\nimport requests"])
    (tmp_path / "runtime.txt").write_text("python-3.11\n")
    spec = spec_of(tmp_path)
    assert spec.python == "3.11"
    assert spec.imports == ("requests",)
    assert set(reqs(spec)) == {"requests"}


def test_tomllib_is_a_requirement_for_python_310(tmp_path, write_notebook):
    write_notebook(tmp_path, ["import tomllib\nimport os"])
    (tmp_path / "runtime.txt").write_text("python-3.10\n")
    spec = spec_of(tmp_path)
    assert spec.python == "3.10"
    assert spec.imports == ("tomllib",)


def test_distutils_is_not_stdlib_for_python_312(tmp_path, write_notebook):
    write_notebook(tmp_path, ["import distutils\nimport tomllib"])
    (tmp_path / "runtime.txt").write_text("python-3.12\n")
    spec = spec_of(tmp_path)
    assert spec.python == "3.12"
    assert spec.imports == ("distutils",)


def test_local_modules_are_not_requirements(tmp_path, write_notebook):
    write_notebook(tmp_path, ["import helper\nfrom figures import plot\nimport figures.style\nimport requests"])
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "__init__.py").write_text("")
    spec = spec_of(tmp_path)
    assert set(reqs(spec)) == {"requests"}
    assert "helper" not in spec.imports and "figures" not in spec.imports


def test_without_the_local_file_the_import_is_a_requirement(tmp_path, write_notebook):
    write_notebook(tmp_path, ["import helper"])
    assert set(reqs(spec_of(tmp_path))) == {"helper"}


def test_explicit_pin_and_inferred_import_merge(tmp_path, write_notebook):
    write_notebook(tmp_path, ["import numpy as np"])
    (tmp_path / "requirements.txt").write_text("numpy==1.26.4\n")
    spec = spec_of(tmp_path)
    assert len(spec.requirements) == 1
    (entry,) = spec.requirements
    assert entry.requirement == "numpy==1.26.4"
    assert entry.sources == ("requirements.txt", "import numpy (nb.ipynb)")
    assert entry.explicit is True


def test_pip_magic_in_notebook_is_a_requirement(tmp_path, write_notebook):
    (tmp_path / "req.txt").write_text("rich==13.7\n")
    write_notebook(tmp_path, ['%pip install -q "pandas>=2"\n%pip install -r req.txt\n!apt-get install -y graphviz'])
    spec = spec_of(tmp_path)
    assert reqs(spec) == {"pandas": "pandas>=2", "rich": "rich==13.7"}
    assert [a.name for a in spec.apt] == ["graphviz"]
    assert spec.apt[0].sources == ("!apt-get (nb.ipynb)",)


def test_unusable_pip_argument_becomes_a_note(tmp_path, write_notebook):
    write_notebook(tmp_path, ["%pip install -e ./localpkg rich"])
    spec = spec_of(tmp_path)
    assert set(reqs(spec)) == {"rich"}
    assert any("editable" in n for n in spec.notes)


def test_conflicting_pins_name_both_sources(tmp_path, write_notebook):
    write_notebook(tmp_path, ["import numpy"], metadata={"dsenv": {"requirements": ["numpy==1.25.0"]}})
    (tmp_path / "requirements.txt").write_text("numpy==1.26.4\n")
    with pytest.raises(ConflictError) as info:
        spec_of(tmp_path)
    message = str(info.value)
    assert "numpy" in message
    assert "metadata.dsenv (nb.ipynb)" in message and "requirements.txt" in message
    assert "==1.25.0" in message and "==1.26.4" in message
    assert set(info.value.sources) == {"metadata.dsenv (nb.ipynb)", "requirements.txt"}


def test_same_pin_twice_is_fine(tmp_path, write_notebook):
    write_notebook(tmp_path, ["import numpy"], metadata={"dsenv": {"requirements": ["numpy == 1.26.4"]}})
    (tmp_path / "requirements.txt").write_text("numpy==1.26.4\n")
    spec = spec_of(tmp_path)
    (entry,) = spec.requirements
    assert entry.requirement == "numpy==1.26.4"
    assert entry.sources == ("metadata.dsenv (nb.ipynb)", "requirements.txt", "import numpy (nb.ipynb)")


def _python_sources(folder, write_notebook, meta: bool, toml: bool, runtime: bool, env: bool):
    write_notebook(folder, ["x = 1"], metadata={"dsenv": {"python": "3.10"}} if meta else None)
    for name, present, text in [
        ("dsenv.toml", toml, 'python = "3.12"\n'),
        ("runtime.txt", runtime, "python-3.13\n"),
        ("environment.yml", env, "dependencies:\n  - python=3.14\n"),
    ]:
        path = folder / name
        if present:
            path.write_text(text)
        elif path.exists():
            path.unlink()


@pytest.mark.parametrize("meta, toml, runtime, env, python, source", [
    (True, True, True, False, "3.10", "metadata.dsenv (nb.ipynb)"),
    (True, True, False, True, "3.10", "metadata.dsenv (nb.ipynb)"),
    (False, True, True, False, "3.12", "dsenv.toml"),
    (False, True, False, True, "3.12", "dsenv.toml"),
    (False, False, True, False, "3.13", "runtime.txt"),
    (False, False, False, True, "3.14", "environment.yml"),
    (False, False, False, False, "3.11", "default"),
])
def test_python_precedence(tmp_path, write_notebook, meta, toml, runtime, env, python, source):
    _python_sources(tmp_path, write_notebook, meta, toml, runtime, env)
    spec = spec_of(tmp_path)
    assert (spec.python, spec.python_source) == (python, source)


def test_runtime_txt_and_environment_yml_agreeing(tmp_path, write_notebook):
    _python_sources(tmp_path, write_notebook, meta=False, toml=False, runtime=True, env=True)
    (tmp_path / "runtime.txt").write_text("python-3.12\n")
    (tmp_path / "environment.yml").write_text("dependencies:\n  - python=3.12\n  - pytorch\n")
    spec = spec_of(tmp_path)
    assert spec.python == "3.12"
    assert reqs(spec) == {"torch": "torch"}


def test_default_python_argument_used_when_nothing_declares_one(tmp_path, write_notebook):
    write_notebook(tmp_path, ["x = 1"])
    spec = build_spec(find_target(tmp_path), default_python="3.12")
    assert (spec.python, spec.python_source) == ("3.12", "default")


def test_binder_folder_used_instead_of_root(tmp_path, write_notebook):
    write_notebook(tmp_path, ["x = 1"])
    (tmp_path / "requirements.txt").write_text("requests\n")
    (tmp_path / "runtime.txt").write_text("python-3.10\n")
    (tmp_path / "binder").mkdir()
    (tmp_path / "binder" / "requirements.txt").write_text("httpx\n")
    (tmp_path / "binder" / "runtime.txt").write_text("python-3.12\n")
    (tmp_path / "binder" / "apt.txt").write_text("graphviz\n")
    spec = spec_of(tmp_path)
    assert set(reqs(spec)) == {"httpx"}
    assert spec.requirements[0].sources == ("binder/requirements.txt",)
    assert (spec.python, spec.python_source) == ("3.12", "binder/runtime.txt")
    assert [(a.name, a.sources) for a in spec.apt] == [("graphviz", ("binder/apt.txt",))]


def test_dot_binder_folder_used_too(tmp_path, write_notebook):
    write_notebook(tmp_path, ["x = 1"])
    (tmp_path / "requirements.txt").write_text("requests\n")
    (tmp_path / ".binder").mkdir()
    (tmp_path / ".binder" / "requirements.txt").write_text("httpx\n")
    assert set(reqs(spec_of(tmp_path))) == {"httpx"}


def test_requires_python_excluding_chosen_python_raises(tmp_path, write_notebook):
    write_notebook(tmp_path, ["x = 1"])
    (tmp_path / "runtime.txt").write_text("python-3.10\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nrequires-python = ">=3.11"\ndependencies = ["attrs"]\n')
    with pytest.raises(SpecError) as info:
        spec_of(tmp_path)
    assert info.value.source == "pyproject.toml"
    assert ">=3.11" in str(info.value) and "3.10" in str(info.value)


def test_requires_python_including_chosen_python_is_fine(tmp_path, write_notebook):
    write_notebook(tmp_path, ["x = 1"])
    (tmp_path / "runtime.txt").write_text("python-3.12\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nrequires-python = ">=3.11,<3.13"\ndependencies = ["attrs>=22"]\n')
    spec = spec_of(tmp_path)
    assert spec.python == "3.12"
    assert reqs(spec) == {"attrs": "attrs>=22"}


def test_invalid_metadata_in_notebook_raises_spec_error(tmp_path, write_notebook):
    write_notebook(tmp_path, ["x = 1"], metadata={"dsenv": ["numpy"]})
    with pytest.raises(SpecError) as info:
        spec_of(tmp_path)
    assert info.value.source == "metadata.dsenv (nb.ipynb)"


def test_canonical_json_ignores_order_and_sources():
    a = EnvSpec(python="3.11", requirements=(
        ReqEntry("numpy", "numpy==1.26.4", ("requirements.txt",), True),
        ReqEntry("pandas", "pandas>=2", ("import pandas (a.ipynb)",), False),
    ), apt=(AptEntry("git", ("apt.txt",)), AptEntry("graphviz", ("apt.txt",))))
    b = EnvSpec(python="3.11", python_source="runtime.txt", requirements=(
        ReqEntry("pandas", "pandas>=2", ("metadata.dsenv (b.ipynb)",), True),
        ReqEntry("numpy", "numpy==1.26.4", ("import numpy (b.ipynb)",), False),
    ), apt=(AptEntry("graphviz", ("!apt-get (b.ipynb)",)), AptEntry("git", ("dsenv.toml",))))
    assert a.canonical_json() == b.canonical_json()
    assert a.sha256() == b.sha256()
    assert " " not in a.canonical_json()


def test_sha256_changes_when_a_requirement_is_added():
    base = (ReqEntry("numpy", "numpy==1.26.4", ("requirements.txt",), True),)
    a = EnvSpec(requirements=base)
    b = EnvSpec(requirements=base + (ReqEntry("rich", "rich", ("import rich (nb.ipynb)",), False),))
    assert a.sha256() != b.sha256()
    assert len(a.sha256()) == 64


def test_sha256_changes_with_python_and_post_build():
    assert EnvSpec(python="3.11").sha256() != EnvSpec(python="3.12").sha256()
    assert EnvSpec(post_build="echo a").sha256() != EnvSpec(post_build="echo b").sha256()


def test_editing_markdown_or_non_import_code_keeps_sha256(tmp_path, write_notebook):
    write_notebook(tmp_path, ["#md # Title", "import numpy\nx = 1", "print(x)"])
    before = spec_of(tmp_path)
    write_notebook(tmp_path, ["#md # A new title\nwith more text", "import numpy\nx = 2  # changed",
                              "print(x * 10)", "y = [i for i in range(3)]"])
    after = spec_of(tmp_path)
    assert before.sha256() == after.sha256()
    write_notebook(tmp_path, ["import numpy\nimport pandas"])
    assert spec_of(tmp_path).sha256() != before.sha256()


def test_non_python_kernel_gets_no_inference_and_a_note(tmp_path, write_notebook):
    write_notebook(tmp_path, ["library(ggplot2)\nimport numpy"],
                   metadata={"kernelspec": {"name": "ir", "language": "R", "display_name": "R"}})
    spec = spec_of(tmp_path)
    assert spec.requirements == ()
    assert spec.imports == ()
    assert any("nb.ipynb" in n and "'r'" in n for n in spec.notes)


def test_optional_import_is_not_required_and_noted(tmp_path, write_notebook):
    write_notebook(tmp_path, ["try:\n    import ujson as json\nexcept ImportError:\n    import json\nimport requests"])
    spec = spec_of(tmp_path)
    assert set(reqs(spec)) == {"requests"}
    assert any("ujson" in n and "optional" in n for n in spec.notes)


def test_folder_with_several_notebooks_merges_and_names_each(tmp_path, write_notebook):
    write_notebook(tmp_path, ["import numpy"], name="a.ipynb")
    write_notebook(tmp_path / "sub", ["import numpy\nimport rich"], name="b.ipynb")
    spec = spec_of(tmp_path)
    by_name = {r.name: r.sources for r in spec.requirements}
    assert by_name["numpy"] == ("import numpy (a.ipynb)", "import numpy (sub/b.ipynb)")
    assert by_name["rich"] == ("import rich (sub/b.ipynb)",)


def test_single_notebook_target_lock_path(tmp_path, write_notebook):
    path = write_notebook(tmp_path, ["import numpy"], name="analysis.ipynb")
    target = find_target(path)
    assert target.single is True
    assert target.name == "analysis"
    assert target.lock_path == tmp_path.resolve() / "analysis.dsenv.lock"
    folder = find_target(tmp_path)
    assert folder.single is False
    assert folder.lock_path == tmp_path.resolve() / "dsenv.lock"


def test_single_notebook_target_reads_only_that_notebook(tmp_path, write_notebook):
    path = write_notebook(tmp_path, ["import numpy"], name="a.ipynb")
    write_notebook(tmp_path, ["import rich"], name="b.ipynb")
    assert set(reqs(spec_of(path))) == {"numpy"}
