"""Secrets named by environment variable: the rules for the names the configuration may give
(`secret_env` of a webhook driver, `remote_credentials_env` of a project) and for URLs that must
not carry a credential themselves. Pure: nothing here reads the environment."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# relapp's own settings: naming one would hand the app's secret key or database password to a
# webhook signature or a git remote chosen by whoever edits the configuration file.
OWN_VARIABLES = frozenset({"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL",
                           "TEST_REDIS_URL"})
OWN_PREFIX = "RELAPP_"


def variable_problem(name: object) -> str | None:
    """Why `name` cannot name a secret's environment variable (a phrase), or None when it can."""
    if not isinstance(name, str) or not VARIABLE.fullmatch(name):
        return "must be the name of an environment variable (letters, digits and '_', at most 128)"
    if name.upper() in OWN_VARIABLES or name.upper().startswith(OWN_PREFIX):
        return (f"must not name {name}, one of relapp's own settings "
                f"({', '.join(sorted(OWN_VARIABLES))} and {OWN_PREFIX}*)")
    return None


def url_has_credentials(url: str) -> bool:
    """True when a URL (or git's scp-like `user@host:path`) carries a password or, for http(s),
    any user name: `https://user:token@host/x`, `https://token@host/x`, `user:pw@host:x`.
    A bare user of an ssh remote (`git@host:x`, `ssh://git@host/x`) is not a credential."""
    if "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if parts.password is not None:
            return True
        return parts.username is not None and parts.scheme.lower() in ("http", "https", "ftp", "ftps")
    # scp-like syntax: a ':' inside the user part, before the '@' and before any '/'.
    return re.match(r"^[^/@]*:[^/@]*@", url) is not None
