"""Workspace.commits decodes git's output once, then splits: broken UTF-8 stays in its own field."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from relapp.gitops import GitError

from .conftest import BROKEN_UTF8_ROOT, clone_of, fast_import_commit


def test_broken_utf8_at_field_edges_is_replaced_within_each_field(tmp_path: Path) -> None:
    """Truncated multi-byte sequences end the author name, the message and a path."""
    ws = clone_of(
        tmp_path,
        BROKEN_UTF8_ROOT,
        fast_import_commit(
            "side",
            2,
            b"A <a@example.com>",
            1600000100,
            b"feat: side \xf0\x9f\x98\x80",
            parents=(1,),
            files={b"side.txt": b"s"},
        ),
        fast_import_commit(
            "main", 3, b"M <m@example.com>", 1600000200, b"Merge branch 'side'", parents=(1, 2)
        ),
    )
    head = ws.resolve("main")

    merge, side, first = ws.commits(head)

    assert first.author_name == "Zo\ufffd"
    assert first.author_email == "z@example.com"
    assert first.authored == 1600000000
    assert first.message == "fix: caf\ufffd\n\nRefs: ABC-1\nbody \ufffd end\ufffd"
    assert first.files == ("dir/\u00fc\ufffd.txt", "plain.txt")
    assert first.parents == ()
    assert side.message == "feat: side \U0001f600"
    assert side.files == ("side.txt",)
    assert side.parents == (first.sha,)
    assert merge.parents == (first.sha, side.sha)
    assert merge.files == ()  # merges carry no file list
    assert ws.show([side.sha, first.sha]) == [side, first]


def test_reading_a_log_holds_off_the_cycle_collector_and_restores_it(tmp_path: Path) -> None:
    """No cycle collection while records are read and handed on; back however the log ends."""
    ws = clone_of(tmp_path, BROKEN_UTF8_ROOT)
    head = ws.resolve("main")
    seen: list[bool] = []
    assert gc.isenabled()
    ws.commits(head, on_commit=lambda c: seen.append(gc.isenabled()))
    assert seen == [False] and gc.isenabled()

    def fail(commit: object) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        ws.commits(head, on_commit=fail)
    assert gc.isenabled()
    with pytest.raises(GitError):
        ws.commits("0" * 40)  # git fails: the collector is back all the same
    assert gc.isenabled()
    gc.disable()  # a caller that had it off keeps it off
    try:
        ws.commits(head)
        assert not gc.isenabled()
    finally:
        gc.enable()
