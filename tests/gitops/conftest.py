"""Real repositories for gitops tests: a bare origin seeded with a small history, and a Workspace."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relapp.gitops import Workspace, fast_import, init_bare

WEIRD_MESSAGE = (
    "fix: ünïcödé ☃ and \x1erecord\x1funit separators\n"
    "\n"
    "# a line that looks like a comment\n"
    "%H %x00 --output=/tmp/nope\n"
    "\n"
    "Refs: ABC-123"
)

# A calling git hook's repository variables are dropped, and every set-up git reads no system or
# user configuration and commits as one fixed identity.
_SCRUB = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")
_HERMETIC = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Ada Author",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Author",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
}


def git(
    cwd: Path, *args: str, env: dict[str, str] | None = None, input: bytes | None = None
) -> str:
    """Run git for test set-up and inspection (the app itself only runs git through gitops)."""
    full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    full.update(_HERMETIC, GIT_CEILING_DIRECTORIES=str(cwd.parent))  # no repository above cwd
    full.update(env or {})
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=full, capture_output=True, input=input, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stderr.decode()}")
    return proc.stdout.decode()


def commit(
    work: Path, message: str, files: dict[str, str], *, date: int, author: str = "Ada Author"
) -> str:
    """Write files, commit them with message at date, return the new SHA."""
    for name, text in files.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git(work, "add", "--all")
    msg_file = work.parent / "msg.txt"
    msg_file.write_bytes(message.encode("utf-8"))
    stamp = f"@{date} +0000"
    git(
        work,
        "commit",
        "--quiet",
        "--cleanup=verbatim",
        "-F",
        str(msg_file),
        env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_NAME": author},
    )
    return git(work, "rev-parse", "HEAD").strip()


def fast_import_commit(
    branch: str,
    mark: int,
    author: bytes,
    when: int,
    message: bytes,
    *,
    committer: bytes | None = None,
    parents: tuple[int, ...] = (),
    files: Mapping[bytes, bytes] | None = None,
) -> bytes:
    """One commit of a `git fast-import` stream, in bytes so a test can break their UTF-8.

    author and committer are `Name <email>`; parents are marks, the first one `from`.
    """
    out = [
        b"commit refs/heads/%s\nmark :%d\n" % (branch.encode(), mark),
        b"author %s %d +0000\n" % (author, when),
        b"committer %s %d +0000\n" % (committer or author, when),
        _data(message),
    ]
    out += [b"%s :%d\n" % (b"merge" if i else b"from", p) for i, p in enumerate(parents)]
    for path, content in (files or {}).items():
        out += [b"M 100644 inline %s\n" % path, _data(content)]
    out.append(b"\n")
    return b"".join(out)


def _data(raw: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(raw), raw)


def clone_of(tmp_path: Path, *commits: bytes) -> Workspace:
    """relapp's clone (tmp_path/clone) of a bare origin (tmp_path/o.git) holding these commits."""
    origin = init_bare(tmp_path / "o.git")
    fast_import(origin, b"".join(commits))
    ws = Workspace(tmp_path / "clone", str(origin))
    ws.ensure()
    return ws


# The root commit of the broken-UTF-8 histories: \xc3 and \xe2\x82 start two- and three-byte
# characters that never finish (in the author name, the message and a path); each must become
# one U+FFFD in its own field, never swallow the NUL after it or merge fields.
BROKEN_UTF8_ROOT = fast_import_commit(
    "main",
    1,
    b"Zo\xc3 <z@example.com>",
    1600000000,
    b"fix: caf\xe2\x82\n\nRefs: ABC-1\nbody \xff end\xc3",
    committer=b"C <c@example.com>",
    files={b"dir/\xc3\xbc\xe2.txt": b"x", b"plain.txt": b"y"},
)


@dataclass
class Repo:
    """A seeded bare origin, the work repo that seeded it, and relapp's Workspace on it."""

    tmp: Path
    origin: Path
    seed: Path
    ws: Workspace
    sha: dict[str, str] = field(default_factory=dict)

    def origin_refs(self) -> str:
        return git(self.origin, "for-each-ref", "--format=%(refname) %(objectname)")

    def clone_refs(self) -> str:
        return git(self.ws.path, "for-each-ref", "--format=%(refname) %(objectname)")

    def origin_ref(self, ref: str) -> str:
        out = git(self.origin, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        return out.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """Origin history: c1 ← c2 ← c3 ← c4 ← c5 ← c6 and a side branch merged as m7."""
    origin = tmp_path / "origin.git"
    seed = tmp_path / "seed"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    git(tmp_path, "init", "--quiet", "--initial-branch=main", str(seed))
    git(seed, "remote", "add", "origin", str(origin))
    s: dict[str, str] = {}
    t = 1_700_000_000
    s["c1"] = commit(seed, "chore: initial", {"a.txt": "a\n", "conflict.txt": "base\n"}, date=t)
    git(
        seed,
        "tag",
        "-a",
        "-m",
        "first release",
        "v1.0.0",
        s["c1"],
        env={"GIT_COMMITTER_DATE": f"@{t + 50} +0000"},
    )
    s["c2"] = commit(seed, "feat: add b", {"b.txt": "b\n"}, date=t + 100)
    git(seed, "tag", "light-b", s["c2"])
    s["c3"] = commit(seed, WEIRD_MESSAGE, {"a.txt": "a\nfix\n", "dir/ünï.txt": "u\n"}, date=t + 200)
    s["c4"] = commit(seed, "fix(core): first change", {"conflict.txt": "main 1\n"}, date=t + 300)
    s["c5"] = commit(seed, "fix: builds on c4", {"conflict.txt": "main 2\n"}, date=t + 400)
    git(seed, "checkout", "--quiet", "-b", "side")
    s["side"] = commit(seed, "feat: side work", {"side.txt": "s\n"}, date=t + 500)
    git(seed, "checkout", "--quiet", "main")
    s["c6"] = commit(seed, "docs: main work", {"main.txt": "m\n"}, date=t + 600)
    stamp = {"GIT_AUTHOR_DATE": f"@{t + 700} +0000", "GIT_COMMITTER_DATE": f"@{t + 700} +0000"}
    git(
        seed,
        "merge",
        "--quiet",
        "--no-ff",
        "-m",
        "Merge pull request #7 from side",
        "side",
        env=stamp,
    )
    s["m7"] = git(seed, "rev-parse", "HEAD").strip()
    git(seed, "tag", "-a", "-m", "second", "v1.1.0", s["m7"], env=stamp)
    git(seed, "tag", "treetag", f"{s['c1']}^{{tree}}")  # not a release: must be dropped
    git(seed, "tag", "-a", "-m", "nested", "nested", "v1.0.0")  # a tag of a tag
    git(seed, "push", "--quiet", "origin", "main", "side", "--tags")
    ws = Workspace(tmp_path / "clones" / "proj", str(origin), timeout=60)
    ws.ensure()
    ws.fetch()
    return Repo(tmp=tmp_path, origin=origin, seed=seed, ws=ws, sha=s)
