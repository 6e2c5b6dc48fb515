"""Package indexes from requirements.txt: parsed, chosen, kept out of every artifact with their credentials, and
the credentials made into the netrc build secret."""
from __future__ import annotations

import dataclasses

import pytest

from dsenv import indexes, sources
from dsenv.errors import SpecError
from dsenv.indexes import IndexOption
from dsenv.render import render
from dsenv.spec import EnvSpec, ReqEntry

from .conftest import make_lock

PRIVATE = "https://alice:p%40ss@pkgs.example.org/simple"


def test_requirements_txt_index_lines_are_collected(tmp_path):
    (tmp_path / "requirements.txt").write_text(
        f"-i https://mirror.example/simple\n--extra-index-url={PRIVATE}\nnumpy\n-r more.txt\n")
    (tmp_path / "more.txt").write_text("--extra-index-url https://other.example/simple\npandas\n")
    found: list[IndexOption] = []
    lines = sources.read_requirements_file(tmp_path / "requirements.txt", indexes=found)
    assert lines == ["numpy", "pandas"]
    assert [(o.kind, o.url, o.source) for o in found] == [
        ("index-url", "https://mirror.example/simple", "requirements.txt"),
        ("extra-index-url", PRIVATE, "requirements.txt"),
        ("extra-index-url", "https://other.example/simple", "more.txt")]


@pytest.mark.parametrize("line, says", [
    ("--extra-index-url ftp://x.example/simple", "not an http"),
    ("--extra-index-url file:///srv/wheels", "not an http"),
    ("--no-index", "not supported"),
])
def test_bad_index_lines(tmp_path, line, says):
    (tmp_path / "requirements.txt").write_text(line + "\n")
    with pytest.raises(SpecError, match=says):
        sources.read_requirements_file(tmp_path / "requirements.txt", indexes=[])


def test_urls_without_and_with_masked_credentials():
    o = IndexOption("extra-index-url", PRIVATE, "requirements.txt")
    assert o.public_url == "https://pkgs.example.org/simple"
    assert o.shown == "https://alice:****@pkgs.example.org/simple"
    assert indexes.strip_credentials("https://pkgs.example.org/simple") == "https://pkgs.example.org/simple"


def test_choose_keeps_order_dedupes_and_refuses_two_index_urls():
    a = IndexOption("extra-index-url", PRIVATE, "requirements.txt")
    b = IndexOption("extra-index-url", "https://pkgs.example.org/simple", "binder/requirements.txt")
    main = IndexOption("index-url", "https://mirror.example/simple", "requirements.txt")
    assert indexes.choose([a, main, b]) == (main, a)
    other = IndexOption("index-url", "https://elsewhere.example/simple", "dsenv.toml")
    with pytest.raises(SpecError, match="two different --index-url"):
        indexes.choose([main, other])


def test_netrc_secret_from_urls_and_from_the_users_netrc(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine mirror.example login bob password from-netrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    chosen = (IndexOption("index-url", "https://mirror.example/simple", "r"), IndexOption("extra-index-url", PRIVATE, "r"),
              IndexOption("extra-index-url", "https://public.example/simple", "r"))
    assert indexes.netrc_secret(chosen) == (b"machine mirror.example login bob password from-netrc\n"
                                            b"machine pkgs.example.org login alice password p@ss\n")
    assert indexes.netrc_secret(chosen[2:]) is None
    env = indexes.uv_environment(chosen, with_credentials=False)
    assert env == {"UV_INDEX_URL": "https://mirror.example/simple",
                   "UV_EXTRA_INDEX_URL": "https://pkgs.example.org/simple https://public.example/simple"}
    assert "p%40ss" in indexes.uv_environment(chosen, with_credentials=True)["UV_EXTRA_INDEX_URL"]


def _spec(*options: IndexOption) -> EnvSpec:
    return EnvSpec(python="3.11", requirements=(ReqEntry("numpy", "numpy", ("import",), False),), indexes=options)


def test_credentials_change_nothing_the_url_does():
    with_pw = _spec(IndexOption("extra-index-url", PRIVATE, "requirements.txt"))
    other_pw = _spec(IndexOption("extra-index-url", PRIVATE.replace("p%40ss", "changed"), "requirements.txt"))
    no_index = _spec()
    assert "p%40ss" not in with_pw.canonical_json() and "pkgs.example.org" in with_pw.canonical_json()
    assert with_pw.canonical_json() == other_pw.canonical_json() != no_index.canonical_json()
    assert "indexes" not in no_index.canonical()  # environments without indexes keep their tags


@pytest.mark.parametrize("buildkit", [True, False])
def test_dockerfile_names_the_index_and_mounts_the_secret_only_with_buildkit(buildkit):
    spec = _spec(IndexOption("extra-index-url", PRIVATE, "requirements.txt"))
    plan = render(spec, make_lock(), name="env", base="python:3.11-slim", base_id="sha256:" + "0" * 64)
    plan = dataclasses.replace(plan, buildkit=buildkit)
    text = plan.dockerfile
    assert "p%40ss" not in text and "alice" not in text
    assert "UV_EXTRA_INDEX_URL=https://pkgs.example.org/simple uv pip install" in text
    assert ("--mount=type=secret,id=dsenv-netrc" in text) is buildkit
    assert ("export NETRC=/run/secrets/dsenv-netrc" in text) is buildkit
    assert "ARG" not in text and "ENV NETRC" not in text and "UV_EXTRA_INDEX_URL" not in text.split("RUN")[0]
