"""Keeping credentials out of anything gitops shows: URLs, git's messages, errors.

The rules themselves are pure and live in `relapp.domain.secretmask`, so the job log and the
pages (which may not import gitops) use the very same ones; this module applies them to git.
"""

from __future__ import annotations

from collections.abc import Iterable

from relapp.domain.secretmask import (
    URL_CREDENTIALS,
    SecretMasker,
    redact_urls,
    strip_userinfo,
    url_credentials,
    url_has_credentials,
)

__all__ = [
    "SecretMasker",
    "mask",
    "redact_url",
    "strip_userinfo",
    "url_credentials",
    "url_has_credentials",
    "url_secrets",
]


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """Return text with URL credentials and each given secret replaced by `***`."""
    # Longest first so a secret containing another is masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return redact_urls(text)


def redact_url(url: str) -> str:
    """Return a remote URL fit for a page or a log: credentials removed."""
    return mask(url)


def url_secrets(url: str) -> list[str]:
    """Credentials embedded in a URL, so they can be masked even where git prints them decoded."""
    m = URL_CREDENTIALS.search(url)
    if not m:
        return []
    userinfo = m.group("userinfo")
    parts = [userinfo, *userinfo.split(":", 1)]
    found = [p for p in parts if len(p) >= 3]
    decoded = url_credentials(url)
    if decoded is not None:
        found += [p for p in decoded if len(p) >= 3 and p not in found]
    return found
