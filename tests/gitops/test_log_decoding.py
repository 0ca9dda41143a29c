"""Workspace.commits decodes git's output once, then splits: broken UTF-8 stays in its own field."""

from __future__ import annotations

from pathlib import Path

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
