"""Keeping secrets out of text people see: URL credentials, and secrets with their derived forms.

Pure functions (no I/O), shared by gitops (git's messages), the job log (what deploy scripts
print) and the pages and API that show audit events.

A `SecretMasker` is built once per set of secrets and then masks line after line. For a secret of
`DERIVED_MIN` characters or more it masks not only the secret but any run of `RUN` or more of
its characters, and the same runs of its base64 forms: standard and URL-safe, with or without
padding, at each of the three alignments the secret can have inside a longer base64 blob (after
0, 1 or 2 other bytes, e.g. `base64(b"user:" + secret)`). Of each base64 form only the stable
middle is used: the characters that depend on the secret's bytes alone, which are the same
whatever comes before or after it (and so with padding or without). Shorter secrets are masked
where they appear whole.

All needles go into one regular expression shaped as a trie, so a line is scanned once whatever
the number of secrets; every position where a needle starts is found (overlaps included), the
spans they cover are merged, and each merged span becomes one mask.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MASK = "****"
MIN_SECRET = 4
"""Secrets shorter than this are not masked at all (they would mask ordinary words)."""
DERIVED_MIN = 12
"""Secrets this long or longer are masked in parts and in base64 too."""
RUN = 8
"""The shortest part of a long secret (or of its base64 form) that is masked on its own."""

# userinfo in scheme://user:pass@host/… (also a bare token as the user); URLs appear in text.
URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


# git's scp-like form with a password: user:password@host:path.
SCP_CREDENTIALS = re.compile(r"(?<![\w.+%-])[\w.+%-]+:[^\s/@:]+@(?=[A-Za-z0-9][A-Za-z0-9.-]*:)")


def redact_urls(text: str) -> str:
    """Text with the userinfo of every URL in it (and a password in git's scp-like
    `user:password@host:path`) replaced by `***`."""
    if "@" not in text:
        return text
    text = URL_CREDENTIALS.sub(lambda m: m.group("scheme") + "***@", text)
    return SCP_CREDENTIALS.sub("***@", text)


def url_has_credentials(url: str) -> bool:
    """True when a URL carries userinfo that is (or contains) a password or token."""
    m = URL_CREDENTIALS.search(url)
    if not m:
        return False
    scheme = m.group("scheme").lower()
    # ssh://git@host names a login, not a secret; over http(s) a lone user is usually a token.
    return ":" in m.group("userinfo") or scheme.startswith("http")


def strip_userinfo(url: str) -> str:
    """The URL without userinfo (for http(s)), or without its password (ssh keeps the login)."""
    m = URL_CREDENTIALS.match(url)
    if not m:
        return url
    scheme, userinfo = m.group("scheme"), m.group("userinfo")
    if scheme.lower().startswith("http"):
        return scheme + url[m.end():]
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{user}@{url[m.end():]}"


def url_credentials(url: str) -> tuple[str, str] | None:
    """(user, password) from a URL's userinfo, percent-decoded; None when it holds none.

    A lone user over http(s) is taken as a token (git hosts accept any user name with one).
    """
    from urllib.parse import unquote

    if not url_has_credentials(url):
        return None
    m = URL_CREDENTIALS.match(url)
    if m is None:
        return None
    userinfo = m.group("userinfo")
    if ":" in userinfo:
        user, password = userinfo.split(":", 1)
        return unquote(user), unquote(password)
    return "", unquote(userinfo)


def redact_value(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings) with URL credentials redacted in every string."""
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def base64_forms(secret: str) -> list[str]:
    """The stable middle of the secret's base64 encodings: standard and URL-safe, each at the
    three alignments (after 0, 1 or 2 other bytes); empty strings dropped, duplicates kept out."""
    raw = secret.encode("utf-8")
    n = len(raw)
    forms: list[str] = []
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + raw).decode("ascii")
        # Character i holds bits [6i, 6i + 6); the secret's bits are [8k, 8(k + n)).
        start = -(-8 * k // 6)
        end = 8 * (k + n) // 6
        middle = encoded[start:end]
        for form in (middle, middle.replace("+", "-").replace("/", "_")):
            if form and form not in forms:
                forms.append(form)
    return forms


def needles(secrets: Iterable[str]) -> set[str]:
    """Every string a masker looks for: short secrets whole, long ones (and their base64
    forms) as every run of RUN characters."""
    found: set[str] = set()
    for secret in secrets:
        if not isinstance(secret, str) or len(secret) < MIN_SECRET:
            continue
        if len(secret) < DERIVED_MIN:
            found.add(secret)
            continue
        for text in (secret, *base64_forms(secret)):
            if len(text) < RUN:
                found.add(text)
                continue
            found.update(text[i:i + RUN] for i in range(len(text) - RUN + 1))
    return found


def _trie_pattern(words: Sequence[str]) -> str:
    """A regular expression matching any of words, longest first, shaped as a trie (a line is
    matched against a branch per distinct next character, not against every word)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:  # a word ends here: the longer words are optional (and tried first)
            return f"(?:{body})?"
        return body

    return emit(trie)


class SecretMasker:
    """Masks a fixed set of secrets (and their derived forms) in line after line."""

    __slots__ = ("_pattern", "mask")

    def __init__(self, secrets: Iterable[str] = (), *, mask: str = MASK) -> None:
        self.mask = mask
        words = needles(secrets)
        # A lookahead finds a needle at every position, overlapping ones included.
        self._pattern = re.compile(f"(?=({_trie_pattern(sorted(words))}))") if words else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        """text with every span covered by a needle replaced by one mask."""
        if self._pattern is None:
            return text
        spans: list[list[int]] = []
        for m in self._pattern.finditer(text):
            start, end = m.start(), m.end(1)
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        if not spans:
            return text
        out: list[str] = []
        last = 0
        for start, end in spans:
            out.append(text[last:start])
            out.append(self.mask)
            last = end
        out.append(text[last:])
        return "".join(out)
