"""Keeping credentials out of anything gitops shows: URLs, git's messages, errors."""

from __future__ import annotations

import re
from collections.abc import Iterable

# userinfo in scheme://user:pass@host/… (also a bare token as user); git itself prints URLs.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """Return text with URL credentials and each given secret replaced by `***`."""
    # Longest first so a secret containing another is masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_CREDENTIALS.sub(lambda m: m.group("scheme") + "***@", text)


def redact_url(url: str) -> str:
    """Return a remote URL fit for a page or a log: credentials removed."""
    return mask(url)


def url_secrets(url: str) -> list[str]:
    """Credentials embedded in a URL, so they can be masked even where git prints them decoded."""
    m = _URL_CREDENTIALS.search(url)
    if not m:
        return []
    userinfo = m.group("userinfo")
    parts = [userinfo, *userinfo.split(":", 1)]
    return [p for p in parts if len(p) >= 3]
