"""Parameter grids: `-p NAME V1 V2 ...` axes and YAML grid files, expanded to parameter sets, each named by a
stable hash of its parameters."""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..yamlfile import read_yaml_file
from .errors import GridError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_value(text: str) -> Any:
    """A command-line value typed as papermill's -p types it: True/False/None, int, float, else the string."""
    if text == "True":
        return True
    if text == "False":
        return False
    if text == "None":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def parse_axes(words: Sequence[str]) -> dict[str, list[Any]]:
    """`-p lr 0.1 0.01 -p depth 4 8` (as words) -> {"lr": [0.1, 0.01], "depth": [4, 8]}; order kept."""
    axes: dict[str, list[Any]] = {}
    current: str | None = None
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-p", "--parameter"):
            if i + 1 >= len(words):
                raise GridError(f"{word} needs a NAME and at least one value", "write -p NAME V1 [V2 ...]")
            current = words[i + 1]
            if not NAME.fullmatch(current):
                raise GridError(f"-p {current}: not a Python name", "parameters are variables of the parameters cell")
            if current in axes:
                raise GridError(f"-p {current} given twice", "list all values after one -p")
            axes[current] = []
            i += 2
            continue
        if current is None:
            raise GridError(f"unexpected argument {word!r}", "give parameters as -p NAME V1 [V2 ...]")
        axes[current].append(parse_value(word))
        i += 1
    for name, values in axes.items():
        if not values:
            raise GridError(f"-p {name}: no values", f"write -p {name} V1 [V2 ...]")
    return axes


def read_grid_file(path: str | Path) -> list[dict[str, Any]]:
    """A YAML grid: a mapping (a list value is an axis, anything else a fixed value), or a list of mappings (the
    parameter sets themselves, no product)."""
    data = read_yaml_file(path, "grid file", "give a YAML file mapping names to values or lists", GridError)
    if isinstance(data, dict):
        _check_names(data, path)
        return expand({k: (v if isinstance(v, list) else [v]) for k, v in data.items()})
    if isinstance(data, list) and all(isinstance(d, dict) for d in data):
        for d in data:
            _check_names(d, path)
        return [dict(d) for d in data]
    raise GridError(f"-f {path}: must be a mapping of names to values or lists, or a list of mappings")


def _check_names(data: dict, where: Any) -> None:
    for name in data:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise GridError(f"-f {where}: {name!r} is not a Python name")


def expand(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the axes, the last axis varying fastest; no axes -> one empty parameter set."""
    names = list(axes)
    for name in names:
        if not axes[name]:
            raise GridError(f"{name}: an empty list of values")
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def combine(file_sets: Iterable[dict[str, Any]] | None, axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Grid-file parameter sets crossed with the command-line axes (the command line wins on a shared name);
    duplicates dropped, order kept."""
    base = list(file_sets or [{}]) or [{}]
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for b in base:
        for point in expand(axes):
            params = {**b, **point}
            key = param_hash(params)
            if key not in seen:
                seen.add(key)
                out.append(params)
    return out


def canonical(params: dict[str, Any]) -> str:
    """Canonical JSON of a parameter set: sorted keys, no spaces (1 and 1.0 stay different)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def param_hash(params: dict[str, Any]) -> str:
    """12 hex of the SHA-256 of the canonical parameters: the same parameters always give the same name."""
    return hashlib.sha256(canonical(params).encode()).hexdigest()[:12]


def task_name(stem: str, params: dict[str, Any]) -> str:
    """The output notebook's name (without .ipynb) for a parameter set: <notebook stem>-<parameter hash>."""
    return f"{stem}-{param_hash(params)}"
