"""The CLI's error contract: one `dsenv: error:` line with a hint, a specific exit code, no traceback unless
--debug. Only failures that happen before any network or daemon access are exercised here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsenv.cli import main

NO_DAEMON = "unix:///tmp/dsenv-unit-tests-nonexistent.sock"
DSENV_BIN = Path(sys.executable).parent / "dsenv"


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def one_error_line(result, code: int) -> str:
    """The run exited with `code` and printed exactly one 'dsenv: error: ... (hint: ...)' line, no traceback."""
    assert result.exit_code == code, result.output
    lines = error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("dsenv: error:")
    assert "(hint: " in lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def runner():
    return CliRunner()


def test_plan_missing_path_exits_2_with_one_line(runner, tmp_path):
    result = runner.invoke(main, ["plan", str(tmp_path / "nonexistent")])
    assert "nonexistent" in one_error_line(result, 2)


def test_plan_non_notebook_file_exits_2(runner, tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    result = runner.invoke(main, ["plan", str(tmp_path / "x.txt")])
    assert result.exit_code == 2
    assert error_lines(result)[0].startswith("dsenv: error:")


def test_plan_invalid_notebook_json_exits_3_naming_the_file(runner, tmp_path):
    (tmp_path / "broken.ipynb").write_text('{"cells": [,]}')
    line = one_error_line(runner.invoke(main, ["plan", str(tmp_path)]), 3)
    assert "broken.ipynb" in line
    assert "line 1 column" in line


def test_plan_invalid_requirements_exits_4(runner, tmp_path, write_notebook):
    write_notebook(tmp_path, ["x = 1"])
    (tmp_path / "requirements.txt").write_text("-e .\n")
    line = one_error_line(runner.invoke(main, ["plan", str(tmp_path)]), 4)
    assert line.startswith("dsenv: error: requirements.txt:")


def test_lock_conflicting_pins_exits_4_naming_both_sources(runner, tmp_path, write_notebook):
    write_notebook(tmp_path, ["import numpy"], metadata={"dsenv": {"requirements": ["numpy==1.25.0"]}})
    (tmp_path / "requirements.txt").write_text("numpy==1.26.4\n")
    result = runner.invoke(main, ["lock", str(tmp_path)])
    assert result.exit_code == 4
    (line,) = error_lines(result)
    assert "metadata.dsenv (nb.ipynb)" in line and "requirements.txt" in line


def test_images_without_daemon_exits_6_with_hint(runner, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    assert "Docker daemon" in one_error_line(runner.invoke(main, ["images"]), 6)


def test_images_debug_raises_the_error(runner, monkeypatch):
    from dsenv.errors import DaemonUnavailable

    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    result = runner.invoke(main, ["--debug", "images"])
    assert result.exit_code != 0
    assert isinstance(result.exception, DaemonUnavailable)


def _run_dsenv(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": NO_DAEMON}
    return subprocess.run([str(DSENV_BIN), *args], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)


@pytest.mark.skipif(not DSENV_BIN.exists(), reason="the dsenv console script is not installed in this environment")
def test_images_subprocess_without_daemon(tmp_path):
    proc = _run_dsenv("images", tmp_path=tmp_path)
    assert proc.returncode == 6
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("dsenv: error:") and "Docker daemon" in lines[0] and "(hint: " in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""


@pytest.mark.skipif(not DSENV_BIN.exists(), reason="the dsenv console script is not installed in this environment")
def test_images_subprocess_debug_shows_traceback(tmp_path):
    proc = _run_dsenv("--debug", "images", tmp_path=tmp_path)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "DaemonUnavailable" in proc.stderr
