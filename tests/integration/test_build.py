"""Building images through the real Docker daemon: content tags, no-op rebuilds, incremental builds, clean layers."""
from __future__ import annotations

import json

import docker
import nbformat
from packaging.utils import canonicalize_name

from dsenv import api, lock
from dsenv.config import ca_bundle, load_config

from .conftest import dsenv, image_run

INSTALLED = (
    "import importlib.metadata as m, json\n"
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)


def installed(tag: str) -> dict[str, str]:
    out = image_run(tag, INSTALLED)
    return {canonicalize_name(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def locked(folder) -> dict[str, str]:
    lk = lock.read_lock(folder / "dsenv.lock")
    assert lk is not None
    return {p.name: p.version for p in lk.packages}


def test_example_builds_and_installs_exactly_the_lock(example):
    folder, result = example
    assert result.tag.startswith(f"dsenv/{folder.name}:")
    assert installed(result.tag) == locked(folder)
    assert api.check_imports(result.tag, ["numpy", "pandas", "matplotlib"]) == {}
    # the slow optional extra of Jupyter's dependencies stays out; what pulled it in is there and imports
    assert "rfc3987-syntax" not in installed(result.tag) and "jsonschema" in installed(result.tag)
    assert api.check_imports(result.tag, ["jsonschema", "jupyter_events.logger"]) == {}


def test_second_build_builds_nothing_and_returns_the_same_tag(example):
    folder, first = example
    again = api.build(folder)
    assert (again.built, again.tag, again.image_id) == (False, first.tag, first.image_id)
    cli = dsenv("build", str(folder))
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == first.tag
    assert "up to date" in cli.stderr


def test_editing_markdown_and_code_keeps_the_tag(example):
    folder, first = example
    path = folder / "sine_fit.ipynb"
    original = path.read_text()
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\n\nAn edited paragraph."
    nb.cells[-1].source += "\nax.set_title('edited')"
    nb.cells.append(nbformat.v4.new_code_cell("print(df.y.mean())"))
    nbformat.write(nb, path)
    try:
        again = api.build(folder)
        assert (again.built, again.tag) == (False, first.tag)
    finally:
        path.write_text(original)


def test_adding_a_requirement_gives_a_new_tag_built_over_the_previous_image(example, workdir, made_names):
    from .conftest import new_env

    folder, first = example
    added = new_env(workdir, made_names, folder, "added")
    # same environment name as the example so the previous image is found: copy keeps the notebooks and lock
    added_nb = added / "sine_fit.ipynb"
    nb = nbformat.read(added_nb, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("%pip install tqdm\nimport tqdm"))
    nbformat.write(nb, added_nb)
    plain = api.build(added)  # a new name: full build of the original env would be up to date under its own name
    (added / "requirements.txt").write_text("rich\n")
    result = api.build(added)
    assert result.built and result.delta
    assert result.tag != plain.tag != first.tag
    have = installed(result.tag)
    assert have == locked(added)
    assert "rich" in have and "tqdm" in have
    # the full Dockerfile builds the same set of packages from the base
    assert "uv pip sync" in result.plan.build.dockerfile


def test_layers_keep_no_caches_and_labels_no_ca_bundle(example):
    folder, result = example
    client = docker.from_env()
    image = client.images.get(result.tag)
    labels = image.labels
    assert json.loads(labels["io.dsenv.spec"])["requirements"] == ["matplotlib", "numpy", "pandas"]
    assert labels["io.dsenv.lock.sha256"] == lock.read_lock(folder / "dsenv.lock").sha256
    assert {"io.dsenv.version", "org.opencontainers.image.created", "org.opencontainers.image.source"} <= set(labels)
    bundle = ca_bundle(load_config())
    for value in labels.values():
        assert "BEGIN CERTIFICATE" not in value
        if bundle:
            assert bundle.decode(errors="ignore")[:200] not in value
    history = " ".join(h.get("CreatedBy", "") for h in image.history())
    assert "BEGIN CERTIFICATE" not in history
    from dsenv import engine

    code, out = engine.run_once(result.tag, ["sh", "-c", (
        "find / -xdev \\( -path /proc -o -path /sys -o -path /usr/share/python-wheels \\) -prune -o \\( -name '*.whl' -o -path '*/.cache/pip/*'"
        " -o -path '*/.cache/uv/*' -o -path '/var/cache/apt/archives/*.deb' -o -path '/var/lib/apt/lists/*_Packages*'"
        " -o -path '/tmp/*' \\) -print; echo END")])
    assert code == 0 and out.strip() == "END", out


def test_dsenv_images_lists_the_build(example):
    folder, result = example
    cli = dsenv("images", "--json")
    assert cli.returncode == 0, cli.stderr
    tags = {t for i in json.loads(cli.stdout) for t in i["tags"]}
    assert result.tag in tags


def test_exported_dockerfile_builds_the_same_environment_with_plain_docker_build(example, workdir):
    folder, result = example
    out = workdir / f"export-{folder.name}"
    cli = dsenv("export", str(folder), str(out))
    assert cli.returncode == 0, cli.stderr
    assert (out / "Dockerfile").is_file() and (out / "environment.txt").is_file()
    again = dsenv("export", str(folder), str(out))
    assert again.returncode == 2 and "not empty" in again.stderr
    client = docker.from_env()
    tag = f"dsenv-export-test-{folder.name}:latest"
    client.images.build(path=str(out), tag=tag, rm=True, forcerm=True)  # the classic builder, as any CI has
    try:
        assert installed(tag) == locked(folder) == installed(result.tag)
    finally:
        client.images.remove(tag, force=True)
