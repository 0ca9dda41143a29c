"""Workspace.commits decodes git's output once, then splits: broken UTF-8 stays in its own field."""

from __future__ import annotations

from pathlib import Path

from relapp import gitops
from relapp.gitops import Workspace


def _data(raw: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(raw), raw)


def test_broken_utf8_at_field_edges_is_replaced_within_each_field(tmp_path: Path) -> None:
    """Truncated multi-byte sequences end the author name, the message and a path."""
    origin = gitops.init_bare(tmp_path / "o.git")
    # \xc3 and \xe2\x82 start two- and three-byte characters that never finish: each must
    # become one U+FFFD in its own field, never swallow the NUL after it or merge fields.
    author = b"Zo\xc3 <z@example.com> 1600000000 +0000\n"
    stream = b"".join(
        [
            b"commit refs/heads/main\nmark :1\nauthor " + author,
            b"committer C <c@example.com> 1600000000 +0000\n",
            _data(b"fix: caf\xe2\x82\n\nRefs: ABC-1\nbody \xff end\xc3"),
            b"M 100644 inline dir/\xc3\xbc\xe2.txt\n",
            _data(b"x"),
            b"M 100644 inline plain.txt\n",
            _data(b"y"),
            b"\n",
            b"commit refs/heads/side\nmark :2\nauthor A <a@example.com> 1600000100 +0000\n",
            b"committer A <a@example.com> 1600000100 +0000\n",
            _data(b"feat: side \xf0\x9f\x98\x80"),
            b"from :1\nM 100644 inline side.txt\n",
            _data(b"s"),
            b"\n",
            b"commit refs/heads/main\nmark :3\nauthor M <m@example.com> 1600000200 +0000\n",
            b"committer M <m@example.com> 1600000200 +0000\n",
            _data(b"Merge branch 'side'"),
            b"from :1\nmerge :2\n\n",
        ]
    )
    gitops.fast_import(origin, stream)
    ws = Workspace(tmp_path / "clone", str(origin))
    ws.ensure()
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
