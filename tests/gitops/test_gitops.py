"""gitops against real repositories: reads, tagging, pushing, hotfix cherry-picks, locking."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from relapp import gitops
from relapp.domain.gitdata import TagRef
from relapp.domain.versioning import DEFAULT_LEGACY, TagRules, TagStatus, inventory, inventory_of
from relapp.gitops import (
    CherryPickConflict,
    CherryPickEmpty,
    GitError,
    PushRejected,
    TagConflict,
    Workspace,
    WorkspaceBusy,
)

from .conftest import WEIRD_MESSAGE, Repo, commit, git

TAGGER = ("Quinn Releaser", "quinn@example.com")


@pytest.fixture
def calls() -> Iterator[list[tuple[str, ...]]]:
    """Every git argv gitops runs while the test is active."""
    seen: list[tuple[str, ...]] = []
    gitops.on_git_call.append(seen.append)
    yield seen
    gitops.on_git_call.remove(seen.append)


# --------------------------------------------------------------------------- reads


def test_tags_are_peeled_and_dated_from_one_listing(repo: Repo) -> None:
    tags = {t.name: t for t in repo.ws.tags()}
    assert set(tags) == {"v1.0.0", "light-b", "v1.1.0", "nested"}  # treetag dropped
    v1 = tags["v1.0.0"]
    assert (v1.sha, v1.annotated, v1.created) == (repo.sha["c1"], True, 1_700_000_050)
    light = tags["light-b"]
    assert (light.sha, light.annotated, light.created) == (repo.sha["c2"], False, 1_700_000_100)
    assert tags["v1.1.0"].sha == repo.sha["m7"]
    assert tags["nested"].sha == repo.sha["c1"] and tags["nested"].annotated


def test_tags_merged_follows_reachability(repo: Repo) -> None:
    assert repo.ws.tags_merged(repo.sha["c2"]) == {"v1.0.0", "light-b", "nested"}
    assert repo.ws.tags_merged(repo.sha["m7"]) == {"v1.0.0", "light-b", "nested", "v1.1.0"}
    assert repo.ws.tags_merged(repo.sha["side"]) == {"v1.0.0", "light-b", "nested"}


def test_commits_in_range_with_weird_message_files_and_merge(repo: Repo, calls: list) -> None:
    s = repo.sha
    got = repo.ws.commits(s["m7"], [s["c2"]])
    assert len(calls) == 1
    shas = [c.sha for c in got]
    assert set(shas) == {s["m7"], s["c6"], s["side"], s["c5"], s["c4"], s["c3"]}
    assert shas[0] == s["m7"]
    # children before parents (topological), whatever the dates say
    pos = {sha: i for i, sha in enumerate(shas)}
    for c in got:
        for p in c.parents:
            if p in pos:
                assert pos[c.sha] < pos[p]
    by_sha = {c.sha: c for c in got}
    merge = by_sha[s["m7"]]
    assert merge.parents == (s["c6"], s["side"]) and merge.files == ()
    assert merge.subject == "Merge pull request #7 from side"
    weird = by_sha[s["c3"]]
    assert weird.message.rstrip("\n") == WEIRD_MESSAGE
    assert weird.files == ("a.txt", "dir/ünï.txt")
    assert weird.parents == (s["c2"],)
    assert (weird.author_name, weird.author_email) == ("Ada Author", "ada@example.com")
    assert weird.authored == 1_700_000_200
    assert by_sha[s["c5"]].files == ("conflict.txt",)


def test_commits_without_exclude_reaches_the_root(repo: Repo) -> None:
    got = repo.ws.commits(repo.sha["c2"])
    assert [c.sha for c in got] == [repo.sha["c2"], repo.sha["c1"]]
    assert got[1].files == ("a.txt", "conflict.txt") and got[1].parents == ()


def test_resolve(repo: Repo) -> None:
    ws, s = repo.ws, repo.sha
    assert ws.resolve("v1.0.0") == s["c1"]
    assert ws.resolve("nested") == s["c1"]
    assert ws.resolve("light-b") == s["c2"]
    assert ws.resolve("main") == s["m7"]
    assert ws.resolve("side") == s["side"]
    assert ws.resolve("origin/side") == s["side"]
    assert ws.resolve("refs/tags/light-b") == s["c2"]
    assert ws.resolve(s["c3"][:8].upper()) == s["c3"]
    assert ws.resolve(s["c3"]) == s["c3"]
    with pytest.raises(GitError, match="Unknown revision 'nope'"):
        ws.resolve("nope")
    with pytest.raises(GitError, match="Unknown revision"):
        ws.resolve("deadbeef")


def test_resolve_prefers_the_remote_branch(repo: Repo) -> None:
    # The clone's own checkout state never decides what "main" means.
    ws = repo.ws
    ws.cherry_pick(repo.sha["c1"], [])
    commit(repo.seed, "fix: newer", {"n.txt": "n\n"}, date=1_700_001_000)
    git(repo.seed, "push", "--quiet", "origin", "main")
    ws.fetch()
    assert ws.resolve("main") == git(repo.seed, "rev-parse", "HEAD").strip()


def test_is_ancestor(repo: Repo) -> None:
    s = repo.sha
    assert repo.ws.is_ancestor(s["c1"], s["c3"])
    assert repo.ws.is_ancestor(s["c3"], s["c3"])
    assert not repo.ws.is_ancestor(s["c3"], s["c1"])
    assert not repo.ws.is_ancestor(s["side"], s["c6"])


def test_patch_ids_and_cherry(repo: Repo, calls: list) -> None:
    ws, s = repo.ws, repo.sha
    picked = ws.cherry_pick(s["c1"], [s["c3"]])
    calls.clear()
    ids = ws.patch_ids([s["c3"], picked, s["m7"], s["c2"]])
    assert len(calls) == 2  # one log, one patch-id
    assert ids[s["c3"]] == ids[picked]
    assert ids[s["c2"]] != ids[s["c3"]]
    assert s["m7"] not in ids  # merges have no patch
    assert ws.cherry(s["m7"], picked) == {picked: True}
    # a fix made only on a line is not on main
    git(repo.seed, "checkout", "--quiet", "-b", "line-only", s["c1"])
    only = commit(repo.seed, "fix: only on the line", {"l.txt": "l\n"}, date=1_700_002_000)
    git(repo.seed, "push", "--quiet", "origin", "line-only")
    ws.fetch()
    assert ws.cherry(s["m7"], only) == {only: False}
    assert ws.patch_ids([]) == {}


def test_reads_use_a_constant_number_of_git_processes(tmp_path: Path, calls: list) -> None:
    """300 commits and 120 tags built with fast-import: each read is still one or two processes."""
    origin = gitops.init_bare(tmp_path / "big.git")
    lines: list[str] = []
    for i in range(1, 301):
        body = f"fix: change {i}\n"
        data = f"line {i}\n"
        lines += [
            "commit refs/heads/main",
            f"mark :{i}",
            f"author A <a@example.com> {1_600_000_000 + i} +0000",
            f"committer A <a@example.com> {1_600_000_000 + i} +0000",
            f"data {len(body.encode())}",
            body.rstrip("\n"),
        ]
        if i > 1:
            lines.append(f"from :{i - 1}")
        lines += [f"M 100644 inline f{i % 7}.txt", f"data {len(data.encode())}", data]
        if i % 5 == 0 and i <= 600:
            lines += [f"reset refs/tags/t{i}", f"from :{i}", ""]
    for i in range(1, 21):
        lines += [
            f"tag a{i}",
            f"from :{i * 10}",
            f"tagger T <t@example.com> {1_650_000_000 + i} +0000",
            "data 2",
            "hi",
        ]
    gitops.fast_import(origin, ("\n".join(lines) + "\n").encode())
    ws = Workspace(tmp_path / "clone", str(origin))
    ws.ensure()
    ws.fetch()
    head = ws.resolve("main")

    def count(fn: object, *args: object) -> tuple[int, object]:
        before = len(calls)
        result = fn(*args)  # type: ignore[operator]
        return len(calls) - before, result

    n, tags = count(ws.tags)
    assert n == 1 and len(tags) == 80  # type: ignore[arg-type]
    n, merged = count(ws.tags_merged, head)
    assert n == 1 and len(merged) == 80  # type: ignore[arg-type]
    n, commits = count(ws.commits, head)
    assert n == 1 and len(commits) == 300  # type: ignore[arg-type]
    shas = [c.sha for c in commits]  # type: ignore[attr-defined]
    n, ids = count(ws.patch_ids, shas)
    assert n == 2 and set(ids) == set(shas)  # type: ignore[arg-type]
    n, cherry = count(ws.cherry, shas[-1], head)
    assert n == 1 and len(cherry) == 299  # type: ignore[arg-type]


# --------------------------------------------------------------------------- streamed tags

# A project's rules as issue 8's users write them: a split template, the built-in forms plus an
# underscore rule, an ignore rule.
STREAM_RULES = TagRules(
    template="v{major}.{minor}.{patch}",
    legacy=(*DEFAULT_LEGACY, r"product-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)"),
    ignore=(r"nightly-\d+",),
)


def _more_tags(repo: Repo) -> None:
    """Every kind of tag beside the fixture's: annotated on commits, lightweight, tags of tags
    two and three deep named to sort among the others, a ref straight at a tag object, tags of a
    tree and a blob, one version on two commits, and names no rule reads or an ignore rule takes."""
    s, work = repo.sha, repo.ws.path
    git(work, "tag", "-a", "-m", "legacy", "product-1_2_0", s["c3"])
    git(work, "tag", "1.1.0", s["c2"])  # the version of v1.1.0, on another commit: a conflict
    git(work, "tag", "release-1.3", s["c4"])
    git(work, "tag", "-a", "-m", "again", "v1.0.1-rc.1", s["c5"])
    git(work, "tag", "-a", "-m", "deeper", "v1.0.5", "nested")  # tag of a tag of a tag
    git(work, "tag", "-a", "-m", "deepest", "a-deep", "v1.0.5")
    tag_object = git(work, "rev-parse", "v1.1.0").strip()
    git(work, "update-ref", "refs/tags/v2.0.0", tag_object)  # a plain ref at a tag object
    git(work, "tag", "-a", "-m", "tree", "v3.0.0", f"{s['c1']}^{{tree}}")  # dropped
    blob = git(work, "rev-parse", f"{s['c1']}:a.txt").strip()
    git(work, "tag", "blobtag", blob)  # dropped
    git(work, "tag", "nightly-12", s["c6"])
    git(work, "tag", "build-7", s["c6"])
    git(work, "tag", "zeta-\u2028-1.0", s["c6"])  # a Unicode line separator inside a name


def test_streamed_inventory_is_the_inventory_of_the_listed_tags(repo: Repo, calls: list) -> None:
    _more_tags(repo)
    listed = repo.ws.tags()
    assert [t.name for t in listed] == sorted(t.name for t in listed)
    names = {t.name for t in listed}
    assert {"treetag", "v3.0.0", "blobtag"}.isdisjoint(names)
    assert {"nested", "v1.0.5", "a-deep", "v2.0.0", "zeta-\u2028-1.0", "light-b"} <= names
    peeled = {t.name: t for t in listed}
    assert peeled["a-deep"].sha == peeled["v1.0.5"].sha == repo.sha["c1"]
    assert peeled["v2.0.0"].sha == repo.sha["m7"] and peeled["v2.0.0"].annotated

    before = len(calls)
    streamed = inventory_of(repo.ws, STREAM_RULES)
    assert [c[0] for c in calls[before:]] == ["for-each-ref", "cat-file"]  # one listing, one peel
    whole = inventory(repo.ws.tags(), STREAM_RULES)
    assert streamed == whole
    assert [c.name for c in streamed.classified] == [t.name for t in listed]
    assert {c.name: c.status for c in streamed.classified} == {
        "1.1.0": TagStatus.LEGACY,
        "a-deep": TagStatus.UNKNOWN,
        "build-7": TagStatus.UNKNOWN,
        "light-b": TagStatus.UNKNOWN,
        "nested": TagStatus.UNKNOWN,
        "nightly-12": TagStatus.IGNORED,
        "product-1_2_0": TagStatus.LEGACY,
        "release-1.3": TagStatus.LEGACY,
        "v1.0.0": TagStatus.CANONICAL,
        "v1.0.1-rc.1": TagStatus.CANONICAL,
        "v1.0.5": TagStatus.CANONICAL,
        "v1.1.0": TagStatus.CANONICAL,
        "v2.0.0": TagStatus.CANONICAL,
        "zeta-\u2028-1.0": TagStatus.UNKNOWN,
    }
    assert [(str(c.version), [t.name for t in c.tags]) for c in streamed.conflicts] == [
        ("1.1.0", ["1.1.0", "v1.1.0"])
    ]


def test_tags_arrive_in_batches_while_git_lists_them(repo: Repo) -> None:
    """More than a pipe's worth of listing (1,500 lightweight and 1,500 annotated tags, about
    300 kB) comes in several batches, in git's order, which is the sorted list's; tags of tags
    come in a last batch. Each tag is peeled and dated as git says."""
    work, c2 = repo.ws.path, repo.sha["c2"]
    refs = "".join(f"create refs/tags/bulk-{i:04d} {c2}\n" for i in range(1500))
    git(work, "update-ref", "--stdin", input=refs.encode())
    stream = "".join(
        f"tag rel-{i:04d}\nfrom {c2}\ntagger T <t@example.com> {1_650_000_000 + i} +0000\ndata 2\nhi\n"
        for i in range(1500)
    )
    gitops.fast_import(work, stream.encode())
    batches: list[list[TagRef]] = []
    listed = repo.ws.tags(on_tags=batches.append)
    assert len(batches) >= 5
    streamed = [t for batch in batches for t in batch]
    assert batches[-1] == [t for t in listed if t.name == "nested"]
    assert streamed[:-1] == [t for t in listed if t.name != "nested"]
    by_name = {t.name: t for t in listed}
    assert len(by_name) == 3004
    for i in range(1500):
        light, annotated = by_name[f"bulk-{i:04d}"], by_name[f"rel-{i:04d}"]
        assert (light.sha, light.annotated, light.created) == (c2, False, 1_700_000_100)
        assert (annotated.sha, annotated.annotated, annotated.created) == (
            c2,
            True,
            1_650_000_000 + i,
        )


def test_a_failing_tag_consumer_stops_the_listing(repo: Repo) -> None:
    def refuse(batch: list[TagRef]) -> None:
        raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        repo.ws.tags(on_tags=refuse)
    assert [t.name for t in repo.ws.tags()] == ["light-b", "nested", "v1.0.0", "v1.1.0"]


# --------------------------------------------------------------------------- fetch


def test_fetch_reports_a_moved_tag_and_keeps_ours(repo: Repo) -> None:
    s = repo.sha
    git(repo.seed, "tag", "-f", "-a", "-m", "moved", "v1.0.0", s["c2"])
    git(repo.seed, "tag", "v9.0.0", s["c3"])
    git(repo.seed, "push", "--quiet", "--force", "origin", "refs/tags/v1.0.0", "refs/tags/v9.0.0")
    result = repo.ws.fetch()
    assert result.moved_tags == ("v1.0.0",)
    tags = {t.name: t.sha for t in repo.ws.tags()}
    assert tags["v1.0.0"] == s["c1"]  # not silently taken
    assert tags["v9.0.0"] == s["c3"]  # the rest of the fetch still happened
    assert repo.ws.fetch().moved_tags == ("v1.0.0",)  # reported every time until settled


def test_fetch_prunes_deleted_branches_and_tags(repo: Repo) -> None:
    git(repo.seed, "push", "--quiet", "origin", ":refs/heads/side", ":refs/tags/light-b")
    assert repo.ws.fetch().moved_tags == ()
    assert "refs/remotes/origin/side" not in repo.clone_refs()
    assert "light-b" not in {t.name for t in repo.ws.tags()}


def test_ensure_is_idempotent_and_replaces_a_half_made_clone(tmp_path: Path, repo: Repo) -> None:
    repo.ws.ensure()
    assert repo.ws.resolve("main") == repo.sha["m7"]
    broken = tmp_path / "clones" / "broken"
    (broken / "junk").mkdir(parents=True)
    ws = Workspace(broken, str(repo.origin))
    ws.ensure()
    ws.fetch()
    assert ws.resolve("v1.1.0") == repo.sha["m7"]
    assert not (broken / "junk").exists()


# --------------------------------------------------------------------------- tags and pushes


def test_create_tag_and_push_reach_the_remote(repo: Repo) -> None:
    ws, s = repo.ws, repo.sha
    ref = ws.create_tag("v2.0.0", s["c3"], "Release 2.0.0\n\n# kept, not a comment", *TAGGER)
    assert ref == "refs/tags/v2.0.0"
    assert "v2.0.0" not in repo.origin_refs()
    ws.push([f"{ref}:{ref}"])
    fmt = "%(objecttype) %(*objectname) %(taggername) %(taggeremail)"
    out = git(repo.origin, "for-each-ref", f"--format={fmt}", ref).strip()
    assert out == f"tag {s['c3']} Quinn Releaser <quinn@example.com>"
    body = git(repo.origin, "cat-file", "tag", ref)
    assert "# kept, not a comment" in body


def test_retagging_is_idempotent(repo: Repo, tmp_path: Path) -> None:
    ws, s = repo.ws, repo.sha
    ref = ws.create_tag("v2.0.0", s["c3"], "first", *TAGGER)
    ws.push([f"{ref}:{ref}"])
    published = git(repo.origin, "rev-parse", ref).strip()
    # the same job again, in the same clone: carries on, push is "up to date"
    assert ws.create_tag("v2.0.0", s["c3"], "second attempt", *TAGGER) == ref
    ws.push([f"{ref}:{ref}"])
    # and from a fresh clone that never saw the tag locally
    other = Workspace(tmp_path / "clones" / "other", str(repo.origin))
    other.ensure()
    git(other.path, "tag", "-d", "v2.0.0")  # as if fetched before the first push
    assert other.create_tag("v2.0.0", s["c3"], "third attempt", *TAGGER) == ref
    other.push([f"{ref}:{ref}"])
    assert git(repo.origin, "rev-parse", ref).strip() == published


def test_tag_on_the_remote_at_another_commit_conflicts(repo: Repo) -> None:
    s = repo.sha
    git(repo.seed, "tag", "v3.0.0", s["c2"])
    git(repo.seed, "push", "--quiet", "origin", "refs/tags/v3.0.0")  # after our fetch
    with pytest.raises(TagConflict, match="already exists on the remote") as info:
        repo.ws.create_tag("v3.0.0", s["c1"], "x", *TAGGER)
    assert info.value.existing_sha == s["c2"]
    assert "v3.0.0" not in {t.name for t in repo.ws.tags()}
    with pytest.raises(TagConflict):
        repo.ws.create_tag("v1.0.0", s["c2"], "x", *TAGGER)
    assert repo.origin_ref("refs/tags/v1.0.0") == s["c1"]


def test_push_rejected_by_the_remote_is_atomic_and_named(repo: Repo) -> None:
    hook = repo.origin / "hooks" / "update"  # per ref, so the remote names the culprit
    hook.write_text(
        '#!/bin/sh\ncase "$1" in refs/tags/blocked-*) echo "no blocked tags" >&2; exit 1;; esac\n'
    )
    hook.chmod(0o755)
    ws, s = repo.ws, repo.sha
    ok = ws.create_tag("ok-1", s["c2"], "fine", *TAGGER)
    blocked = ws.create_tag("blocked-1", s["c2"], "refused", *TAGGER)
    with pytest.raises(PushRejected) as info:
        ws.push([f"{ok}:{ok}", f"{blocked}:{blocked}"])
    assert info.value.ref == blocked
    assert "hook declined" in str(info.value)
    assert "ok-1" not in repo.origin_refs()  # atomic: nothing landed


def test_push_of_an_existing_tag_at_another_object_is_rejected(repo: Repo) -> None:
    s = repo.sha
    git(repo.ws.path, "tag", "-f", "v1.0.0", s["c2"])  # local tamper: never forced out
    with pytest.raises(PushRejected, match="refs/tags/v1.0.0"):
        repo.ws.push(["refs/tags/v1.0.0:refs/tags/v1.0.0"])
    assert repo.origin_ref("refs/tags/v1.0.0") == s["c1"]


# --------------------------------------------------------------------------- hotfixes


def test_hotfix_flow(repo: Repo, calls: list) -> None:
    ws, s = repo.ws, repo.sha
    base = ws.hotfix_branch("release/1.0", ws.resolve("v1.0.0"))
    assert base == s["c1"]
    assert repo.origin_ref("refs/heads/release/1.0") == s["c1"]
    assert ws.hotfix_branch("release/1.0", s["c2"]) == s["c1"]  # exists: not moved
    new = ws.cherry_pick(base, [s["c3"]], committer_name="Quinn", committer_email="q@example.com")
    message = git(ws.path, "log", "-1", "--format=%B%n%cn", new)
    assert f"(cherry picked from commit {s['c3']})" in message
    assert message.rstrip().endswith("Quinn")
    assert git(ws.path, "rev-parse", f"{new}^").strip() == base
    ws.push_branch_ff("release/1.0", new, base)
    assert repo.origin_ref("refs/heads/release/1.0") == new
    ref = ws.create_tag("v1.0.1", new, "hotfix", *TAGGER)
    ws.push([f"{ref}:{ref}"])
    assert repo.origin_ref(ref) == new
    # everything that took a revision or refspec was fenced off from options
    fenced = {"log", "rev-parse", "push", "fetch", "cherry-pick", "tag", "merge-base", "ls-remote"}
    for argv in calls:
        if argv[0] in fenced and argv[1:] != ("--verify", "HEAD"):
            assert "--end-of-options" in argv or "--stdin" in argv, argv
        assert not any(a.startswith(("--force", "-f", "+refs")) for a in argv if argv[0] == "push")


def test_non_fast_forward_branch_push_is_rejected(repo: Repo) -> None:
    ws, s = repo.ws, repo.sha
    ws.hotfix_branch("release/1.0", s["c1"])
    # someone else moves the line meanwhile
    git(repo.seed, "fetch", "--quiet", "origin")
    git(repo.seed, "checkout", "--quiet", "-b", "rel", "origin/release/1.0")
    theirs = commit(repo.seed, "fix: theirs", {"t.txt": "t\n"}, date=1_700_003_000)
    git(repo.seed, "push", "--quiet", "origin", "rel:release/1.0")
    new = ws.cherry_pick(s["c1"], [s["c3"]])
    with pytest.raises(PushRejected) as info:
        ws.push_branch_ff("release/1.0", new, s["c1"])
    assert info.value.ref == "refs/heads/release/1.0"
    assert repo.origin_ref("refs/heads/release/1.0") == theirs
    with pytest.raises(PushRejected, match="does not build on"):
        ws.push_branch_ff("release/1.0", s["c1"], new)


def test_hotfix_branch_created_elsewhere_is_fetched(repo: Repo) -> None:
    git(repo.seed, "checkout", "--quiet", "-b", "rel", repo.sha["c1"])
    theirs = commit(repo.seed, "fix: made elsewhere", {"e.txt": "e\n"}, date=1_700_004_000)
    git(repo.seed, "push", "--quiet", "origin", "rel:release/1.0")
    assert repo.ws.hotfix_branch("release/1.0", repo.sha["c1"]) == theirs
    # its objects are here now, so a cherry-pick onto it works without another fetch
    new = repo.ws.cherry_pick(theirs, [repo.sha["c3"]])
    assert repo.ws.is_ancestor(theirs, new)


def _assert_clean(ws: Workspace) -> None:
    assert not (ws.git_dir / "CHERRY_PICK_HEAD").exists()
    assert not (ws.git_dir / "sequencer").exists()
    assert git(ws.path, "status", "--porcelain", "--untracked-files=all") == ""


def test_conflict_aborts_cleanly_and_names_the_files(repo: Repo) -> None:
    ws, s = repo.ws, repo.sha
    with pytest.raises(CherryPickConflict) as info:
        ws.cherry_pick(s["c1"], [s["c5"]])
    assert info.value.files == ("conflict.txt",)
    assert info.value.commit == s["c5"]
    assert "conflict.txt" in str(info.value)
    _assert_clean(ws)
    # a conflict on the second of two picks also leaves nothing behind
    with pytest.raises(CherryPickConflict) as info:
        ws.cherry_pick(s["c1"], [s["c3"], s["c5"]])
    assert info.value.commit == s["c5"]
    _assert_clean(ws)
    # the clone is usable: the next hotfix goes through
    new = ws.cherry_pick(s["c1"], [s["c3"], s["c4"], s["c5"]])
    assert (ws.path / "conflict.txt").read_text() == "main 2\n"
    assert len(ws.commits(new, [s["c1"]])) == 3
    _assert_clean(ws)


def test_a_fix_already_on_the_line_is_an_empty_pick(repo: Repo) -> None:
    ws, s = repo.ws, repo.sha
    once = ws.cherry_pick(s["c1"], [s["c3"]])
    with pytest.raises(CherryPickEmpty, match="already there") as info:
        ws.cherry_pick(once, [s["c3"]])
    assert info.value.commit == s["c3"]
    _assert_clean(ws)
    assert ws.cherry_pick(once, [s["c4"]]) != once


def test_a_stale_cherry_pick_from_a_crash_is_cleared(repo: Repo) -> None:
    ws, s = repo.ws, repo.sha
    git(ws.path, "checkout", "--quiet", "--detach", s["c1"])
    proc = subprocess.run(
        ["git", "cherry-pick", s["c5"]],
        cwd=ws.path,
        capture_output=True,
        check=False,
        env={
            "GIT_CEILING_DIRECTORIES": str(ws.path.parent),
            "PATH": "/usr/bin:/bin",
            "GIT_COMMITTER_NAME": "x",
            "GIT_COMMITTER_EMAIL": "x@x",
            "HOME": str(repo.tmp),
        },
    )
    assert proc.returncode != 0 and (ws.git_dir / "CHERRY_PICK_HEAD").exists()
    new = ws.cherry_pick(s["c1"], [s["c3"]])
    assert git(ws.path, "rev-parse", "HEAD").strip() == new
    _assert_clean(ws)


# --------------------------------------------------------------------------- locking


def test_lock_serialises_threads(repo: Repo) -> None:
    held, release = threading.Event(), threading.Event()
    order: list[str] = []

    def holder() -> None:
        with repo.ws.lock():
            order.append("a-in")
            held.set()
            release.wait(30)
            order.append("a-out")

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(30)
    with pytest.raises(WorkspaceBusy, match="busy"), repo.ws.lock(timeout=0.2):
        order.append("b-in-too-early")
    release.set()
    with repo.ws.lock(timeout=30):
        order.append("b-in")
    t.join()
    assert order == ["a-in", "a-out", "b-in"]


def test_lock_serialises_processes(repo: Repo) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from relapp.gitops import Workspace\n"
        "ws = Workspace(Path(sys.argv[1]), sys.argv[2])\n"
        "with ws.lock():\n"
        "    print('locked', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(repo.ws.path), str(repo.origin)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(WorkspaceBusy), repo.ws.lock(timeout=0.2):
            pass
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(30) == 0
        with repo.ws.lock(timeout=30):
            pass
    finally:
        if child.poll() is None:
            child.kill()


# --------------------------------------------------------------------------- secrets, timeouts


def test_mask_hides_url_credentials_and_given_secrets() -> None:
    text = "fatal: unable to access 'https://bob:hunter22@git.example.com/x.git/': token tok-123"
    masked = gitops.mask(text, ["tok-123"])
    assert "hunter22" not in masked and "bob" not in masked and "tok-123" not in masked
    assert "https://***@git.example.com/x.git/" in masked
    assert gitops.redact_url("ssh://git@host/x.git") == "ssh://***@host/x.git"
    assert gitops.mask("nothing secret here") == "nothing secret here"


def test_credentials_never_reach_an_error_message(tmp_path: Path) -> None:
    url = "https://alice:s3cr3t-pass@127.0.0.1:9/repo.git"  # nothing listens on port 9
    ws = Workspace(tmp_path / "c", url, timeout=60)
    assert "s3cr3t" not in repr(ws)
    with pytest.raises(GitError) as info:
        ws.ensure()
    assert "s3cr3t" not in str(info.value) and "alice" not in str(info.value)
    assert "cloning" in str(info.value)


def test_a_hanging_git_is_stopped(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path / "c",
        "ssh://git.example.invalid/repo.git",
        timeout=1,
        env={"GIT_SSH_COMMAND": "sleep 60; :"},
    )
    with pytest.raises(GitError, match="did not finish within 1 seconds"):
        ws.ensure()
    assert not ws.exists()
