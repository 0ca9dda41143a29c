"""Validation of every name, revision, refspec and URL a user can hand to git."""

from __future__ import annotations

import re

from .errors import UnsafeName
from .masking import mask
from .process import run

MAX_REF_LEN = 100

_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_SHA_RE = re.compile(r"[0-9a-fA-F]{4,40}")
_FULL_SHA_RE = re.compile(r"[0-9a-f]{40}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def is_sha(text: str) -> bool:
    """True when text is a full, lower-case 40-hex object name."""
    return isinstance(text, str) and _FULL_SHA_RE.fullmatch(text) is not None


def looks_like_sha(text: str) -> bool:
    """True when text could be an abbreviated or full object name (4–40 hex digits, any case)."""
    return _SHA_RE.fullmatch(text) is not None


def _show(text: object) -> str:
    """A short, printable rendering of a rejected value for an error sentence."""
    r = repr(text)
    return r if len(r) <= 60 else r[:57] + "…'"


def check_ref_syntax(name: str, what: str) -> None:
    """The pure part of ref-name validation: the allowlist and the rules it does not cover."""
    if not isinstance(name, str) or not name:
        raise UnsafeName(f"The {what} name is empty; give a name such as v1.2.0.")
    if len(name) > MAX_REF_LEN:
        raise UnsafeName(
            f"The {what} name is {len(name)} characters long; use at most {MAX_REF_LEN}."
        )
    if _CONTROL_RE.search(name) or " " in name:
        raise UnsafeName(f"The {what} name {_show(name)} contains spaces or control characters.")
    if "@{" in name or ".." in name:
        raise UnsafeName(f"The {what} name {_show(name)} contains '..' or '@{{'; remove them.")
    if _REF_RE.fullmatch(name) is None:
        raise UnsafeName(
            f"The {what} name {_show(name)} is not allowed: use letters, digits, '.', '_', '-' "
            "and '/', with each part starting with a letter or digit."
        )
    for part in name.split("/"):
        if part.endswith((".lock", ".")):
            raise UnsafeName(
                f"The {what} name {_show(name)} has a part ending in '.lock' or '.'; rename it."
            )
    if name == "HEAD" or _FULL_SHA_RE.fullmatch(name.lower()):
        # A ref that looks like HEAD or a full SHA makes every later revision ambiguous.
        raise UnsafeName(f"The {what} name {_show(name)} would be mistaken for a revision.")


def validate_ref_name(name: str, *, kind: str = "tag") -> str:
    """Return name if it is a safe tag or branch name (allowlist, then `git check-ref-format`)."""
    if kind not in ("tag", "branch"):
        raise ValueError(f"kind must be 'tag' or 'branch', not {kind!r}")
    check_ref_syntax(name, kind)
    # Second opinion from git itself, on a string the allowlist already accepted.
    full = ("refs/tags/" if kind == "tag" else "refs/heads/") + name
    proc = run(["check-ref-format", full], check=False, timeout=30)
    if proc.returncode != 0:
        raise UnsafeName(f"git does not accept {_show(name)} as a {kind} name; choose another.")
    return name


def validate_revision(text: str) -> str:
    """Return text if a user may give it as a revision: a 4–40 hex SHA or a safe ref name."""
    if isinstance(text, str) and _SHA_RE.fullmatch(text):
        return text.lower()
    if isinstance(text, str) and (text == "HEAD" or text.startswith("-")):
        raise UnsafeName(f"The revision {_show(text)} is not allowed; give a SHA, tag or branch.")
    try:
        check_ref_syntax(text, "revision")
    except UnsafeName as exc:
        raise UnsafeName(
            f"{exc} A revision must be a commit SHA (4–40 hex digits) or a tag or branch name."
        ) from None
    proc = run(["check-ref-format", "refs/heads/" + text], check=False, timeout=30)
    if proc.returncode != 0:
        raise UnsafeName(f"git does not accept {_show(text)} as a revision; give a SHA or a tag.")
    return text


_SCP_RE = re.compile(r"(?:[A-Za-z0-9._~+-]+@)?[A-Za-z0-9][A-Za-z0-9.-]*:(?!//)[^\s]+")
_URL_RE = re.compile(r"(?P<scheme>https?|ssh|git|file)://(?P<rest>.*)", re.IGNORECASE)


def validate_remote_url(url: str) -> str:
    """Return url if it is a remote git may be pointed at: no transports, options or controls."""
    bad = f"The remote URL {_show(mask(url)) if isinstance(url, str) else _show(url)}"
    if not isinstance(url, str) or not url:
        raise UnsafeName("The remote URL is empty; give an https://, ssh:// or local path.")
    if len(url) > 2000:
        raise UnsafeName("The remote URL is too long.")
    if _CONTROL_RE.search(url):
        raise UnsafeName(f"{bad} contains control characters.")
    if url.startswith("-"):
        raise UnsafeName(f"{bad} starts with '-', which git would read as an option.")
    if "::" in url:
        # <transport>::<address> runs helpers such as ext::, which execute commands.
        raise UnsafeName(f"{bad} uses a '::' transport, which is not allowed.")
    if url.startswith("/"):
        return url
    m = _URL_RE.fullmatch(url)
    if m:
        rest = m.group("rest")
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        if m.group("scheme").lower() != "file" and (not host or host.startswith("-")):
            raise UnsafeName(f"{bad} has no usable host.")
        if " " in url:
            raise UnsafeName(f"{bad} contains spaces.")
        return url
    if _SCP_RE.fullmatch(url):
        return url
    raise UnsafeName(
        f"{bad} is not an absolute path, file://, https://, ssh:// or git@host:path address."
    )


def require_sha(value: object, what: str = "commit") -> str:
    """Internal methods take full SHAs only: anything else was not resolved first."""
    if isinstance(value, str) and is_sha(value):
        return value
    raise UnsafeName(
        f"The {what} {_show(value)} is not a full 40-hex SHA; resolve the revision first."
    )


_REFSPEC_SIDE = r"refs/(?:tags|heads)/" + _REF_RE.pattern


def check_refspec(spec: object) -> tuple[str, str]:
    """A push refspec: `<sha or full ref>:<full ref>`, never forced, never a deletion."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise UnsafeName(f"The refspec {_show(spec)} must be '<sha or ref>:refs/...'.")
    src, dst = spec.split(":")
    if not (is_sha(src) or re.fullmatch(_REFSPEC_SIDE, src)) or not re.fullmatch(
        _REFSPEC_SIDE, dst
    ):
        raise UnsafeName(f"The refspec {_show(spec)} must be '<sha or ref>:refs/tags|heads/...'.")
    for side in (src, dst):
        if not is_sha(side):
            check_ref_syntax(side.split("/", 2)[2], "ref")
    return src, dst


def check_full_ref(ref: str) -> None:
    """Refuse anything but a safe full `refs/tags/…` or `refs/heads/…` name."""
    if not re.fullmatch(_REFSPEC_SIDE, ref):
        raise UnsafeName(f"The ref {_show(ref)} must be a full refs/tags or refs/heads name.")
    check_ref_syntax(ref.split("/", 2)[2], "ref")


def check_ident(value: str, what: str) -> str:
    """Return a tagger or committer name or email stripped, if git can take it as one."""
    if not isinstance(value, str) or not value.strip() or _CONTROL_RE.search(value):
        raise UnsafeName(f"The {what} {_show(value)} is empty or contains control characters.")
    if "<" in value or ">" in value:
        raise UnsafeName(f"The {what} {_show(value)} may not contain '<' or '>'.")
    return value.strip()
