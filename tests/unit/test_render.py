"""Rendering spec + lock into a Dockerfile and a content tag: determinism, what changes the tag, layer order,
cache hygiene, baking, CA bundles, incremental (delta) builds and repository names."""
from __future__ import annotations

import re

import pytest

from dsenv.render import MAX_DELTA_DEPTH, render, repository_name
from dsenv.spec import AptEntry, EnvSpec, ReqEntry

from .conftest import make_lock

BASE = "python:3.11-slim"
BASE_ID = "sha256:" + "b" * 64
PARENT_ID = "sha256:" + "c" * 64
CA = b"-----BEGIN CERTIFICATE-----\nMIIBdsenvTESTCAbundleSECRETxyz\n-----END CERTIFICATE-----\n"

NUMPY = ReqEntry("numpy", "numpy==1.26.4", ("requirements.txt",), True)
PANDAS = ReqEntry("pandas", "pandas>=2", ("import pandas (nb.ipynb)",), False)
RICH = ReqEntry("rich", "rich", ("import rich (nb.ipynb)",), False)


def make_spec(requirements=(NUMPY, PANDAS), apt=("graphviz", "git"), python="3.11") -> EnvSpec:
    return EnvSpec(python=python, requirements=tuple(requirements),
                   apt=tuple(AptEntry(a, ("apt.txt",)) for a in apt))


def do_render(spec=None, lock=None, **kw):
    kw.setdefault("name", "demo")
    kw.setdefault("base", BASE)
    kw.setdefault("base_id", BASE_ID)
    return render(spec or make_spec(), lock or make_lock(), **kw)


def index_of(lines: list[str], pattern: str) -> int:
    hits = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert hits, f"no line matches {pattern!r}"
    return hits[0]


def test_same_inputs_same_dockerfile_and_tag():
    a, b = do_render(), do_render()
    assert a.dockerfile == b.dockerfile
    assert a.tag == b.tag
    assert a.labels == b.labels
    assert re.fullmatch(r"dsenv/demo:[0-9a-f]{12}", a.tag)


def test_requirement_order_does_not_change_tag():
    assert do_render(make_spec((NUMPY, PANDAS))).tag == do_render(make_spec((PANDAS, NUMPY))).tag
    assert do_render(make_spec(apt=("git", "graphviz"))).tag == do_render(make_spec(apt=("graphviz", "git"))).tag


def test_adding_a_requirement_changes_tag():
    assert do_render(make_spec((NUMPY, PANDAS))).tag != do_render(make_spec((NUMPY, PANDAS, RICH))).tag


def test_different_base_id_changes_tag():
    assert do_render().tag != do_render(base_id="sha256:" + "d" * 64).tag


def test_different_lock_changes_tag():
    other = make_lock(inputs_sha="e" * 64)
    assert do_render().tag != do_render(lock=other).tag


def test_layer_order():
    lines = do_render(post_build=b"#!/bin/sh\necho hi\n").dockerfile.splitlines()
    from_ = index_of(lines, r"^FROM ")
    uv = index_of(lines, r"^RUN .*python3 |^ && .*pip install .*uv==")
    apt = index_of(lines, r"^RUN apt-get update")
    env = index_of(lines, r"pip install .*-r /opt/dsenv/environment\.txt")
    runtime = index_of(lines, r"pip install .*-r /opt/dsenv/runtime\.txt")
    post = index_of(lines, r"^RUN .*postBuild")
    assert from_ < uv < apt < env < runtime < post
    assert index_of(lines, r"^COPY environment\.txt") < env
    assert index_of(lines, r"^COPY runtime\.txt") < runtime
    assert "apt-get install -y --no-install-recommends git graphviz" in lines[apt + 1]


def test_no_apt_layer_without_apt_packages():
    assert "apt-get" not in do_render(make_spec(apt=())).dockerfile


def test_no_user_instruction_and_no_numeric_uid():
    text = do_render(post_build=b"echo hi\n", ca_bundle=CA, bake={"nb.ipynb": b"{}"}).dockerfile
    assert not re.search(r"^\s*USER\b", text, re.M)
    assert not re.search(r"--chown|\b\d{3,5}:\d{3,5}\b|\buseradd\b|\badduser\b", text)


def test_caches_are_not_left_in_layers():
    text = do_render().dockerfile
    assert "UV_NO_CACHE=1" in text
    assert "--no-cache-dir" in text
    apt_layer = text[text.index("RUN apt-get update"):text.index("COPY environment.txt")]
    assert "apt-get clean" in apt_layer
    assert "rm -rf /var/lib/apt/lists/*" in apt_layer


def test_installs_require_hashes_from_the_lock_layers():
    plan = do_render()
    assert plan.dockerfile.count("--require-hashes") == 2
    lock = make_lock()
    assert plan.context["environment.txt"] == lock.layer_text(runtime=False).encode()
    assert plan.context["runtime.txt"] == lock.layer_text(runtime=True).encode()


def test_notebooks_not_copied_unless_bake():
    plain = do_render()
    assert "COPY work/" not in plain.dockerfile
    assert not any(k.startswith("work/") for k in plain.context)
    baked = do_render(bake={"nb.ipynb": b'{"cells": []}', "data/x.csv": b"1,2\n"})
    assert "COPY work/ /home/dsenv/work/" in baked.dockerfile
    assert baked.context["work/nb.ipynb"] == b'{"cells": []}'
    assert baked.context["work/data/x.csv"] == b"1,2\n"
    assert baked.tag != plain.tag
    lines = baked.dockerfile.splitlines()
    assert index_of(lines, r"^COPY work/") > index_of(lines, r"pip install .*-r /opt/dsenv/runtime\.txt")


def test_ca_bundle_in_context_never_in_labels():
    plan = do_render(ca_bundle=CA)
    assert plan.context["ca-bundle.crt"] == CA
    assert "COPY ca-bundle.crt" in plan.dockerfile
    secret = "MIIBdsenvTESTCAbundleSECRETxyz"
    assert not any(secret in k or secret in v for k, v in plan.labels.items())
    assert secret not in plan.dockerfile
    assert "ca-bundle.crt" not in do_render().context


def test_labels_carry_spec_and_lock_hash():
    spec, lock = make_spec(), make_lock()
    plan = do_render(spec, lock)
    assert plan.labels["io.dsenv.spec"] == spec.canonical_json()
    assert plan.labels["io.dsenv.spec.sha256"] == spec.sha256()
    assert plan.labels["io.dsenv.lock.sha256"] == lock.sha256
    assert plan.labels["io.dsenv.delta-depth"] == "0"
    assert "LABEL " in plan.dockerfile and "io.dsenv.spec.sha256=" in plan.dockerfile


def test_no_syntax_line():
    for plan in (do_render(ca_bundle=CA, post_build=b"echo\n"), _delta_plan(depth=0)):
        assert not re.search(r"^#\s*syntax\s*=", plan.dockerfile, re.M | re.I)


def _parent(stack: str, depth: int | str = 0) -> dict:
    return {"id": PARENT_ID, "tag": "dsenv/demo:0123456789ab", "stack": stack, "depth": depth}


def _delta_plan(depth: int | str = 0, **kw):
    full = do_render()
    return do_render(parent=_parent(full.stack, depth), **kw)


@pytest.mark.parametrize("depth", [0, 1, MAX_DELTA_DEPTH - 1, "2"])
def test_delta_over_compatible_parent(depth):
    full = do_render()
    plan = _delta_plan(depth)
    assert plan.template == "Dockerfile.delta.j2"
    assert plan.delta_parent == "dsenv/demo:0123456789ab"
    assert plan.tag == full.tag
    froms = [line for line in plan.dockerfile.splitlines() if line.startswith("FROM ")]
    assert froms in (["FROM " + PARENT_ID], ["FROM dsenv/demo:0123456789ab"])  # the parent, by id or by tag
    assert "uv pip sync" in plan.dockerfile
    assert "apt-get" not in plan.dockerfile
    assert plan.labels["io.dsenv.delta-depth"] == str(int(depth) + 1)


def test_delta_depth_limit_gives_full_dockerfile():
    plan = _delta_plan(MAX_DELTA_DEPTH)
    assert MAX_DELTA_DEPTH == 3
    assert plan.template == "Dockerfile.j2"
    assert plan.delta_parent is None
    assert f"FROM {BASE}" in plan.dockerfile
    assert "uv pip sync" not in plan.dockerfile


def test_delta_with_different_stack_gives_full_dockerfile():
    plan = do_render(parent=_parent("0" * 16, 0))
    assert plan.template == "Dockerfile.j2"
    assert plan.delta_parent is None


@pytest.mark.parametrize("change", [
    dict(spec=make_spec(apt=("graphviz",))),
    dict(spec=make_spec(python="3.12"), base="python:3.12-slim"),
    dict(base_id="sha256:" + "d" * 64),
    dict(ca_bundle=CA),
])
def test_stack_changes_with_apt_python_base_and_ca(change):
    full = do_render()
    plan = do_render(parent=_parent(full.stack, 0), **change)
    assert plan.stack != full.stack
    assert plan.template == "Dockerfile.j2"


def test_delta_stack_ignores_python_requirements():
    full = do_render(make_spec((NUMPY,)))
    plan = do_render(make_spec((NUMPY, PANDAS, RICH)), parent=_parent(full.stack, 0))
    assert plan.template == "Dockerfile.delta.j2"


def test_post_build_forces_full_dockerfile():
    full = do_render()
    plan = do_render(parent=_parent(full.stack, 0), post_build=b"#!/bin/sh\necho hi\n")
    assert plan.template == "Dockerfile.j2"
    assert plan.delta_parent is None
    assert plan.context["postBuild"] == b"#!/bin/sh\necho hi\n"


@pytest.mark.parametrize("name, repo", [
    ("My Notebooks!", "dsenv/my-notebooks"),
    ("analysis", "dsenv/analysis"),
    ("data_set.v2", "dsenv/data_set.v2"),
    ("  --weird--  ", "dsenv/weird"),
    ("!!!", "dsenv/env"),
])
def test_repository_name(name, repo):
    assert repository_name(name) == repo


def test_tag_uses_sanitised_name():
    assert do_render(name="My Notebooks!").tag.startswith("dsenv/my-notebooks:")


@pytest.mark.parametrize("buildkit", [False, True])
def test_buildkit_and_classic_dockerfiles_keep_caches_out_of_layers(buildkit):
    plan = do_render(post_build=b"echo hi\n")
    plan.buildkit = buildkit
    text = plan.dockerfile
    assert "UV_NO_CACHE=1" in text and "--no-cache-dir" in text
    assert text.count("--require-hashes") == 2
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    # a uv cache is only ever enabled inside a BuildKit cache mount, which is not part of the layer
    runs = re.split(r"\n(?=[A-Z]+ )", text)
    for instruction in runs:
        if "UV_NO_CACHE=0" in instruction:
            assert instruction.startswith("RUN --mount=type=cache,")
    assert ("--mount=type=cache" in text) is buildkit


@pytest.mark.parametrize("buildkit", [False, True])
def test_delta_syncs_in_both_builders(buildkit):
    plan = _delta_plan(0)
    plan.buildkit = buildkit
    assert plan.template == "Dockerfile.delta.j2"
    assert "uv pip sync" in plan.dockerfile
    assert ("--mount=type=cache" in plan.dockerfile) is buildkit
