"""dsenv's Jupyter server extension (REST API under /dsenv/api/) and the JupyterLab side panel it serves.

Nothing here imports jupyter_server until the server loads the extension, so `import dsenv` never needs it.
"""
from __future__ import annotations

from typing import Any

from .. import __version__  # noqa: F401  (`jupyter server extension list` shows it)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The server extension this package provides (enabled by etc/jupyter/jupyter_server_config.d/dsenv.json)."""
    return [{"module": "dsenv.labserver"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt labextension lives, for `jupyter labextension develop`."""
    return [{"src": "labextension", "dest": "dsenv"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the /dsenv/api handlers on the server's web application."""
    from .handlers import setup_handlers

    setup_handlers(serverapp.web_app, serverapp.root_dir, log=serverapp.log)
    serverapp.log.info("dsenv: REST API at %sdsenv/api/", serverapp.base_url)


load_jupyter_server_extension = _load_jupyter_server_extension  # older servers' name
