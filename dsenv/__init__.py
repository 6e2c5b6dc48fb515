"""dsenv: turn Jupyter notebooks into reproducible Docker images and run them."""
from __future__ import annotations

__version__ = "0.1.0"

_API = {"plan", "lock", "build", "images", "bootstrap_base", "Plan", "BuildResult"}


def load_ipython_extension(ip) -> None:
    """`%load_ext dsenv`: the %dsenv magics."""
    from .jupyter.magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip) -> None:
    """`%unload_ext dsenv`: stops the kernel containers of %%dsenv run cells."""
    from .jupyter.magics import unload_ipython_extension as unload

    unload(ip)


def __getattr__(name: str):
    """The public API (dsenv.api) is loaded on first use, so `import dsenv` stays light."""
    if name in _API:
        from . import api

        return getattr(api, name)
    if name == "record":
        from .record import record

        return record
    if name == "DsenvError":
        from .errors import DsenvError

        return DsenvError
    raise AttributeError(f"module 'dsenv' has no attribute {name!r}")
