"""Workspace.commits streams git's output: records cut at any chunk boundary decode as a whole would.

The oracle is the parser `Workspace._log` had before streaming (decode the whole output once, then split),
kept here verbatim; the streaming parser must agree with it for every way the pipe can cut the
output, and the streamed git process must keep `run`'s call counting, errors and timeouts.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from relapp import gitops
from relapp.domain.gitdata import RawCommit
from relapp.gitops import GitError, Workspace
from relapp.gitops.logformat import LOG_OPTIONS, LogRecords, log_format

from .conftest import BROKEN_UTF8_ROOT, WEIRD_MESSAGE, Repo, clone_of, fast_import_commit

TOKEN = "0123456789abcdef01234567"


def _reference_parse(output: bytes, token: str = TOKEN) -> list[RawCommit]:
    """`Workspace._log`'s parsing before it streamed: the whole output decoded once, then split."""
    start_text, end_text = f"\x00\x00S{token}\x00", f"\x00E{token}"
    text = "\x00" + output.decode("utf-8", "replace")
    commits: list[RawCommit] = []
    for chunk in text.split(start_text)[1:]:
        head, sep, tail = chunk.partition(end_text)
        if not sep:
            raise GitError("git log output could not be read (record marker missing).")
        fields = head.split("\x00", 5)
        if len(fields) != 6:
            raise GitError("git log output could not be read (fields missing).")
        sha, parent_text, name, email, date, message = fields
        parents = tuple(parent_text.split())
        if len(parents) <= 1:
            rest = tail.lstrip("\x00").removeprefix("\n")
            files = tuple(f for f in rest.split("\x00") if f) if rest else ()
        else:
            files = ()
        try:
            authored = int(date)
        except ValueError:
            authored = 0
        commits.append(RawCommit(sha, parents, name, email, authored, message, files))
    return commits


def _streamed(pieces: list[bytes], token: str = TOKEN) -> list[RawCommit]:
    records = LogRecords(token)
    for piece in pieces:
        records.feed(piece)
    return records.close()


@pytest.fixture
def raw_log(tmp_path: Path) -> tuple[Path, bytes]:
    """A clone whose history has broken and multi-byte UTF-8, a merge, a root and empty lines,
    and the exact bytes `_log`'s git log prints for it (with a fixed token)."""
    ws = clone_of(
        tmp_path,
        BROKEN_UTF8_ROOT,
        fast_import_commit(
            "side",
            2,
            b"A\xe2\x98\x83 <a@example.com>",
            1600000100,
            b"feat: side \xf0\x9f\x98\x80\n\n\n",
            committer=b"A <a@example.com>",
            parents=(1,),
            files={b"side/\xf0\x9f\x98\x80.txt": b"s"},
        ),
        fast_import_commit(
            "main", 3, b"M <m@example.com>", 1600000200, b"Merge branch 'side'", parents=(1, 2)
        ),
        fast_import_commit(
            "main",
            4,
            b"W <w@example.com>",
            1600000300,
            WEIRD_MESSAGE.encode(),
            parents=(3,),
            files={b"a": b"a", b"b": b"b"},
        ),
    )
    head = ws.resolve("main")
    fmt = log_format(TOKEN)
    args = ["log", *LOG_OPTIONS, "--topo-order", f"--format={fmt}", "--end-of-options", head, "--"]
    # The same argv `_log` runs, by plain subprocess, so the oracle sees git's own bytes.
    raw = subprocess.run(["git", *args], cwd=ws.path, capture_output=True, check=True).stdout
    return ws.path, raw


def test_every_single_cut_parses_like_the_whole_output(raw_log: tuple[Path, bytes]) -> None:
    _, raw = raw_log
    expected = _reference_parse(raw)
    assert len(expected) == 4 and b"\xe2\x82" in raw  # broken UTF-8 really is in the output
    for cut in range(len(raw) + 1):
        assert _streamed([raw[:cut], raw[cut:]]) == expected, cut


def test_byte_by_byte_and_double_cuts_parse_like_the_whole_output(
    raw_log: tuple[Path, bytes],
) -> None:
    _, raw = raw_log
    expected = _reference_parse(raw)
    assert _streamed([raw[i : i + 1] for i in range(len(raw))]) == expected
    assert _streamed([b"", raw, b""]) == expected
    step = 7
    for a in range(0, len(raw), step):
        for b in range(a, len(raw), step * 5):
            assert _streamed([raw[:a], raw[a:b], raw[b:]]) == expected, (a, b)


def test_streamed_commits_match_the_reference_on_a_real_clone(
    raw_log: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, raw = raw_log
    ws = Workspace(path, str(tmp_path / "o.git"))
    got = ws.commits(ws.resolve("main"))
    # Same commits as the reference parse of the same history (the token differs, not the data).
    assert got == _reference_parse(raw)
    assert got[0].message == WEIRD_MESSAGE and got[0].files == ("a", "b")
    assert got[1].parents and len(got[1].parents) == 2 and got[1].files == ()
    assert got[2].author_name == "A\u2603" and got[2].files == ("side/\U0001f600.txt",)
    assert got[3].author_name == "Zo\ufffd" and got[3].files == (
        "dir/\u00fc\ufffd.txt",
        "plain.txt",
    )


def _called_back(pieces: list[bytes], token: str = TOKEN) -> tuple[list[RawCommit], list[int]]:
    """The records on_commit saw, and how many it had seen after each feed (before close)."""
    seen: list[RawCommit] = []
    records = LogRecords(token, seen.append)
    after_feed = []
    for piece in pieces:
        records.feed(piece)
        after_feed.append(len(seen))
    assert records.close() == seen  # the same records the log returns, each once, in order
    return seen, after_feed


def test_on_commit_sees_every_record_once_in_order_however_the_output_is_cut(
    raw_log: tuple[Path, bytes],
) -> None:
    _, raw = raw_log
    expected = _reference_parse(raw)
    for cut in range(len(raw) + 1):
        assert _called_back([raw[:cut], raw[cut:]])[0] == expected, cut
    seen, after_feed = _called_back([raw[i : i + 1] for i in range(len(raw))])
    assert seen == expected
    # Records arrive while the output is still coming: all but the last (which only the end of
    # the output completes) have been seen before close(), each as soon as the next one starts.
    assert after_feed[-1] == len(expected) - 1
    starts = [i for i in range(len(raw)) if raw.startswith(f"\x00S{TOKEN}".encode(), i)]
    assert len(starts) == len(expected)
    assert [after_feed[i] for i in starts] == [0, 0, 1, 2]  # S marker of record n: n-1 seen


def test_on_commit_sees_what_commits_returns_from_a_real_clone(
    raw_log: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, _ = raw_log
    ws = Workspace(path, str(tmp_path / "o.git"))
    seen: list[RawCommit] = []
    got = ws.commits(ws.resolve("main"), on_commit=seen.append)
    assert len(got) == 4 and seen == got


def test_an_on_commit_error_stops_the_log_and_propagates(repo: Repo) -> None:
    class Stop(Exception):
        pass

    def stop(commit: RawCommit) -> None:
        raise Stop(commit.sha)

    with pytest.raises(Stop) as info:
        repo.ws.commits(repo.sha["m7"], [repo.sha["c1"]], on_commit=stop)
    assert str(info.value) == repo.sha["m7"]  # the first record, children first
    assert repo.ws.commits(repo.sha["m7"], [repo.sha["c1"]])[0].sha == repo.sha["m7"]


def test_no_output_is_no_commits() -> None:
    assert _streamed([]) == [] and _streamed([b"", b""]) == []


@pytest.mark.parametrize(
    ("pieces", "message"),
    [
        ([f"\x00S{TOKEN}\x00{'a' * 40}\x00\x00N\x00e\x001\x00msg".encode()], "record marker"),
        ([f"\x00S{TOKEN}\x00{'a' * 40}\x00\x00N\x00E{TOKEN}".encode()], "fields missing"),
        (
            [
                f"\x00S{TOKEN}\x00{'a' * 40}\x00\x00N\x00e\x00x\x00msg\x00E{TOKEN}\x00\n".encode(),
                f"f\x00\x00S{TOKEN}\x00{'b' * 40}\x00\x00N\x00e\x001\x00msg".encode(),
            ],
            "record marker",
        ),
    ],
)
def test_malformed_output_raises_after_the_run(pieces: list[bytes], message: str) -> None:
    records = LogRecords(TOKEN)
    for piece in pieces:
        records.feed(piece)  # never raises mid-stream: git's own failure is reported first
    with pytest.raises(GitError, match=message):
        records.close()
    with pytest.raises(GitError, match=message):
        _reference_parse(b"".join(pieces))


def test_a_streamed_log_is_exactly_one_counted_hooked_git_call(repo: Repo) -> None:
    seen: list[tuple[str, ...]] = []
    before = gitops.git_call_count()
    gitops.on_git_call.append(seen.append)
    try:
        commits = repo.ws.commits(repo.sha["m7"], [repo.sha["c1"]])
    finally:
        gitops.on_git_call.remove(seen.append)
    assert gitops.git_call_count() - before == 1
    assert len(seen) == 1 and seen[0][0] == "log" and seen[0][-1] == "--"
    assert commits[0].sha == repo.sha["m7"] and len(commits) == 7  # c2..c6, side, m7


def test_a_failing_log_raises_git_error_with_masked_stderr(repo: Repo) -> None:
    missing = "0123456789abcdef0123456789abcdef01234567"
    # The missing SHA doubles as a secret of the workspace: git prints it, the error must not.
    ws = Workspace(repo.ws.path, repo.ws.remote_url, env={"RELAPP_TEST_SECRET": missing})
    with pytest.raises(GitError) as info:
        ws.commits(missing)
    text = str(info.value)
    assert text.startswith("reading commits failed: fatal:")
    assert missing not in text and "***" in text


def test_a_hanging_log_is_killed_at_the_timeout(repo: Repo) -> None:
    head = repo.sha["m7"]
    # git opens objects/info/alternates when it first reads an object; as a FIFO with no
    # writer, that open blocks forever, so this real git log hangs until it is killed.
    fifo = repo.ws.git_dir / "objects" / "info" / "alternates"
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    ws = Workspace(repo.ws.path, repo.ws.remote_url, timeout=1)
    with pytest.raises(GitError, match="reading commits did not finish within 1 seconds"):
        ws.commits(head)
    # Opening a FIFO for writing without blocking fails with ENXIO when no process has it open
    # for reading: the git that was blocked on it is gone.
    with pytest.raises(OSError) as info:
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert info.value.errno == errno.ENXIO
    fifo.unlink()
    assert ws.commits(head)[0].sha == head
