"""Readers for every explicit spec source: metadata.dsenv, dsenv.toml and the repo2docker-style files."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from .errors import CREDENTIALS, SpecError, mask_credentials
from .indexes import IndexOption, parse_index_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?(=[A-Za-z0-9.+~:\-]+)?$")
PYTHON_VERSION = re.compile(r"^3\.\d{1,2}$")
JUPYTER_FLAVOURS = ("lab", "notebook", "kernel")
SPEC_KEYS = {"python": str, "requirements": list, "apt": list, "base": str, "jupyter": str, "post_build": str}
IGNORED_KEYS = {"provenance"}


@dataclass
class Declared:
    """What one source declares, each value tagged with the source's name."""

    source: str
    python: str | None = None
    requires_python: str | None = None
    requirements: list[str] = field(default_factory=list)
    apt: list[str] = field(default_factory=list)
    base: str | None = None
    jupyter: str | None = None
    post_build: str | None = None
    indexes: list[IndexOption] = field(default_factory=list)


def parse_requirement(text: str, source: str) -> Requirement:
    """A PEP 508 requirement, or a SpecError naming the source and the line."""
    line = text.strip()
    if line.startswith(("-e ", "--editable")):
        raise SpecError(source, f"editable requirement '{line}' is not supported",
                        "install the package from an index, or name it as 'name @ https://...'")
    if line.startswith(("./", "../", "/", "file:")) or line in {".", ".."}:
        raise SpecError(source, f"local path requirement '{line}' is not supported",
                        "the image cannot see local paths at build time: publish the package or use 'name @ https://...'")
    if re.match(r"^(git|hg|svn|bzr)\+", line) or re.match(r"^https?://", line):
        raise SpecError(source, f"URL requirement '{line}' has no package name", "write it as 'name @ URL'")
    try:
        req = Requirement(line)
    except InvalidRequirement as e:
        raise SpecError(source, f"invalid requirement '{line}': {str(e).splitlines()[0]}") from e
    if req.url and CREDENTIALS.search(req.url):
        raise SpecError(source, f"requirement '{mask_credentials(line)}' carries a password in its URL",
                        "it would be stored in the lock and the image: put the credentials in ~/.netrc or a keyring "
                        "and write the URL without them")
    return req


INDEX_OPTION = re.compile(r"^(?P<opt>-i|--index-url|--extra-index-url)(?:\s*=\s*|\s+)(?P<url>\S+)$")


def read_requirements_file(path: Path, source: str | None = None, _seen: set[Path] | None = None,
                           indexes: list[IndexOption] | None = None) -> list[str]:
    """Requirement lines of a pip requirements file: comments, continuations and -r includes handled; --index-url
    and --extra-index-url lines go to indexes (where the caller takes them; elsewhere they are a SpecError)."""
    source = source or path.name
    seen = _seen if _seen is not None else set()
    if path.resolve() in seen:
        return []
    seen.add(path.resolve())
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(source, "not UTF-8 text") from e
    out: list[str] = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ", "-r", "--requirement=")):
            name = re.sub(r"^(-r|--requirement)[ =]?", "", line).strip()
            include = path.parent / name
            if not include.is_file():
                raise SpecError(source, f"included file '{name}' not found")
            out.extend(read_requirements_file(include, include.name, seen, indexes))
            continue
        if line.startswith(("-c", "--constraint")):
            raise SpecError(source, f"constraint files are not supported ('{line}')", "pin versions in the file itself")
        index = INDEX_OPTION.match(line)
        if index and indexes is not None:
            kind = "index-url" if index.group("opt") in ("-i", "--index-url") else "extra-index-url"
            indexes.append(IndexOption(kind, parse_index_url(index.group("url"), source), source))
            continue
        if index:
            raise SpecError(source, f"index options are read from requirements.txt beside the notebook only "
                            f"('{mask_credentials(line)}')", "move the line there")
        if line.startswith(("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host",
                            "--no-index")):
            raise SpecError(source, f"index option '{mask_credentials(line)}' is not supported",
                            "use --index-url URL or --extra-index-url URL (credentials in the URL or in ~/.netrc)")
        if line.startswith("-") and not line.startswith(("-e ", "--editable")):
            raise SpecError(source, f"unsupported option line '{line}'", "keep only requirement lines")
        parse_requirement(line, source)
        out.append(line)
    return out


def read_apt_file(path: Path) -> list[str]:
    """Package names from an apt.txt (one or more a line, '#' comments)."""
    names: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        names.extend(line.split())
    for name in names:
        check_apt_name(name, path.name)
    return names


def check_apt_name(name: str, source: str) -> str:
    """An apt package name is letters, digits and + . - only (never shell): anything else is a SpecError."""
    if not APT_NAME.match(name):
        raise SpecError(source, f"'{name}' is not a valid Debian package name",
                        "apt package names use lowercase letters, digits and + . - only")
    return name


def read_runtime_txt(path: Path) -> str:
    """The Python version of a repo2docker runtime.txt ('python-3.X' or 'python-3.X.Y')."""
    text = path.read_text(encoding="utf-8").strip()
    m = re.fullmatch(r"python-(3\.\d{1,2})(\.\d+)?", text)
    if not m:
        raise SpecError(path.name, f"unsupported runtime '{text}'", "write 'python-3.X', e.g. python-3.11")
    return m.group(1)


def read_environment_yml(path: Path, conda_map: dict[str, str | None]) -> Declared:
    """Python version, conda packages (mapped to PyPI names) and the pip: section of an environment.yml."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise SpecError(path.name, f"not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise SpecError(path.name, "top level is not a mapping")
    declared = Declared(source=path.name)
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise SpecError(path.name, "'dependencies' is not a list")
    for dep in deps:
        if isinstance(dep, dict):
            pip = dep.get("pip") or []
            if not isinstance(pip, list):
                raise SpecError(path.name, "'pip' section is not a list")
            for line in pip:
                line = str(line).strip()
                if line.startswith("-r "):
                    declared.requirements.extend(read_requirements_file(path.parent / line[3:].strip()))
                else:
                    parse_requirement(line, f"{path.name} (pip)")
                    declared.requirements.append(line)
            continue
        conda = str(dep).strip().split("::")[-1]
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", conda)
        if not m:
            raise SpecError(path.name, f"cannot read dependency '{dep}'")
        name, version = m.group(1).lower(), m.group(2).strip()
        if name == "python":
            v = re.match(r"^=?=?\s*(3\.\d{1,2})", version)
            if v:
                declared.python = v.group(1)
            continue
        if name in conda_map and conda_map[name] is None:
            continue
        declared.requirements.append(conda_map.get(name, name) + _conda_version(version))
    return declared


def _conda_version(version: str) -> str:
    """conda's 'x=1.2' means 1.2.*; 'x==1.2' exact; build strings after a second '=' are dropped."""
    version = version.replace(" ", "")
    if not version:
        return ""
    if version.startswith("=") and not version.startswith("=="):
        return f"=={version[1:].split('=')[0].rstrip('*').rstrip('.')}.*"
    if re.match(r"^\d", version):
        return f"=={version.split('=')[0].rstrip('*').rstrip('.')}.*"
    return version.split("=")[0] if version.count("=") > 2 else version


def read_pyproject(path: Path) -> Declared:
    """[project] dependencies and requires-python of a pyproject.toml."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SpecError(path.name, f"not valid TOML ({e})") from e
    project = data.get("project") or {}
    declared = Declared(source=path.name)
    deps = project.get("dependencies") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise SpecError(path.name, "[project] dependencies is not a list of strings")
    for dep in deps:
        parse_requirement(dep, path.name)
    declared.requirements = list(deps)
    rp = project.get("requires-python")
    if rp is not None:
        try:
            SpecifierSet(str(rp))
        except InvalidSpecifier as e:
            raise SpecError(path.name, f"invalid requires-python '{rp}'") from e
        declared.requires_python = str(rp)
    return declared


def read_dsenv_mapping(data: Any, source: str) -> Declared:
    """A metadata.dsenv or dsenv.toml mapping, type-checked key by key."""
    if not isinstance(data, dict):
        raise SpecError(source, f"must be a mapping, not {type(data).__name__}",
                        'write e.g. {"python": "3.11", "requirements": ["numpy"]}')
    unknown = sorted(set(data) - set(SPEC_KEYS) - IGNORED_KEYS)
    if unknown:
        raise SpecError(source, f"unknown key(s) {', '.join(unknown)}", f"allowed keys: {', '.join(SPEC_KEYS)}")
    for key, kind in SPEC_KEYS.items():
        if key in data and not isinstance(data[key], kind):
            raise SpecError(source, f"'{key}' must be a {kind.__name__}, not {type(data[key]).__name__}")
    declared = Declared(source=source)
    for key in ("requirements", "apt"):
        for item in data.get(key, []):
            if not isinstance(item, str):
                raise SpecError(source, f"'{key}' must hold strings, found {type(item).__name__}")
    for req in data.get("requirements", []):
        parse_requirement(req, source)
    declared.requirements = list(data.get("requirements", []))
    declared.apt = [check_apt_name(a, source) for a in data.get("apt", [])]
    if "python" in data:
        if not PYTHON_VERSION.match(data["python"]):
            raise SpecError(source, f"python '{data['python']}' is not a version like 3.11")
        declared.python = data["python"]
    if "jupyter" in data and data["jupyter"] not in JUPYTER_FLAVOURS:
        raise SpecError(source, f"jupyter '{data['jupyter']}' is not one of {', '.join(JUPYTER_FLAVOURS)}")
    declared.jupyter = data.get("jupyter")
    declared.base = data.get("base")
    declared.post_build = data.get("post_build")
    return declared


def read_dsenv_toml(path: Path) -> Declared:
    """dsenv.toml: the same keys as metadata.dsenv, at top level or under [dsenv]."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SpecError(path.name, f"not valid TOML ({e})") from e
    return read_dsenv_mapping(data.get("dsenv", data), path.name)


def read_standard_files(folder: Path, conda_map: dict[str, str | None]) -> list[Declared]:
    """repo2docker's files: binder/ or .binder/ first, else the folder itself."""
    where = next((folder / d for d in ("binder", ".binder") if (folder / d).is_dir()), folder)
    prefix = "" if where == folder else f"{where.name}/"
    found: list[Declared] = []
    env_yml = next((where / n for n in ("environment.yml", "environment.yaml") if (where / n).is_file()), None)
    if env_yml:
        d = read_environment_yml(env_yml, conda_map)
        d.source = prefix + d.source
        found.append(d)
    if (where / "requirements.txt").is_file():
        src = prefix + "requirements.txt"
        indexes: list[IndexOption] = []
        lines = read_requirements_file(where / "requirements.txt", src, indexes=indexes)
        found.append(Declared(source=src, requirements=lines, indexes=indexes))
    if (where / "pyproject.toml").is_file():
        d = read_pyproject(where / "pyproject.toml")
        d.source = prefix + d.source
        found.append(d)
    if (where / "runtime.txt").is_file():
        found.append(Declared(source=prefix + "runtime.txt", python=read_runtime_txt(where / "runtime.txt")))
    if (where / "apt.txt").is_file():
        found.append(Declared(source=prefix + "apt.txt", apt=read_apt_file(where / "apt.txt")))
    if (where / "postBuild").is_file():
        found.append(Declared(source=prefix + "postBuild", post_build=(where / "postBuild").read_text(encoding="utf-8")))
    return found
