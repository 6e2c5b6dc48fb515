"""Reading notebooks and finding the notebooks a target path stands for."""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NotebookError, UsageError

SPEC_FILES = ("dsenv.toml", "binder", ".binder", "requirements.txt", "environment.yml", "environment.yaml",
              "pyproject.toml", "apt.txt", "runtime.txt")
OUTPUT_SUFFIX = ".out.ipynb"  # what `dsenv repro` writes beside a notebook: an output, not a notebook of the folder
SKIP_DIRS = {".ipynb_checkpoints", "__pycache__", "node_modules", ".git", ".venv", "venv", "binder", ".binder"}


@dataclass(frozen=True)
class Target:
    """What the user pointed at: a folder of notebooks or one notebook, and the folder sidecar files live in."""

    path: Path
    folder: Path
    notebooks: tuple[Path, ...]
    single: bool

    @property
    def name(self) -> str:
        """The short name used for image repositories and lock files."""
        return self.path.stem if self.single else self.folder.name

    @property
    def lock_path(self) -> Path:
        """Where this target's lock file lives: dsenv.lock for a folder, <stem>.dsenv.lock for one notebook."""
        return self.folder / (f"{self.path.stem}.dsenv.lock" if self.single else "dsenv.lock")


@dataclass
class Notebook:
    """The parts of a notebook dsenv reads: code cell sources, its dsenv metadata and its kernel language."""

    path: Path
    code_cells: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    language: str = "python"

    @property
    def dsenv_metadata(self) -> dict[str, Any]:
        """The notebook's metadata.dsenv mapping (empty when absent)."""
        value = self.metadata.get("dsenv", {})
        return value if isinstance(value, dict) else {"__invalid__": value}


def find_target(path: str | Path) -> Target:
    """Resolve a user's path (folder or .ipynb) into a Target; a missing path, or a folder with neither notebooks nor
    environment files, is an error."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"{path}: no such file or folder", "give a notebook (.ipynb) or a folder of notebooks")
    p = p.resolve()
    if p.is_file():
        if p.suffix != ".ipynb":
            raise UsageError(f"{path}: not a notebook (.ipynb)", "give a notebook or a folder of notebooks")
        return Target(path=p, folder=p.parent, notebooks=(p,), single=True)
    notebooks = tuple(sorted(_walk_notebooks(p)))
    if not notebooks and not any((p / n).exists() for n in SPEC_FILES):
        raise UsageError(f"{path}: no notebooks (.ipynb) and no environment files here",
                         "give a folder with notebooks, or a notebook")
    return Target(path=p, folder=p, notebooks=notebooks, single=False)


def _walk_notebooks(folder: Path):
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or child.name in SKIP_DIRS:
            continue
        if child.is_dir():
            yield from _walk_notebooks(child)
        elif child.suffix == ".ipynb" and not child.name.endswith(OUTPUT_SUFFIX):
            yield child


def load_notebook(path: Path) -> Notebook:
    """Read one notebook: well-formed nbformat 4 JSON directly; anything else (older formats to convert, errors to
    explain) through nbformat, which converts it or names the problem in a NotebookError."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise NotebookError(str(path), f"cannot read: {e.strerror}") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotebookError(str(path), f"not UTF-8 text (byte {e.start})") from e
    quick = _quick_read(path, text)
    return quick if quick is not None else _nbformat_read(path, text)


def _quick_read(path: Path, text: str) -> Notebook | None:
    """The common case without loading nbformat's schema validator: nbformat 4 with well-typed cells."""
    try:
        nb = json.loads(text)
    except ValueError:
        return None
    if not isinstance(nb, dict) or nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        return None
    meta = nb.get("metadata", {})
    if not isinstance(meta, dict):
        return None
    code: list[str] = []
    for cell in nb["cells"]:
        if not isinstance(cell, dict) or cell.get("cell_type") not in {"code", "markdown", "raw"}:
            return None
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            return None
        if cell["cell_type"] == "code":
            code.append(source)
    return Notebook(path=path, code_cells=code, metadata=meta, language=_language(meta))


def _language(meta: dict[str, Any]) -> str:
    kernelspec = meta.get("kernelspec") if isinstance(meta.get("kernelspec"), dict) else {}
    info = meta.get("language_info") if isinstance(meta.get("language_info"), dict) else {}
    return str(kernelspec.get("language") or info.get("name") or "python").lower()


def _nbformat_read(path: Path, text: str) -> Notebook:
    import nbformat
    from nbformat import ValidationError
    from nbformat.reader import NotJSONError
    captured: dict[str, Any] = {}
    logger = logging.getLogger("traitlets")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():  # nbformat's own deprecation notes (missing cell ids...) are not the user's
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4, capture_validation_error=captured)
    except NotJSONError as e:
        raise NotebookError(str(path), f"not valid JSON ({_json_problem(text)})") from e
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as e:
        raise NotebookError(str(path), f"not a notebook nbformat can read ({str(e).splitlines()[0][:200]})") from e
    finally:
        logger.setLevel(previous)
    if "ValidationError" in captured:
        err = captured["ValidationError"]
        where = "/".join(str(x) for x in getattr(err, "absolute_path", [])) or "top level"
        raise NotebookError(str(path), f"invalid nbformat at {where}: {getattr(err, 'message', err)}")
    meta = _plain(dict(nb.get("metadata", {})))
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    return Notebook(path=path, code_cells=code, metadata=meta, language=_language(meta))


def _json_problem(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    return "unreadable"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
