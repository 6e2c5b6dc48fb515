"""User configuration: ~/.config/dsenv/config.toml, overridden by DSENV_* environment variables."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_BASE = "python:{python}-slim"
BOOTSTRAP_BASE = "dsenv/python:{python}-{suite}"
CA_ENV_VARS = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


@dataclass(frozen=True)
class Config:
    """Settings that are the user's, not the notebook's: default base image, Python, CA bundle."""

    base_image: str = DEFAULT_BASE
    python: str = "3.11"
    ca_bundle: str | None = None
    base_image_set: bool = False
    cuda: str | None = None


def config_path() -> Path:
    """Where the user's config file lives (DSENV_CONFIG, else $XDG_CONFIG_HOME/dsenv/config.toml)."""
    if os.environ.get("DSENV_CONFIG"):
        return Path(os.environ["DSENV_CONFIG"])
    root = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return root / "dsenv" / "config.toml"


def load_config() -> Config:
    """The config file merged with environment overrides (DSENV_BASE_IMAGE, DSENV_PYTHON, DSENV_CA_BUNDLE,
    DSENV_CUDA)."""
    data: dict = {}
    path = config_path()
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: not valid TOML ({e})", f"fix or remove {path}") from e
    base = os.environ.get("DSENV_BASE_IMAGE") or data.get("base_image")
    return Config(
        base_image=str(base or DEFAULT_BASE),
        python=str(os.environ.get("DSENV_PYTHON") or data.get("python") or "3.11"),
        ca_bundle=os.environ.get("DSENV_CA_BUNDLE") or data.get("ca_bundle"),
        base_image_set=bool(base),
        cuda=str(os.environ.get("DSENV_CUDA") or data.get("cuda") or "") or None,
    )


def ca_bundle(config: Config) -> bytes | None:
    """The CA bundle to trust during builds: the configured one, else the first of PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE."""
    candidates = [config.ca_bundle] if config.ca_bundle else [os.environ.get(v) for v in CA_ENV_VARS]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_bytes()
        if candidate and config.ca_bundle:
            raise UsageError(f"CA bundle {candidate} not found", "fix ca_bundle in the config or DSENV_CA_BUNDLE")
    return None
