"""Failures through the real CLI and daemon: one clear line, the right exit code, nothing left behind."""
from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from dsenv import api, engine

from .conftest import dsenv


def _folder(workdir, made_names, stem: str, code: str = "import json"):
    from .conftest import SESSION

    folder = workdir / f"it-{SESSION}-{stem}"
    folder.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell(code)]), folder / "nb.ipynb")
    made_names.add(folder.name)
    return folder


def _one_line_error(cli, code: int, *words: str) -> str:
    assert cli.returncode == code, (cli.returncode, cli.stdout, cli.stderr)
    lines = [line for line in cli.stderr.splitlines() if line.startswith("dsenv: error:")]
    assert len(lines) == 1, cli.stderr
    assert "Traceback" not in cli.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_unknown_package_names_package_and_source(workdir, made_names):
    folder = _folder(workdir, made_names, "unknown")
    (folder / "requirements.txt").write_text("dsenv-no-such-package-4242\n")
    _one_line_error(dsenv("lock", str(folder)), 5, "dsenv-no-such-package-4242", "requirements.txt", "hint:")
    assert not (folder / "dsenv.lock").exists()


def test_unsatisfiable_pins_are_a_lock_error(workdir, made_names):
    folder = _folder(workdir, made_names, "unsat")
    (folder / "requirements.txt").write_text("numpy<1.0\npandas>=2.0\n")
    _one_line_error(dsenv("lock", str(folder)), 5, "cannot be satisfied")


def test_conflicting_pins_name_both_sources(workdir, made_names):
    folder = _folder(workdir, made_names, "conflict", "%pip install numpy==1.26.4\nimport numpy")
    (folder / "requirements.txt").write_text("numpy==2.1.0\n")
    _one_line_error(dsenv("plan", str(folder)), 4, "numpy", "requirements.txt", "nb.ipynb")


def test_failing_build_step_is_one_line_with_the_log_and_leaves_no_tag(workdir, made_names):
    folder = _folder(workdir, made_names, "badapt")
    (folder / "apt.txt").write_text("dsenv-no-such-debian-package\n")
    tag = api.plan(folder).build.tag
    _one_line_error(dsenv("build", str(folder)), 6, "build failed at step", "apt-get", "dsenv-no-such-debian-package")
    assert engine.image_info(tag) is None


def test_apt_packages_install_in_their_own_layer_without_lists(workdir, made_names):
    folder = _folder(workdir, made_names, "apt", "!apt-get install -y tree\nimport json")
    cli = dsenv("build", str(folder))
    assert cli.returncode == 0, cli.stderr
    tag = cli.stdout.strip()
    code, out = engine.run_once(tag, ["sh", "-c", "tree --version && ls /var/lib/apt/lists | grep -c _Packages || true"])
    assert code == 0 and "tree v" in out and out.strip().endswith("0"), out


def test_as_of_resolves_packages_published_by_that_date(workdir, made_names):
    folder = _folder(workdir, made_names, "asof", "import numpy")
    cli = dsenv("lock", str(folder), "--as-of", "2024-01-01")
    assert cli.returncode == 0, cli.stderr
    text = (folder / "dsenv.lock").read_text()
    assert "numpy==1.26." in text and "packages as of 2024-01-01" in text


def test_no_daemon_is_one_line_with_a_hint(workdir, made_names):
    folder = _folder(workdir, made_names, "nodaemon")
    _one_line_error(dsenv("build", str(folder), env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}), 6,
                    "Docker daemon", "hint:")
