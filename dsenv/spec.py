"""EnvSpec: what an environment needs, merged from every source by precedence, as canonical JSON with a stable hash."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from . import sources as src
from .errors import ConflictError, SpecError
from .indexes import IndexOption
from .indexes import canonical as canonical_indexes
from .indexes import choose as choose_indexes
from .infer import cell_cache, infer_cells
from .notebook import Target, load_notebook

DEFAULT_PYTHON = "3.11"
LEVELS = {1: "metadata.dsenv", 2: "dsenv.toml", 3: "standard files", 4: "inferred"}


@dataclass(frozen=True)
class ReqEntry:
    """One Python requirement of the environment and every source that asked for it."""

    name: str
    requirement: str
    sources: tuple[str, ...]
    explicit: bool


@dataclass(frozen=True)
class AptEntry:
    """One Debian package of the environment and the sources that asked for it."""

    name: str
    sources: tuple[str, ...]


@dataclass
class EnvSpec:
    """The merged environment: Python version, requirements, apt packages, base, Jupyter flavour, postBuild."""

    python: str = DEFAULT_PYTHON
    python_source: str = "default"
    requirements: tuple[ReqEntry, ...] = ()
    apt: tuple[AptEntry, ...] = ()
    base: str | None = None
    base_source: str = "config"
    jupyter: str = "lab"
    post_build: str | None = None
    notes: list[str] = field(default_factory=list)
    imports: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()  # the build host's limits on versions (the CUDA cap); not the notebook's
    indexes: tuple[IndexOption, ...] = ()  # --index-url / --extra-index-url of requirements.txt (URLs may hold passwords)

    def canonical(self) -> dict[str, Any]:
        """The content that defines the environment (sources and credentials left out), with every list sorted."""
        extra = {"indexes": canonical_indexes(self.indexes)} if self.indexes else {}
        return {
            **extra,
            "apt": sorted(a.name for a in self.apt),
            "base": self.base,
            "jupyter": self.jupyter,
            "post_build": hashlib.sha256(self.post_build.encode()).hexdigest() if self.post_build else None,
            "python": self.python,
            "requirements": sorted((r.requirement for r in self.requirements), key=str.lower),
        }

    def canonical_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces; equal specs give equal bytes."""
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        """sha256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


@lru_cache(maxsize=None)
def _data(name: str) -> dict[str, Any]:
    return json.loads(resources.files("dsenv").joinpath("data", name).read_text(encoding="utf-8"))


def import_map() -> dict[str, str]:
    """The curated import-name -> distribution table shipped in dsenv/data/import_map.json."""
    return _data("import_map.json")["imports"]


def conda_map() -> dict[str, str | None]:
    """conda package name -> PyPI name (None: not a Python package, skipped)."""
    return _data("import_map.json")["conda"]


def stdlib_modules(python: str) -> frozenset[str]:
    """Top-level stdlib module names of the target Python version (nearest known version if not listed)."""
    table = _data("stdlib.json")
    if python not in table:
        known = sorted((k for k in table if k[0].isdigit()), key=lambda v: tuple(map(int, v.split("."))))
        minor = int(python.split(".")[1])
        python = min(known, key=lambda v: abs(int(v.split(".")[1]) - minor))
    return frozenset(table[python])


def distribution_for_import(module: str) -> str:
    """The PyPI distribution that provides an import: the longest dotted prefix in the table, else the top name."""
    table = import_map()
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        hit = table.get(".".join(parts[:i]))
        if hit:
            return hit
    return parts[0]


def local_modules(folder: Path) -> set[str]:
    """Names importable from the folder itself: .py files and sub-folders are local modules, not requirements."""
    names: set[str] = set()
    try:
        children = list(folder.iterdir())
    except OSError:
        return names
    for child in children:
        if child.is_dir() and not child.name.startswith("."):
            names.add(child.name)
        elif child.suffix in {".py", ".so", ".pyd"}:
            names.add(child.name.split(".")[0])
    return names


class _Collector:
    """Gathers requirements, apt packages and scalar settings with their sources, then merges them."""

    def __init__(self) -> None:
        self.reqs: dict[str, list[tuple[Requirement, str, int]]] = {}
        self.apt: dict[str, list[str]] = {}
        self.scalars: dict[str, list[tuple[str, str, int]]] = {}
        self.requires_python: list[tuple[str, str]] = []
        self.indexes: list[tuple[int, IndexOption]] = []

    def add_declared(self, d: src.Declared, level: int) -> None:
        for line in d.requirements:
            self.add_req(src.parse_requirement(line, d.source), d.source, level)
        for name in d.apt:
            self.apt.setdefault(name, []).append(d.source)
        for key in ("python", "base", "jupyter", "post_build"):
            value = getattr(d, key)
            if value is not None:
                self.scalars.setdefault(key, []).append((value, d.source, level))
        if d.requires_python:
            self.requires_python.append((d.requires_python, d.source))
        self.indexes.extend((level, o) for o in d.indexes)

    def add_req(self, req: Requirement, source: str, level: int) -> None:
        self.reqs.setdefault(canonicalize_name(req.name), []).append((req, source, level))

    def scalar(self, key: str) -> tuple[str, str] | None:
        items = sorted(self.scalars.get(key, []), key=lambda x: x[2])
        if not items:
            return None
        top = [i for i in items if i[2] == items[0][2]]
        distinct = {v for v, _, _ in top}
        if len(distinct) > 1:
            (a, sa, _), (b, sb, _) = top[0], next(t for t in top if t[0] != top[0][0])
            raise SpecError(f"{sa}, {sb}", f"conflicting {key}: '{a}' and '{b}'", f"make {sa} and {sb} agree")
        return items[0][0], items[0][1]

    def merged_requirements(self) -> tuple[ReqEntry, ...]:
        out = []
        for name, items in sorted(self.reqs.items()):
            pins: dict[tuple[str, str, str], tuple[Requirement, str]] = {}
            for req, source, _ in sorted(items, key=lambda x: x[2]):
                if req.specifier or req.url or req.marker:
                    pins.setdefault((str(req.specifier), req.url or "", str(req.marker or "")), (req, source))
            if len(pins) > 1:
                (ra, sa), (rb, sb) = list(pins.values())[:2]
                raise ConflictError(name, (_pin_text(ra), sa), (_pin_text(rb), sb))
            chosen = next(iter(pins.values()))[0] if pins else min(items, key=lambda x: x[2])[0]
            extras = sorted(set().union(*(r.extras for r, _, _ in items)))
            text = name + (f"[{','.join(extras)}]" if extras else "")
            if chosen.url:
                text += f" @ {chosen.url}"
            else:
                text += ",".join(sorted(str(s) for s in chosen.specifier))
            if chosen.marker:
                text += f" ; {chosen.marker}"
            sources = tuple(dict.fromkeys(s for _, s, _ in sorted(items, key=lambda x: x[2])))
            out.append(ReqEntry(name, text, sources, any(lvl < 4 for _, _, lvl in items)))
        return tuple(out)


def _pin_text(req: Requirement) -> str:
    return str(req)[len(req.name):].strip() or str(req)


def build_spec(target: Target, default_python: str = DEFAULT_PYTHON) -> EnvSpec:
    """Read every source of a target and merge them into one EnvSpec (see DESIGN.md, spec sources and precedence)."""
    c = _Collector()
    notebooks = [load_notebook(p) for p in target.notebooks]
    for nb in notebooks:
        meta = nb.dsenv_metadata
        if meta:
            c.add_declared(src.read_dsenv_mapping(meta.get("__invalid__", meta), f"metadata.dsenv ({_rel(nb.path, target)})"), 1)
    if (target.folder / "dsenv.toml").is_file():
        c.add_declared(src.read_dsenv_toml(target.folder / "dsenv.toml"), 2)
    for declared in src.read_standard_files(target.folder, conda_map()):
        c.add_declared(declared, 3)

    chosen_python = c.scalar("python")
    python, python_source = chosen_python or (default_python, "default")
    for spec_text, source in c.requires_python:
        if python not in SpecifierSet(spec_text) and f"{python}.0" not in SpecifierSet(spec_text):
            raise SpecError(source, f"requires-python '{spec_text}' excludes Python {python} (from {python_source})",
                            "set a Python version it allows in runtime.txt or metadata.dsenv")

    imports: set[str] = set()
    notes = _infer_into(c, notebooks, target, python, imports)
    base = c.scalar("base")
    jupyter = c.scalar("jupyter")
    post_build = c.scalar("post_build")
    apt = tuple(AptEntry(n, tuple(dict.fromkeys(s))) for n, s in sorted(c.apt.items()))
    return EnvSpec(
        python=python, python_source=python_source, requirements=c.merged_requirements(), apt=apt,
        base=base[0] if base else None, base_source=base[1] if base else "config",
        jupyter=jupyter[0] if jupyter else "lab", post_build=post_build[0] if post_build else None, notes=notes,
        imports=tuple(sorted(imports)), indexes=choose_indexes([o for _, o in sorted(c.indexes, key=lambda x: x[0])]),
    )


def _rel(path: Path, target: Target) -> str:
    try:
        return str(path.relative_to(target.folder))
    except ValueError:
        return path.name


def _infer_into(c: _Collector, notebooks: list, target: Target, python: str, imports: set[str]) -> list[str]:
    stdlib = stdlib_modules(python)
    notes: list[str] = []
    local_cache: dict[Path, set[str]] = {}
    with cell_cache() as cells:
        for nb in notebooks:
            _infer_notebook(c, nb, target, stdlib, local_cache, cells, notes, imports)
    return notes


def _infer_notebook(c: _Collector, nb, target: Target, stdlib: frozenset[str], local_cache: dict[Path, set[str]],
                    cells: dict, notes: list[str], imports: set[str]) -> None:
    name = _rel(nb.path, target)
    if nb.language != "python":
        notes.append(f"{name}: kernel language '{nb.language}', imports not inferred")
        return
    local = local_cache.setdefault(nb.path.parent, local_modules(nb.path.parent) | local_modules(target.folder))
    for f in infer_cells(nb.code_cells, cells):
        if f.kind == "import":
            top = f.value.split(".")[0]
            if top in stdlib or top in local or top.startswith("_"):
                continue
            if top == "dsenv":  # dsenv.record: dsenv's runs put it on the kernel's path; never a PyPI requirement
                continue
            if f.optional:
                notes.append(f"{name}: optional import {f.value} (inside try/except ImportError) not required")
                continue
            imports.add(top)
            dist = distribution_for_import(f.value)
            c.add_req(Requirement(dist), f"import {top} ({name})", 4)
        elif f.kind == "pip":
            try:
                c.add_req(src.parse_requirement(f.value, name), f"%pip ({name})", 4)
            except SpecError as e:
                notes.append(f"{name}: pip install argument skipped: {e.problem}")
        elif f.kind == "pip-file":
            path = nb.path.parent / f.value
            if path.is_file():
                for line in src.read_requirements_file(path, f"{f.value} via %pip ({name})"):
                    c.add_req(src.parse_requirement(line, f.value), f"{f.value} via %pip ({name})", 4)
            else:
                notes.append(f"{name}: pip -r {f.value}: file not found, skipped")
        elif f.kind == "apt":
            if src.APT_NAME.match(f.value):
                c.apt.setdefault(f.value, []).append(f"!apt-get ({name})")
            else:
                notes.append(f"{name}: apt-get argument '{f.value}' is not a package name, skipped")
