"""Parameter and grid files given with -f: YAML read with one clear error for a missing or malformed file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UsageError


def read_yaml_file(path: str | Path, what: str, hint: str, error: type[UsageError] = UsageError) -> Any:
    """The data of a YAML file named with -f ({} when empty); error(...) when it is missing or not YAML."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise error(f"-f {path}: no such {what}", hint)
    try:
        return yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise error(f"-f {path}: not valid YAML ({str(e).splitlines()[0]})", hint) from e
