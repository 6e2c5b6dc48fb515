"""Package indexes named in requirement files (`--index-url`, `--extra-index-url`): their URLs without credentials
(what the spec, the tag, the lock, labels and the Dockerfile hold), masked for display, and the credentials as a
netrc file, which reaches uv on this machine through its environment and the build only as a BuildKit secret."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import SpecError, mask_credentials

SECRET_ID = "dsenv-netrc"  # the build secret's id; mounted at /run/secrets/<id> for the install steps only


@dataclass(frozen=True)
class IndexOption:
    """One index option: kind 'index-url' (instead of PyPI) or 'extra-index-url' (besides it), its URL (which may
    carry user:password@: kept in memory only) and the file that named it."""

    kind: str
    url: str
    source: str

    @property
    def public_url(self) -> str:
        """The URL without credentials."""
        return strip_credentials(self.url)

    @property
    def shown(self) -> str:
        """The URL as dsenv shows it: a password as ****."""
        return mask_credentials(self.url)


def parse_index_url(url: str, source: str) -> str:
    """An http(s) index URL, checked; SpecError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(source, f"index URL '{mask_credentials(url)}' is not an http(s) URL",
                        "write --extra-index-url https://HOST/simple")
    return url


def strip_credentials(url: str) -> str:
    """The URL with any user:password@ removed."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def choose(options: list[IndexOption]) -> tuple[IndexOption, ...]:
    """The indexes of an environment, in precedence order (the earliest source first): at most one index-url (two
    that differ are a SpecError), extra indexes in order, each URL once."""
    main = [o for o in options if o.kind == "index-url"]
    distinct = {o.public_url for o in main}
    if len(distinct) > 1:
        a, b = main[0], next(o for o in main if o.public_url != main[0].public_url)
        raise SpecError(f"{a.source}, {b.source}", f"two different --index-url: '{a.shown}' and '{b.shown}'",
                        "keep one --index-url; name further indexes with --extra-index-url")
    seen: set[str] = set()
    chosen = []
    for o in main[:1] + [o for o in options if o.kind == "extra-index-url"]:
        if o.public_url not in seen:
            seen.add(o.public_url)
            chosen.append(o)
    return tuple(chosen)


def canonical(indexes: tuple[IndexOption, ...]) -> list[list[str]]:
    """What defines the environment: kind and credential-free URL of each, in order."""
    return [[o.kind, o.public_url] for o in indexes]


def uv_environment(indexes: tuple[IndexOption, ...], *, with_credentials: bool) -> dict[str, str]:
    """UV_INDEX_URL / UV_EXTRA_INDEX_URL for these indexes (credentials only where asked: on this machine)."""
    def url(o: IndexOption) -> str:
        return o.url if with_credentials else o.public_url

    env = {}
    main = [url(o) for o in indexes if o.kind == "index-url"]
    extra = [url(o) for o in indexes if o.kind == "extra-index-url"]
    if main:
        env["UV_INDEX_URL"] = main[0]
    if extra:
        env["UV_EXTRA_INDEX_URL"] = " ".join(extra)
    return env


def _user_netrc(host: str) -> tuple[str, str] | None:
    """(login, password) for host from the user's netrc (NETRC, else ~/.netrc), if it has one."""
    import netrc

    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    if not path.is_file():
        return None
    try:
        found = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None
    if not found or not found[2]:
        return None
    return found[0] or "", found[2]


def netrc_secret(indexes: tuple[IndexOption, ...]) -> bytes | None:
    """The credentials of these indexes as a netrc file (from their URLs, else from the user's netrc), or None when
    none needs any."""
    from urllib.parse import unquote

    lines = []
    for o in indexes:
        parts = urlsplit(o.url)
        if parts.password is not None:
            login, password = unquote(parts.username or ""), unquote(parts.password)
        else:
            found = _user_netrc(parts.hostname or "")
            if not found:
                continue
            login, password = found
        lines.append(f"machine {parts.hostname} login {login} password {password}\n")
    return "".join(dict.fromkeys(lines)).encode() if lines else None
