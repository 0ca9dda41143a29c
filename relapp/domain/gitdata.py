"""Plain records of what git reports, shared by gitops (which reads them) and the domain (which reasons on them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TagRef:
    """One tag as `git for-each-ref` reports it, peeled to the commit it names."""

    name: str  # short name, e.g. "v1.2.0" (without refs/tags/)
    sha: str  # 40-hex commit the tag points to (annotated tags peeled)
    annotated: bool
    created: int  # unix seconds: tagger date for annotated tags, committer date otherwise


@dataclass(frozen=True, slots=True)
class RawCommit:
    """One commit as a single bulk `git log` reports it."""

    sha: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    authored: int  # unix seconds
    message: str  # full message: subject, blank line, body (trailers included)
    files: tuple[str, ...] = ()  # paths touched (vs. first parent); empty for merges

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0].strip()
