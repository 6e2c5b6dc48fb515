"""Render: spec + lock + base into a Dockerfile and a minimal build context (Jinja2 templates from templates/)."""
from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from . import __version__
from .indexes import uv_environment
from .lock import Lock
from .spec import EnvSpec

UV_VERSION = "0.13.9"
MAX_DELTA_DEPTH = 3
LABEL_PREFIX = "io.dsenv."


@dataclass
class BuildPlan:
    """Everything a build needs: context files, the content tag, labels, the delta parent, and (rendered on first
    use, so an up-to-date check never loads Jinja2) the Dockerfile text."""

    context: dict[str, bytes]
    tag: str
    labels: dict[str, str]
    stack: str
    template: str
    variables: dict = field(default_factory=dict)
    delta_parent: str | None = None
    buildkit: bool = False

    @cached_property
    def dockerfile(self) -> str:
        """The Dockerfile text."""
        return _environment().get_template(self.template).render(**self.variables, buildkit=self.buildkit)


def templates_dir() -> Path:
    """templates/ inside the installed wheel, or at the top of a source checkout."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=None)
def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        autoescape=False,
    )


def template_version(name: str = "Dockerfile.j2") -> str:
    """Short hash of a template's text: changing the template changes every tag rendered from it."""
    return hashlib.sha256((templates_dir() / name).read_bytes()).hexdigest()[:12]


def repository_name(name: str) -> str:
    """A Docker repository name for an environment: dsenv/<lowercase name with only [a-z0-9._-]>."""
    clean = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._") or "env"
    return f"dsenv/{clean[:100]}"


def _label_instruction(labels: dict[str, str]) -> str:
    parts = [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())]
    return "LABEL " + " \\\n      ".join(parts)


def render(spec: EnvSpec, lock: Lock, *, name: str, base: str, base_id: str, ca_bundle: bytes | None = None,
           post_build: bytes | None = None, bake: dict[str, bytes] | None = None,
           parent: dict | None = None, uv_binary: bytes | None = None) -> BuildPlan:
    """Render the full Dockerfile (or, given a compatible parent image, the incremental one) and compute the tag.
    uv_binary: this machine's uv (same version and platform as the image's) to copy in instead of installing it
    with pip; the image is the same either way, so the tag does not depend on it."""
    ca_sha = hashlib.sha256(ca_bundle).hexdigest() if ca_bundle else ""
    bake_sha = hashlib.sha256(json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in (bake or {}).items())).encode()).hexdigest() if bake else ""
    tv = template_version()
    stack = hashlib.sha256(json.dumps([base_id, ca_sha, sorted(a.name for a in spec.apt), spec.python, tv, UV_VERSION]).encode()).hexdigest()[:16]
    key = json.dumps([spec.canonical_json(), lock.sha256, tv, base_id, ca_sha, bake_sha, UV_VERSION])
    digest = hashlib.sha256(key.encode()).hexdigest()
    tag = f"{repository_name(name)}:{digest[:12]}"
    labels = {
        LABEL_PREFIX + "spec": spec.canonical_json(),
        LABEL_PREFIX + "spec.sha256": spec.sha256(),
        LABEL_PREFIX + "lock.sha256": lock.sha256,
        LABEL_PREFIX + "version": __version__,
        LABEL_PREFIX + "template": tv,
        LABEL_PREFIX + "stack": stack,
        LABEL_PREFIX + "python": spec.python,
        LABEL_PREFIX + "base": base,
        LABEL_PREFIX + "name": name,
    }
    context = {"environment.txt": lock.layer_text(runtime=False).encode(), "runtime.txt": lock.layer_text(runtime=True).encode()}
    index_env = "".join(f"{k}={shlex.quote(v)} " for k, v in uv_environment(spec.indexes, with_credentials=False).items())
    use_delta = (parent is not None and not post_build and not bake
                 and parent.get("stack") == stack and int(parent.get("depth", 0)) < MAX_DELTA_DEPTH)
    if use_delta:
        labels[LABEL_PREFIX + "delta-depth"] = str(int(parent["depth"]) + 1)
        variables = dict(name=name, parent=parent["id"], parent_tag=parent["tag"], label_instruction=_label_instruction(labels),
                         index_env=index_env)
        return BuildPlan(context, tag, labels, stack, "Dockerfile.delta.j2", variables, delta_parent=parent["tag"])
    labels[LABEL_PREFIX + "delta-depth"] = "0"
    if ca_bundle:
        context["ca-bundle.crt"] = ca_bundle
    if uv_binary:
        context["uv"] = uv_binary
    if post_build:
        context["postBuild"] = post_build
    for rel, data in (bake or {}).items():
        context[f"work/{rel}"] = data
    variables = dict(
        name=name, tag=tag, base=base, python=spec.python, uv_version=UV_VERSION, ca_bundle=bool(ca_bundle),
        uv_binary=bool(uv_binary),
        apt=sorted(a.name for a in spec.apt), post_build=bool(post_build), bake=bool(bake),
        label_instruction=_label_instruction(labels), index_env=index_env,
    )
    return BuildPlan(context, tag, labels, stack, "Dockerfile.j2", variables)
