"""Commit parsing, issue keys, revert cancelling, team grouping and rendering of changelogs."""

from __future__ import annotations

import json

import pytest

from relapp.domain.changelog import (
    Changelog,
    Section,
    Team,
    build_changelog,
    teams_for,
    to_json,
    to_markdown,
)
from relapp.domain.commits import (
    FixPresence,
    effective_commits,
    fix_on_main,
    issue_keys,
    parse_message,
)
from relapp.domain.gitdata import RawCommit

_counter = iter(range(1, 10_000))


def sha(n: int) -> str:
    # The number leads, so short shas (first 7 hex digits) differ between commits.
    return f"{n:07x}" + "e" * 33


def commit(
    message: str,
    *,
    n: int | None = None,
    files: tuple[str, ...] = ("src/app.py",),
    parents: tuple[str, ...] | None = None,
    author: str = "Ada Lovelace",
) -> RawCommit:
    n = next(_counter) if n is None else n
    return RawCommit(
        sha=sha(n),
        parents=parents if parents is not None else (sha(n + 100_000),),
        author_name=author,
        author_email=f"{author.split()[0].lower()}@example.com",
        authored=1_700_000_000 + n,
        message=message,
        files=files,
    )


# --- header parsing ---------------------------------------------------------------------------

HEADER_CASES = [
    # message, type, scope, breaking, description, pr
    ("feat: add login", "feat", None, False, "add login", None),
    ("feat!: drop python 3.9", "feat", None, True, "drop python 3.9", None),
    ("fix(api)!: rename field", "fix", "api", True, "rename field", None),
    ("Fix(UI): button colour", "fix", "UI", False, "button colour", None),
    ("feat(): empty scope", "feat", None, False, "empty scope", None),
    ("fix: x (#45)", "fix", None, False, "x", 45),
    ("fix: gitlab style (!7)", "fix", None, False, "gitlab style", 7),
    ("perf: faster (pull request #9)", "perf", None, False, "faster", 9),
    ("Merge pull request #12 from a/b", None, None, False, "Merge pull request #12 from a/b", 12),
    ("Update README", None, None, False, "Update README", None),
    ("feat:missing space", None, None, False, "feat:missing space", None),
    ("feat(a)(b): two scopes", None, None, False, "feat(a)(b): two scopes", None),
    (
        "feat: new api\n\nLong body.\n\nBREAKING CHANGE: old api removed",
        "feat",
        None,
        True,
        "new api",
        None,
    ),
    ("fix: y\n\nBREAKING-CHANGE: config key renamed", "fix", None, True, "y", None),
    # A type-looking body line is prose, not a second header.
    (
        "chore: bump deps\n\nfeat: this line is in the body\n",
        "chore",
        None,
        False,
        "bump deps",
        None,
    ),
    # BREAKING CHANGE in a body paragraph that is not the trailer block does not count.
    (
        "docs: explain\n\nBREAKING CHANGE: is how you mark it, see below.\n\nThanks to all.",
        "docs",
        None,
        False,
        "explain",
        None,
    ),
    ("Add thing\n\nSee merge request group/proj!31", None, None, False, "Add thing", 31),
    ("fix: crlf\r\n\r\nBREAKING CHANGE: yes\r\n", "fix", None, True, "crlf", None),
]


@pytest.mark.parametrize(("message", "ctype", "scope", "breaking", "desc", "pr"), HEADER_CASES)
def test_parse_header(
    message: str, ctype: str | None, scope: str | None, breaking: bool, desc: str, pr: int | None
) -> None:
    parsed = parse_message(message)
    assert (parsed.type, parsed.scope, parsed.breaking, parsed.description, parsed.pr) == (
        ctype,
        scope,
        breaking,
        desc,
        pr,
    )


def test_trailers_come_from_last_paragraph_only() -> None:
    message = (
        "fix(db): retry on deadlock\n\n"
        "Reviewed-by: nobody\nthis paragraph has prose so it is body\n\n"
        "Refs: ABC-1\n"
        "Co-authored-by: Grace Hopper <grace@example.com>\n"
        "Co-authored-by: Alan Turing <alan@example.com>\n"
        "BREAKING CHANGE: the retry count is\n  now configurable\n"
    )
    parsed = parse_message(message)
    assert parsed.trailers == (
        ("Refs", "ABC-1"),
        ("Co-authored-by", "Grace Hopper <grace@example.com>"),
        ("Co-authored-by", "Alan Turing <alan@example.com>"),
        ("BREAKING CHANGE", "the retry count is now configurable"),
    )
    assert parsed.co_authors == (
        "Grace Hopper <grace@example.com>",
        "Alan Turing <alan@example.com>",
    )
    assert parsed.breaking


def test_subject_alone_has_no_trailers() -> None:
    assert parse_message("Signed-off-by: someone").trailers == ()


def test_cherry_pick_and_revert_lines() -> None:
    src = "ab" * 20
    picked = parse_message(f"fix: x\n\nSigned-off-by: A <a@x>\n(cherry picked from commit {src})\n")
    assert picked.cherry_picked_from == src
    assert picked.trailers == (("Signed-off-by", "A <a@x>"),)
    rev = parse_message(f'Revert "feat: y"\n\nThis reverts commit {src.upper()}.\n')
    assert rev.reverts == src
    assert rev.type is None
    # The line means nothing in a commit that is not a revert.
    assert parse_message(f"docs: quote\n\nThis reverts commit {src}.\n").reverts is None


# --- issue keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "pattern", "keys"),
    [
        ("fix: ABC-1 and XY2-33, again ABC-1", r"[A-Z][A-Z0-9]+-\d+", ("ABC-1", "XY2-33")),
        ("fix: lowercase abc-1 is not a key", r"[A-Z][A-Z0-9]+-\d+", ()),
        ("feat: A-1 is too short", r"[A-Z][A-Z0-9]+-\d+", ()),
        ("fix: body\n\nRefs: PAY-9\nCloses: OPS-10", r"[A-Z][A-Z0-9]+-\d+", ("PAY-9", "OPS-10")),
        ("fix: #12 and #13", r"#\d+", ("#12", "#13")),
        ("fix: groups do not change what is returned (T-1)", r"(T)-(\d+)", ("T-1",)),
    ],
)
def test_issue_keys(message: str, pattern: str, keys: tuple[str, ...]) -> None:
    assert issue_keys(message, pattern) == keys


@pytest.mark.parametrize(
    ("pattern", "words"), [("([A-Z", "not a valid"), ("x*", "empty"), ("", "empty")]
)
def test_bad_issue_pattern_is_a_sentence(pattern: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        issue_keys("fix: ABC-1", pattern)


def test_issue_scan_is_capped() -> None:
    message = "fix: x\n\n" + "a" * 70_000 + " LATE-1"
    assert issue_keys(message) == ()
    assert issue_keys("EARLY-1 " + message) == ("EARLY-1",)


# --- teams ------------------------------------------------------------------------------------

TEAMS = (Team("payments", ("services/pay", "libs/money/")), Team("web", ("web",)))


@pytest.mark.parametrize(
    ("files", "teams"),
    [
        (("services/pay/api.py",), ("payments",)),
        (("libs/money/x.py", "web/index.ts"), ("payments", "web")),
        (
            ("web/a.ts", "services/pay/b.py"),
            ("payments", "web"),
        ),  # configured order, not touch order
        (("services/payroll/x.py",), ("other",)),  # prefixes are directories
        (("web",), ("web",)),
        (("README.md",), ("other",)),
        ((), ("other",)),
    ],
)
def test_teams_for(files: tuple[str, ...], teams: tuple[str, ...]) -> None:
    assert teams_for(files, TEAMS) == teams


# --- reverts ----------------------------------------------------------------------------------


def revert_of(target: RawCommit, n: int) -> RawCommit:
    return commit(f'Revert "{target.subject}"\n\nThis reverts commit {target.sha}.\n', n=n)


def test_revert_pair_in_range_cancels() -> None:
    t = commit("feat!: risky", n=1)
    keep = commit("fix: keep me", n=2)
    r = revert_of(t, 3)
    log = build_changelog([r, keep, t], (), r"[A-Z]+-\d+")
    assert [e.sha for e in log.entries] == [keep.sha]
    assert set(log.cancelled_reverts) == {t.sha, r.sha}


def test_revert_of_commit_outside_range_stays_as_revert() -> None:
    outside = sha(999)
    r = commit(f'Revert "feat: old"\n\nThis reverts commit {outside}.\n', n=4)
    log = build_changelog([r], (), r"[A-Z]+-\d+")
    assert [(e.sha, e.type, e.section) for e in log.entries] == [(r.sha, "revert", Section.REVERTS)]


def test_reapply_chain_keeps_original() -> None:
    t = commit("feat: x", n=1)
    r1 = revert_of(t, 2)
    r2 = revert_of(r1, 3)  # "Revert "Revert ..."": reapplies t
    kept, dropped = effective_commits([r2, r1, t])
    assert [c.sha for c in kept] == [t.sha]
    assert set(dropped) == {r1.sha, r2.sha}


def test_merges_are_counted_not_listed() -> None:
    merge = commit("Merge pull request #12 from a/b", n=5, parents=(sha(1), sha(2)), files=())
    feat = commit("feat: y (#12)", n=6)
    log = build_changelog([merge, feat], (), r"[A-Z]+-\d+")
    assert [e.sha for e in log.entries] == [feat.sha]
    assert log.merge_count == 1
    assert log.entries[0].pr == 12


# --- grouping and rendering -------------------------------------------------------------------


def sample_changelog() -> Changelog:
    commits = [
        commit(
            "feat(pay)!: drop v1 refunds (#45)\n\nCloses PAY-7",
            n=0xA1,
            files=("services/pay/r.py",),
        ),
        commit("fix(web): button PAY-8 WEB-2", n=0xA2, files=("web/b.ts", "services/pay/c.py")),
        commit("chore: bump deps", n=0xA3, files=("requirements.txt",)),
        commit(
            "Quick hack\n\nCo-authored-by: Grace Hopper <grace@example.com>",
            n=0xA4,
            files=("web/x.ts",),
            author="Alan Turing",
        ),
        commit("perf: cache", n=0xA5, files=("web/y.ts",)),
        commit("docs: readme", n=0xA6, files=("web/README.md",)),
    ]
    return build_changelog(commits, TEAMS, r"[A-Z][A-Z0-9]+-\d+")


def test_grouping_by_team_and_section() -> None:
    log = sample_changelog()
    assert list(log.by_team) == ["payments", "web", "other"]
    shape = {
        team: [(s.value, [e.short_sha for e in es]) for s, es in sections]
        for team, sections in log.by_team.items()
    }
    assert shape == {
        "payments": [
            ("Breaking changes", [sha(0xA1)[:7]]),
            ("Fixes", [sha(0xA2)[:7]]),
        ],
        "web": [
            ("Fixes", [sha(0xA2)[:7]]),
            ("Performance", [sha(0xA5)[:7]]),
            ("Other", [sha(0xA4)[:7], sha(0xA6)[:7]]),
        ],
        "other": [("Other", [sha(0xA3)[:7]])],
    }
    assert log.non_conventional_count == 1


def test_markdown_lines() -> None:
    md = to_markdown(
        sample_changelog(), title="1.5.0", issue_url_template="https://jira.example/browse/{key}"
    )
    lines = md.splitlines()
    assert lines[0] == "# 1.5.0"
    a1, a2, a4 = sha(0xA1)[:7], sha(0xA2)[:7], sha(0xA4)[:7]
    assert (
        f"- **pay:** drop v1 refunds (`{a1}`, #45, [PAY-7](https://jira.example/browse/PAY-7))"
        " — Ada Lovelace"
    ) in lines
    assert (
        f"- **web:** button PAY-8 WEB-2 (`{a2}`, [PAY-8](https://jira.example/browse/PAY-8), "
        "[WEB-2](https://jira.example/browse/WEB-2)) — Ada Lovelace"
    ) in lines
    assert f"- Quick hack (`{a4}`) — Alan Turing, Grace Hopper <grace@example.com>" in lines
    # headings in order: team, then its sections, breaking first
    headings = [ln for ln in lines if ln.startswith("#")]
    assert headings == [
        "# 1.5.0",
        "## payments",
        "### Breaking changes",
        "### Fixes",
        "## web",
        "### Fixes",
        "### Performance",
        "### Other",
        "## other",
        "### Other",
    ]
    assert lines[-1] == "_1 commit without a conventional-commit type._"


def test_markdown_without_template_and_empty() -> None:
    md = to_markdown(sample_changelog(), title="x", issue_url_template=None)
    assert "[PAY-7]" not in md and "PAY-7" in md
    empty = to_markdown(build_changelog([], TEAMS, r"[A-Z]+-\d+"), title="1.0.0")
    assert empty == "# 1.0.0\n\n_No changes._\n"


def test_json_round_trips_through_json_module() -> None:
    data = to_json(sample_changelog())
    again = json.loads(json.dumps(data))
    assert again == data
    first = data["entries"][0]
    assert first["section"] == "Breaking changes"
    assert first["issues"] == ["PAY-7"]
    assert first["pr"] == 45
    assert data["by_team"]["payments"][0] == {"section": "Breaking changes", "shas": [sha(0xA1)]}


# --- fix on main ------------------------------------------------------------------------------


def test_fix_on_main() -> None:
    main_sha = sha(0xB0)
    by_trailer = commit(f"fix: a\n\n(cherry picked from commit {main_sha})\n", n=0xB1)
    by_patch = commit("fix: b", n=0xB2)
    missing = commit("fix: c", n=0xB3)
    same = commit("fix: d", n=0xB4)
    result = fix_on_main(
        [by_trailer, by_patch, missing, same],
        main_shas={main_sha, same.sha},
        fix_patch_ids={by_patch.sha: "p-b", missing.sha: "p-c"},
        main_patch_ids={"p-b", "p-z"},
    )
    assert result == {
        by_trailer.sha: FixPresence.BY_TRAILER,
        by_patch.sha: FixPresence.BY_PATCH_ID,
        missing.sha: FixPresence.MISSING,
        same.sha: FixPresence.SAME_COMMIT,
    }
    assert FixPresence.BY_TRAILER.value == "by trailer"
