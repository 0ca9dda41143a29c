"""The `git log` record format gitops asks for, and its streaming parser into RawCommits."""

from __future__ import annotations

import gc
from collections.abc import Callable
from types import TracebackType
from typing import Self

from relapp.domain.gitdata import RawCommit

from .errors import GitError

# The options the record layout depends on: NUL-separated file lists (-z, --name-only) with no
# rename pairs, and no external diff or textconv output between the records.
LOG_OPTIONS = ("-z", "--no-renames", "--name-only", "--no-ext-diff", "--no-textconv")


def log_format(token: str) -> str:
    """The `--format` of one record per commit, fenced by token, that `LogRecords` reads."""
    return f"%x00S{token}%x00%H%x00%P%x00%aN%x00%aE%x00%at%x00%B%x00E{token}"


class LogRecords:
    """Turns `git log` output in `log_format` into RawCommits, fed in chunks as they arrive.

    Each record starts with the start marker NUL NUL "S<token>" NUL (the first record lacks the
    leading NUL, which `-z` puts between records), holds sha, parents, name, email, date and
    message separated by NULs, then the end marker NUL "E<token>" and the NUL-separated files.
    A record is complete once the next start marker has arrived (or the output has ended), so
    each chunk is cut just before the last start marker it holds: the bytes before the cut are
    whole records, the rest waits for more. The cut is at an ASCII NUL, which always decodes to
    itself and ends any broken UTF-8 sequence before it, so decoding and splitting piece by
    piece gives exactly what decoding and splitting the whole output at once would.

    Used as a context manager (`with records: <run git, feed, close>`), it holds off Python's
    cycle collector meanwhile. A log makes several objects per commit (the RawCommit, its
    tuples, and what on_commit builds from them), none in a reference cycle, and keeps them
    all: every 700 start a collection that finds nothing, and the survivors go on into ever
    larger ones, now and then one over the whole process. Held off, one young collection
    follows instead, or none when the caller has dropped the records by then. Reference
    counting frees as usual meanwhile, and the collector is back however the log ends.
    """

    __slots__ = (
        "_collecting",
        "_end_text",
        "_error",
        "_on_commit",
        "_pending",
        "_start",
        "_start_text",
        "commits",
    )

    def __init__(self, token: str, on_commit: Callable[[RawCommit], None] | None = None) -> None:
        # on_commit sees each record as soon as it is complete, while git is still writing.
        self._on_commit = on_commit
        self._start_text = f"\x00\x00S{token}\x00"
        self._end_text = f"\x00E{token}"
        self._start = self._start_text.encode()
        # The first record lacks the separator NUL: with it, every record starts with the marker.
        self._pending = b"\x00"
        self._error: GitError | None = None
        self._collecting = False  # whether __enter__ found the cycle collector enabled
        self.commits: list[RawCommit] = []

    def __enter__(self) -> Self:
        self._collecting = gc.isenabled()
        gc.disable()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._collecting:
            gc.enable()

    def feed(self, data: bytes) -> None:
        """Take the next chunk of git's stdout; parse every record it completes."""
        buf = self._pending + data
        cut = buf.rfind(self._start)
        if cut <= 0:  # no record ends in this buffer yet
            self._pending = buf
            return
        self._pending = buf[cut:]
        if self._error is None:
            self._parse(buf[:cut])

    def close(self) -> list[RawCommit]:
        """Parse what is left once git has exited successfully; return every commit in order."""
        if self._error is None:
            self._parse(self._pending)
        self._pending = b""
        if self._error is not None:
            raise self._error
        return self.commits

    def _parse(self, data: bytes) -> None:
        # A malformed record is reported only after git's own exit status, as a whole-output
        # parse would: git's failure message is the better one when both happen.
        text = data.decode("utf-8", "replace")
        end_text = self._end_text
        append = self.commits.append
        on_commit = self._on_commit
        for chunk in text.split(self._start_text)[1:]:
            head, sep, tail = chunk.partition(end_text)
            if not sep:
                self._error = GitError("git log output could not be read (record marker missing).")
                return
            fields = head.split("\x00", 5)
            if len(fields) != 6:
                self._error = GitError("git log output could not be read (fields missing).")
                return
            sha, parent_text, name, email, date, message = fields
            parents = tuple(parent_text.split())
            files: tuple[str, ...] = ()  # merges carry no file list
            if len(parents) <= 1:
                rest = tail.lstrip("\x00").removeprefix("\n")
                if rest:
                    files = tuple(rest.split("\x00"))
                    if "" in files:  # trailing or doubled NULs; a path is never empty
                        files = tuple([f for f in files if f])
            try:
                authored = int(date)  # int() ignores surrounding whitespace, as _int does
            except ValueError:
                authored = 0
            commit = RawCommit(sha, parents, name, email, authored, message, files)
            append(commit)
            if on_commit is not None:
                on_commit(commit)
