"""Recording results from inside a notebook: `from dsenv import record; record("accuracy", acc)`.

The value is shown as a display output with the media type `application/vnd.dsenv.record+json`; `dsenv sweep`
copies what a run recorded into the output notebook's `metadata.dsenv.records`, and `dsenv sweep collect` puts it in
its table. This module is standalone on purpose (the standard library, and IPython when present): dsenv is not
installed in the images it builds, so sweeps put a copy of this file on the kernel's path as a tiny `dsenv` package.
"""
from __future__ import annotations

import json
import math
import sys
import types
from typing import Any

MIME = "application/vnd.dsenv.record+json"


def plain(value: Any) -> Any:
    """A JSON-safe copy of a value: NumPy scalars and arrays, pandas objects and tuples become plain Python."""
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    for attr in ("item", "tolist", "to_dict"):  # numpy scalars / arrays, pandas objects
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return plain(fn())
            except (TypeError, ValueError):
                continue
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def record(name: str, value: Any) -> Any:
    """Record a named result of this run (shown as `name = value`); returns the value unchanged."""
    if not isinstance(name, str) or not name:
        raise ValueError("record(name, value): name must be a non-empty string")
    data = {"name": name, "value": plain(value)}
    try:
        from IPython.display import display
    except ImportError:  # plain Python: print a line a log reader can still find
        print(f"dsenv.record {json.dumps(data)}")
        return value
    display({MIME: data, "text/plain": f"{name} = {data['value']!r}"}, raw=True)
    return value


class _CallableModule(types.ModuleType):
    """`from dsenv import record` may bind this module itself: calling it records."""

    def __call__(self, name: str, value: Any) -> Any:
        return record(name, value)


sys.modules[__name__].__class__ = _CallableModule
