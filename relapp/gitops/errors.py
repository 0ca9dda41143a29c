"""The errors gitops raises: each message is a sentence a person can act on."""

from __future__ import annotations

__all__ = [
    "CherryPickConflict",
    "CherryPickEmpty",
    "GitError",
    "PushRejected",
    "TagConflict",
    "UnsafeName",
    "WorkspaceBusy",
]


class GitError(Exception):
    """A git operation failed; the message is a sentence a person can act on, credentials masked."""


class UnsafeName(GitError):
    """A name, revision, refspec or URL was refused before git saw it."""


class WorkspaceBusy(GitError):
    """Another process holds the clone's lock."""


class PushRejected(GitError):
    """The remote refused (or did not confirm) one of the pushed refs."""

    def __init__(self, message: str, *, ref: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.ref = ref
        self.reason = reason


class TagConflict(GitError):
    """The tag already exists at another commit (locally or on the remote)."""

    def __init__(self, message: str, *, tag: str = "", existing_sha: str = "") -> None:
        super().__init__(message)
        self.tag = tag
        self.existing_sha = existing_sha


class CherryPickConflict(GitError):
    """A cherry-pick stopped on conflicts; the clone was reset and `files` names the conflicts."""

    def __init__(self, message: str, *, commit: str = "", files: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.commit = commit
        self.files = files


class CherryPickEmpty(GitError):
    """A cherry-picked commit changed nothing: its change is already on the line."""

    def __init__(self, message: str, *, commit: str = "") -> None:
        super().__init__(message)
        self.commit = commit
