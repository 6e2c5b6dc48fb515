"""Reproducible runs on the real daemon: papermill inside the image, provenance, verification, the papermill engine."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from .conftest import CORPUS, dsenv

CORPUS_NOTEBOOKS = sorted(p.name for p in CORPUS.glob("*.ipynb")) if CORPUS.is_dir() else []
TIMES: dict[str, dict[str, float]] = {}


def _read(path):
    return nbformat.read(str(path), as_version=4)


def test_parameters_change_outputs_each_run_records_them_and_verifies_equal(example):
    folder, built = example
    a, b = folder / "a.out.ipynb", folder / "b.out.ipynb"
    try:
        ra = dsenv("repro", str(folder / "sine_fit.ipynb"), "-p", "n_points", "50", "-p", "seed", "1", "-o", str(a))
        rb = dsenv("repro", str(folder / "sine_fit.ipynb"), "-p", "n_points", "80", "-p", "seed", "2", "-o", str(b))
        assert ra.returncode == 0 and rb.returncode == 0, ra.stderr + rb.stderr
        pa, pb = (_read(p).metadata["dsenv"]["provenance"] for p in (a, b))
        assert pa["parameters"] == {"n_points": 50, "seed": 1} and pb["parameters"] == {"n_points": 80, "seed": 2}
        assert pa["image_id"] == built.image_id and pa["image_tag"] == built.tag
        assert {"spec_sha256", "lock_sha256", "host", "dsenv_version", "started", "ended", "gpus"} <= set(pa)
        from dsenv.compare import compare

        assert not compare(_read(a), _read(b)).equal
        for out in (a, b):
            v = dsenv("verify", str(folder / "sine_fit.ipynb"), "--against", str(out), "--json")
            assert v.returncode == 0, v.stdout + v.stderr
            assert json.loads(v.stdout)["status"] == "equal"
    finally:
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)


def test_a_random_cell_is_reported_as_the_one_difference(example, workdir, made_names):
    from .conftest import new_env

    folder = new_env(workdir, made_names, example[0], "random")
    nb = _read(folder / "sine_fit.ipynb")
    nb.cells.append(new_code_cell("import random\nprint(random.random())"))
    nbformat.write(nb, folder / "sine_fit.ipynb")
    assert dsenv("repro", str(folder / "sine_fit.ipynb")).returncode == 0
    v = dsenv("verify", str(folder / "sine_fit.ipynb"), "--json")
    assert v.returncode == 10, v.stdout + v.stderr
    report = json.loads(v.stdout)
    assert report["status"] == "differs"
    out = _read(folder / "sine_fit.out.ipynb")
    random_cell = next(i for i, c in enumerate(out.cells) if "random.random()" in c.source)
    assert [d["cell"] for d in report["differences"]] == [random_cell]


def test_a_failing_cell_is_named_and_the_output_is_still_written(example, workdir, made_names):
    from .conftest import new_env

    folder = new_env(workdir, made_names, example[0], "failing")
    nb = _read(folder / "sine_fit.ipynb")
    nb.cells.append(new_code_cell("x = 1\nraise ValueError('broken on purpose')"))
    nbformat.write(nb, folder / "sine_fit.ipynb")
    cli = dsenv("repro", str(folder / "sine_fit.ipynb"))
    assert cli.returncode == 9, cli.stderr
    (line,) = [x for x in cli.stderr.splitlines() if x.startswith("dsenv: error:")]
    assert "ValueError: broken on purpose" in line and "cell" in line and "Traceback" not in cli.stderr
    out = _read(folder / "sine_fit.out.ipynb")
    assert out.metadata["dsenv"]["provenance"]["exit_code"] != 0
    assert any(o.get("output_type") == "error" for c in out.cells if c.cell_type == "code" for o in c.outputs)


def test_papermill_engine_gives_the_same_notebook_and_provenance_as_repro(example, workdir):
    pytest.importorskip("papermill")
    folder, built = example
    via_repro, via_papermill = workdir / "via-repro.ipynb", workdir / "via-papermill.ipynb"
    assert dsenv("repro", str(folder / "sine_fit.ipynb"), "-p", "seed", "7", "-o", str(via_repro)).returncode == 0
    pm = subprocess.run([sys.executable, "-m", "papermill", str(folder / "sine_fit.ipynb"), str(via_papermill),
                         "--engine", "dsenv", "-p", "seed", "7", "-k", "python3"], capture_output=True, text=True)
    assert pm.returncode == 0, pm.stderr[-2000:]
    from dsenv.compare import compare

    a, b = _read(via_repro), _read(via_papermill)
    assert compare(a, b).equal
    pa, pb = a.metadata["dsenv"]["provenance"], b.metadata["dsenv"]["provenance"]
    assert set(pa) == set(pb)
    for key in ("image_id", "spec_sha256", "lock_sha256", "parameters", "kernel", "dsenv_version"):
        assert pa[key] == pb[key], key


def test_a_malformed_notebook_is_one_clear_line(workdir):
    bad = workdir / "truncated"
    bad.mkdir()
    (bad / "nb.ipynb").write_text('{"cells": [{"cell_type": "code", "source": "x"')
    cli = dsenv("repro", str(bad / "nb.ipynb"))
    assert cli.returncode == 3 and "nb.ipynb" in cli.stderr and "not valid JSON" in cli.stderr


@pytest.mark.parametrize("name", CORPUS_NOTEBOOKS)
def test_corpus_notebook_repro_and_verify(corpus, name):
    nb = corpus / name
    start = time.monotonic()
    cli = dsenv("repro", str(nb), "--timeout", "300")
    took = time.monotonic() - start
    if name.startswith("22."):
        assert cli.returncode == 9, cli.stderr
        (line,) = [x for x in cli.stderr.splitlines() if x.startswith("dsenv: error:")]
        assert "sklearn.neighbors.kde" in line and ("ModuleNotFoundError" in line or "ImportError" in line)
        assert "cell" in line
        TIMES[name] = {"repro": took}
        return
    assert cli.returncode == 0, cli.stderr[-3000:]
    start = time.monotonic()
    v = dsenv("verify", str(nb), "--timeout", "300")
    TIMES[name] = {"repro": took, "verify": time.monotonic() - start}
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.startswith("equal")
    print(f"\n{name}: repro {took:.1f} s, verify {TIMES[name]['verify']:.1f} s")
