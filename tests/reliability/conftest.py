"""Reliability fixtures: the integration fixtures (real daemon, example image) and a guard that proves a failed
command left nothing behind: no new container, no new or moved image tag, no changed file in the folder."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ..integration.conftest import (  # noqa: F401 - fixtures shared with the integration tests
    _PROBLEM, auth_registry, cleanup_containers, dsenv, example, made_names, registry, workdir)

requires_docker = pytest.mark.skipif(_PROBLEM is not None, reason=f"requires_docker: {_PROBLEM}")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/reliability" in str(item.fspath) and "no_docker" not in item.keywords:
            item.add_marker(requires_docker)


def files_of(folder: Path) -> dict[str, str]:
    """Every file under folder with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def engine_state() -> tuple[frozenset, frozenset]:
    """(dsenv containers, every image tag with its id) as the daemon reports them."""
    from dsenv import engine

    boxes = frozenset(c.name for c in engine.list_managed(all_states=True))
    tags = frozenset((t, i.id) for i in engine.list_images() for t in i.tags)
    return boxes, tags


def check_failure(out, *, folder: Path | None = None, before_files: dict | None = None,
                  before_engine: tuple | None = None, words: tuple[str, ...] = ()) -> str:
    """A failed CLI call: non-zero exit, one line on stderr with a hint, no traceback, nothing left behind."""
    err = out.stderr.strip()
    assert out.returncode not in (0, 70), (out.returncode, err)
    lines = [line for line in err.splitlines() if line.startswith("dsenv:")]
    assert len(lines) == 1, err
    assert "hint:" in lines[0] and "Traceback" not in err, err
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])
    if folder is not None and before_files is not None:
        assert files_of(folder) == before_files, "the folder changed"
    if before_engine is not None:
        after = engine_state()
        assert after[0] <= before_engine[0], f"containers left: {after[0] - before_engine[0]}"
        assert after[1] - before_engine[1] == frozenset(), f"new or moved tags: {after[1] - before_engine[1]}"
    return lines[0]
