"""Shared test settings: each test session gets its own cache and config, never the user's."""
from __future__ import annotations

import os
import tempfile

_ISOLATED = tempfile.mkdtemp(prefix="dsenv-tests-")
os.environ["XDG_CACHE_HOME"] = os.path.join(_ISOLATED, "cache")
os.environ["DSENV_CONFIG"] = os.path.join(_ISOLATED, "no-config.toml")
