"""Hostile names, revisions, refspecs and URLs are refused before git runs, and change nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from relapp import gitops
from relapp.gitops import UnsafeName, Workspace

from .conftest import Repo

CORPUS = [
    "-D",
    "--upload-pack=x",
    "--output={tmp}/out",
    "--exec=touch pwned",
    "a..b",
    "x.lock",
    "release/x.lock/y",
    "@{",
    "HEAD@{1}",
    "HEAD",
    "HEAD~1",
    "main^",
    "v1^{tree}",
    "a b",
    "a\tb",
    "../../hooks/x",
    "refs/../x",
    "\x01ctl",
    "tag\x7f",
    "v1.0.0\x00",
    "\n",
    "v1\n--output=x",
    "a" * 1024,
    "ext::sh -c touch pwned",
    "",
    "-x/y",
    "v1.",
    "a//b",
    "x/",
    "/abs",
    ".hidden",
    "a:b",
    "a*",
    "a?",
    "a[b",
    "a\\b",
    "€uro",
    "$(touch pwned)",
    "`touch pwned`",
    "main;touch pwned",
]

SHA = "0123456789abcdef0123456789abcdef01234567"  # well-formed; never reached


def _hostile(tmp: Path) -> list[str]:
    return [c.replace("{tmp}", str(tmp)) for c in CORPUS]


def _entry_points(ws: Workspace, bad: str, good: str) -> list[Callable[[], object]]:
    """Every public way a user-supplied string can enter gitops."""
    return [
        lambda: gitops.validate_ref_name(bad),
        lambda: gitops.validate_ref_name(bad, kind="branch"),
        lambda: gitops.validate_revision(bad),
        lambda: ws.resolve(bad),
        lambda: ws.create_tag(bad, good, "msg", "Quinn", "q@example.com"),
        lambda: ws.hotfix_branch(bad, good),
        lambda: ws.push_branch_ff(bad, good, good),
        lambda: ws.push_branch_ff("release/1.0", bad, good),
        lambda: ws.tags_merged(bad),
        lambda: ws.commits(bad),
        lambda: ws.commits(good, [bad]),
        lambda: ws.is_ancestor(bad, good),
        lambda: ws.patch_ids([good, bad]),
        lambda: ws.cherry(good, bad),
        lambda: ws.cherry_pick(bad, []),
        lambda: ws.cherry_pick(good, [good, bad]),
        lambda: ws.push([bad]),
        lambda: ws.push([f"{bad}:refs/tags/{bad}"]),
        lambda: ws.push([f"{good}:refs/heads/{bad}"]),
        lambda: ws.push([f"refs/tags/{bad}:refs/tags/v1"]),
        lambda: ws.remote_ref(f"refs/tags/{bad}"),
    ]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if ".git" not in p.parts}


def test_hostile_strings_are_refused_before_any_git_call(repo: Repo) -> None:
    ws = repo.ws
    good = repo.sha["c1"]
    origin_before, clone_before = repo.origin_refs(), repo.clone_refs()
    files_before = _files(repo.tmp)
    calls: list[tuple[str, ...]] = []
    gitops.on_git_call.append(calls.append)
    try:
        for bad in _hostile(repo.tmp):
            for n, call in enumerate(_entry_points(ws, bad, good)):
                count = gitops.git_call_count()
                with pytest.raises(UnsafeName):
                    call()
                    pytest.fail(f"entry point {n} accepted {bad!r}")
                assert gitops.git_call_count() == count, (bad, n)
    finally:
        gitops.on_git_call.remove(calls.append)
    assert calls == []
    assert repo.origin_refs() == origin_before
    assert repo.clone_refs() == clone_before
    assert _files(repo.tmp) == files_before
    assert not (repo.tmp / "out").exists()
    assert not list(repo.tmp.rglob("pwned"))
    assert not Path("pwned").exists()


def test_the_corpus_is_hostile_to_git_itself(repo: Repo) -> None:
    """Guard against a toothless corpus: a sample of it really is an option or a bad ref to git."""
    import subprocess

    proc = subprocess.run(
        ["git", "check-ref-format", "--branch", "-D"], capture_output=True, check=False
    )
    assert proc.returncode != 0
    proc = subprocess.run(
        ["git", "log", f"--output={repo.tmp}/out", "-1"],
        cwd=repo.seed,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0 and (repo.tmp / "out").exists()  # what we are fencing off


def test_full_shas_are_not_ref_names() -> None:
    with pytest.raises(UnsafeName, match="mistaken for a revision"):
        gitops.validate_ref_name(SHA)
    assert gitops.validate_revision(SHA.upper()) == SHA


def test_good_names_pass() -> None:
    for name in ("v1.2.0", "release/1.2", "rel_1_4_0", "1.2.0-rc.1", "hotfix/ABC-123.fix"):
        assert gitops.validate_ref_name(name) == name
        assert gitops.validate_ref_name(name, kind="branch") == name
        assert gitops.validate_revision(name) == name
    assert gitops.validate_revision("abcd") == "abcd"
    assert gitops.validate_revision("ABCDEF12") == "abcdef12"
    assert gitops.validate_ref_name("a" * 100) == "a" * 100
    with pytest.raises(UnsafeName, match="at most 100"):
        gitops.validate_ref_name("a" * 101)


BAD_URLS = [
    "ext::sh -c touch pwned",
    "ext::sh -c touch% pwned",
    "-uX",
    "--upload-pack=x",
    "--config=core.sshCommand=touch pwned",
    "fd::17",
    "https::x",
    "",
    "relative/path.git",
    "https://-oProxyCommand=x/y",
    "ssh://-oProxyCommand=touch%20pwned/x",
    "git@host:path\nmore",
    "https://example.com/x y",
    "\x00/srv/x",
]

GOOD_URLS = [
    "/srv/git/project.git",
    "file:///srv/git/project.git",
    "https://git.example.com/org/project.git",
    "https://user:token@git.example.com/org/project.git",
    "ssh://git@git.example.com:2222/org/project.git",
    "git@github.com:org/project.git",
]


def test_remote_urls(tmp_path: Path) -> None:
    for url in BAD_URLS:
        count = gitops.git_call_count()
        with pytest.raises(UnsafeName):
            gitops.validate_remote_url(url)
        with pytest.raises(UnsafeName):
            Workspace(tmp_path / "c", url)
        with pytest.raises(UnsafeName):
            gitops.clone_to(tmp_path / "c", url)
        assert gitops.git_call_count() == count
    for url in GOOD_URLS:
        assert gitops.validate_remote_url(url) == url
    assert not list(tmp_path.rglob("pwned"))
    assert not (tmp_path / "c").exists()


def test_unsafe_messages_mask_credentials() -> None:
    with pytest.raises(UnsafeName) as info:
        gitops.validate_remote_url("https://bob:hunter22@host/x y")
    assert "hunter22" not in str(info.value)
