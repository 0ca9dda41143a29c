"""Commit parsing, issue keys, revert cancelling, team grouping and rendering of changelogs."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relapp.domain.changelog import (
    Changelog,
    ChangelogBuilder,
    Section,
    Team,
    build_changelog,
    pr_url,
    teams_for,
    to_json,
    to_markdown,
)
from relapp.domain.commits import (
    FixPresence,
    effective_commits,
    fix_on_main,
    issue_keys,
    merged_in,
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


def accounted(log: Changelog) -> list[str]:
    """Every sha the changelog names, once per place it is named."""
    return [
        *(e.sha for e in log.entries),
        *(m.sha for m in log.merges),
        *(c.sha for c in log.cancelled),
    ]


def test_revert_pair_in_range_cancels() -> None:
    t = commit("feat!: risky", n=1)
    keep = commit("fix: keep me", n=2)
    r = revert_of(t, 3)
    log = build_changelog([r, keep, t], (), r"[A-Z]+-\d+")
    assert [e.sha for e in log.entries] == [keep.sha]
    assert log.cancelled_reverts == (r.sha, t.sha)  # the range's order
    assert log.commit_count == 3 and sorted(accounted(log)) == sorted([r.sha, keep.sha, t.sha])
    cancelled_t, cancelled_r = log.cancelled[1], log.cancelled[0]
    assert (cancelled_t.subject, cancelled_t.short_sha) == ("feat!: risky", t.sha[:7])
    assert cancelled_t.reverted_by == (r.sha,) and cancelled_t.reverts is None
    assert cancelled_r.reverts == t.sha and cancelled_r.reverted_by == ()
    assert cancelled_r.subject == 'Revert "feat!: risky"'
    [pair] = log.revert_pairs
    assert (pair.reverted, pair.revert, pair.brought_in) == (cancelled_t, cancelled_r, ())


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
    log = build_changelog([r2, r1, t], (), r"[A-Z]+-\d+")
    assert [e.sha for e in log.entries] == [t.sha]
    [pair] = log.revert_pairs  # the revert and its revert; t is an entry, not cancelled
    assert (pair.reverted.sha, pair.revert and pair.revert.sha) == (r1.sha, r2.sha)
    assert pair.reverted.reverts == t.sha  # t is in the range, though not cancelled


def test_a_chain_of_four_reverts_is_shown_as_two_pairs() -> None:
    t = commit("feat: x", n=1)
    r1 = revert_of(t, 2)
    r2 = revert_of(r1, 3)
    r3 = revert_of(r2, 4)
    log = build_changelog([r3, r2, r1, t], (), r"[A-Z]+-\d+")
    assert log.entries == () and log.commit_count == 4 and len(log.cancelled) == 4
    assert [(p.reverted.sha, p.revert and p.revert.sha) for p in log.revert_pairs] == [
        (r2.sha, r3.sha),
        (t.sha, r1.sha),
    ]


def test_a_second_revert_of_one_commit_is_shown_on_its_own() -> None:
    t = commit("feat: x", n=1)
    first, second = revert_of(t, 2), revert_of(t, 3)
    log = build_changelog([second, first, t], (), r"[A-Z]+-\d+")
    assert log.entries == () and len(log.cancelled) == 3
    assert [(p.reverted.sha, p.revert and p.revert.sha) for p in log.revert_pairs] == [
        (second.sha, None),
        (t.sha, first.sha),
    ]
    md = to_markdown(log, title="1.0.0")
    assert f'- Revert "feat: x" (`{second.sha[:7]}`), which reverts `{t.sha[:7]}`' in md


def test_merges_are_listed_apart_from_entries() -> None:
    merge = commit("Merge pull request #12 from a/b", n=5, parents=(sha(1), sha(2)), files=())
    feat = commit("feat: y (#12)", n=6)
    log = build_changelog([merge, feat], (), r"[A-Z]+-\d+")
    assert [e.sha for e in log.entries] == [feat.sha]
    assert log.merge_count == 1
    [m] = log.merges
    assert (m.sha, m.short_sha, m.subject, m.pr) == (
        merge.sha,
        merge.sha[:7],
        "Merge pull request #12 from a/b",
        12,
    )
    assert log.entries[0].pr == 12
    assert log.commit_count == 2


def topic_history() -> dict[str, RawCommit]:
    """Oldest first: b on main, a topic (t1, t2, and t3 that merges b back in), c on main, the
    topic merged (m), unrelated d, the merge reverted with `git revert -m 1` (r)."""
    outside = sha(0xF00)
    b = commit("feat: b", n=0xC1, parents=(outside,))
    t1 = commit("feat(topic): one", n=0xC2, parents=(b.sha,))
    t2 = commit("fix(topic): two", n=0xC3, parents=(t1.sha,))
    c = commit("fix: c", n=0xC4, parents=(b.sha,))
    t3 = commit("Merge branch 'main' into topic", n=0xC5, parents=(t2.sha, b.sha), files=())
    m = commit("Merge branch 'topic'", n=0xC6, parents=(c.sha, t3.sha), files=())
    d = commit("docs: d", n=0xC7, parents=(m.sha,))
    r = commit(
        f"Revert \"Merge branch 'topic'\"\n\nThis reverts commit {m.sha}, reversing\n"
        f"changes made to {c.sha}.\n",
        n=0xC8,
        parents=(d.sha,),
    )
    return {"b": b, "t1": t1, "t2": t2, "c": c, "t3": t3, "m": m, "d": d, "r": r}


def test_merged_in_walks_only_what_the_merge_brought() -> None:
    h = topic_history()
    graph = {x.sha: x.parents for x in h.values()}
    assert merged_in(h["m"].sha, graph) == {h["t1"].sha, h["t2"].sha, h["t3"].sha}
    assert merged_in(h["t3"].sha, graph) == set()  # b is already on the topic's first parent
    assert merged_in(h["d"].sha, graph) == set()  # not a merge


def test_a_merge_reverted_with_m1_takes_back_what_it_brought_in() -> None:
    h = topic_history()
    log = build_changelog(list(reversed(h.values())), (), r"[A-Z]+-\d+")
    assert [e.sha for e in log.entries] == [h["d"].sha, h["c"].sha, h["b"].sha]
    assert log.merges == ()  # t3 came in with m: cancelled with it
    assert log.commit_count == 8 and sorted(accounted(log)) == sorted(x.sha for x in h.values())
    by_sha = {c.sha: c for c in log.cancelled}
    assert by_sha[h["m"].sha].merge and by_sha[h["m"].sha].reverted_by == (h["r"].sha,)
    assert by_sha[h["r"].sha].reverts == h["m"].sha and by_sha[h["r"].sha].merged_by is None
    for name in ("t1", "t2", "t3"):
        assert by_sha[h[name].sha].merged_by == h["m"].sha
        assert by_sha[h[name].sha].reverted_by == ()
    [pair] = log.revert_pairs
    assert (pair.reverted.sha, pair.revert and pair.revert.sha) == (h["m"].sha, h["r"].sha)
    assert [c.sha for c in pair.brought_in] == [h["t3"].sha, h["t2"].sha, h["t1"].sha]
    md = to_markdown(log, title="2.0.0")
    assert "_8 commits: 3 entries, 0 merges, 5 cancelled._" in md
    assert (
        f"- Merge branch 'topic' (`{h['m'].sha[:7]}`) reverted by Revert \"Merge branch 'topic'\""
        f" (`{h['r'].sha[:7]}`), with the 3 commits the merge brought in:"
    ) in md
    assert f"  - feat(topic): one (`{h['t1'].sha[:7]}`)" in md


def test_a_reverted_merge_whose_revert_is_reverted_keeps_its_topic() -> None:
    h = topic_history()
    again = revert_of(h["r"], 0xC9)
    log = build_changelog([again, *reversed(h.values())], (), r"[A-Z]+-\d+")
    assert {e.sha for e in log.entries} >= {h["t1"].sha, h["t2"].sha}
    assert [m.sha for m in log.merges] == [h["m"].sha, h["t3"].sha]
    assert set(log.cancelled_reverts) == {h["r"].sha, again.sha}
    assert len(accounted(log)) == log.commit_count == 9


def test_a_merge_reverted_from_outside_the_range_is_an_entry() -> None:
    h = topic_history()
    log = build_changelog([h["r"], h["d"]], (), r"[A-Z]+-\d+")
    assert [(e.sha, e.section) for e in log.entries] == [
        (h["r"].sha, Section.REVERTS),
        (h["d"].sha, Section.OTHER),
    ]
    assert log.cancelled == ()


# A random history, oldest first: each commit has one or two parents among the commits before
# it (or outside the range), and may revert any commit of the range or one outside it.
_histories = st.lists(
    st.tuples(
        st.lists(st.integers(min_value=-1, max_value=30), min_size=1, max_size=2, unique=True),
        st.none() | st.integers(min_value=-1, max_value=30),
        st.sampled_from(["feat: a", "fix: b", "chore: c", "Merge branch 'x'", "plain"]),
    ),
    max_size=24,
)


@settings(max_examples=300)
@given(_histories)
def test_every_commit_is_an_entry_a_merge_or_cancelled_exactly_once(
    specs: list[tuple[list[int], int | None, str]],
) -> None:
    commits: list[RawCommit] = []
    for i, (parents, target, message) in enumerate(specs):
        # -1, or an index not before this commit, is a commit outside the range.
        named = [sha(p) if 0 <= p < i else sha(0xFFF0 + p) for p in parents]
        if target is not None:
            goal = sha(target) if 0 <= target < i else sha(0xFFF0 + target)
            message = f'Revert "{message}"\n\nThis reverts commit {goal}.\n'
        commits.append(commit(message, n=i, parents=tuple(named)))
    newest_first = list(reversed(commits))
    builder = ChangelogBuilder(())
    for c in newest_first:
        builder.add(c)
    log = builder.build()
    assert log == build_changelog(newest_first, ())
    assert log.commit_count == len(commits)
    assert sorted(accounted(log)) == sorted(c.sha for c in commits)
    shown = [p.reverted for p in log.revert_pairs]
    shown += [p.revert for p in log.revert_pairs if p.revert is not None]
    shown += [c for p in log.revert_pairs for c in p.brought_in]
    assert sorted(c.sha for c in shown) == sorted(log.cancelled_reverts)


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
    # Commit text is escaped, so an address does not turn into an HTML tag or an autolink.
    assert f"- Quick hack (`{a4}`) — Alan Turing, Grace Hopper \\<grace@example.com\\>" in lines
    assert lines[2] == "_6 commits: 6 entries, 0 merges, 0 cancelled._"
    # headings in order: team, then its sections, breaking first
    headings = [ln for ln in lines if ln.startswith("#")]
    assert "## Merges" not in lines and "## Cancelled (reverted within this release)" not in lines
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
    merge_only = build_changelog([commit("Merge x", parents=(sha(1), sha(2)))], TEAMS)
    assert to_markdown(merge_only, title="1.0.0").startswith(
        "# 1.0.0\n\n_1 commit: 0 entries, 1 merge, 0 cancelled._\n"
    )


def test_json_round_trips_through_json_module() -> None:
    data = to_json(sample_changelog())
    again = json.loads(json.dumps(data))
    assert again == data
    first = data["entries"][0]
    assert first["section"] == "Breaking changes"
    assert first["issues"] == ["PAY-7"]
    assert first["pr"] == 45
    assert "pr_url" not in first  # no template: no link
    assert data["by_team"]["payments"][0] == {"section": "Breaking changes", "shas": [sha(0xA1)]}
    assert (data["commit_count"], data["merges"], data["cancelled"]) == (6, [], [])


def pr_history() -> list[RawCommit]:
    t = commit("feat: x (#7)", n=0xD1)
    return [
        commit("Merge pull request #12 from org/topic_*x*", n=0xD4, parents=(sha(1), sha(2))),
        revert_of(t, 0xD3),
        commit("fix: <b>bold</b> & __init__ [link](javascript:x) (#8)", n=0xD2),
        t,
    ]


def test_markdown_lists_merges_and_cancelled_with_pr_links_and_escapes_commit_text() -> None:
    log = build_changelog(pr_history(), (), r"[A-Z]+-\d+")
    template = "https://code.example/org/repo/pull/{pr}?x={y}"  # other braces stay as they are
    md = to_markdown(log, title="1.1.0", pr_url_template=template)
    lines = md.splitlines()
    assert lines[2] == "_4 commits: 1 entry, 1 merge, 2 cancelled._"
    d2, d3, d4 = sha(0xD2)[:7], sha(0xD3)[:7], sha(0xD1)[:7]
    assert (
        f"- \\<b\\>bold\\</b\\> \\& \\_\\_init\\_\\_ \\[link\\](javascript:x) "
        f"(`{d2}`, [#8](https://code.example/org/repo/pull/8?x={{y}})) — Ada Lovelace"
    ) in lines
    merges = lines[lines.index("## Merges") + 2 :]
    assert merges[0] == (
        f"- Merge pull request #12 from org/topic\\_\\*x\\* (`{sha(0xD4)[:7]}`, "
        "[#12](https://code.example/org/repo/pull/12?x={y}))"
    )
    cancelled = lines[lines.index("## Cancelled (reverted within this release)") + 2 :]
    assert cancelled[0] == f'- feat: x (#7) (`{d4}`) reverted by Revert "feat: x (#7)" (`{d3}`)'
    # Without a usable template PR numbers stay text.
    for bad in (None, "", "javascript:alert({pr})", "https://code.example/pulls"):
        plain = to_markdown(log, title="1.1.0", pr_url_template=bad)
        assert f"(`{d2}`, #8)" in plain and "](http" not in plain


def test_json_carries_every_commit_and_pr_urls_when_configured() -> None:
    log = build_changelog(pr_history(), (), r"[A-Z]+-\d+")
    data = to_json(log, pr_url_template="https://code.example/pull/{pr}")
    assert json.loads(json.dumps(data)) == data
    assert data["commit_count"] == 4 and data["merge_count"] == 1
    assert [e["pr_url"] for e in data["entries"]] == ["https://code.example/pull/8"]
    assert data["merges"] == [
        {
            "sha": sha(0xD4),
            "short_sha": sha(0xD4)[:7],
            "subject": "Merge pull request #12 from org/topic_*x*",
            "pr": 12,
            "author": "Ada Lovelace",
            "pr_url": "https://code.example/pull/12",
        }
    ]
    assert [(c["sha"], c["reverts"], c["reverted_by"]) for c in data["cancelled"]] == [
        (sha(0xD3), sha(0xD1), []),
        (sha(0xD1), None, [sha(0xD3)]),
    ]
    assert data["cancelled_reverts"] == [sha(0xD3), sha(0xD1)]
    no_pr = to_json(build_changelog([commit("fix: z")], ()), pr_url_template="https://c/{pr}")
    assert no_pr["entries"][0]["pr_url"] is None


@pytest.mark.parametrize(
    ("template", "url"),
    [
        ("https://code.example/o/r/pull/{pr}", "https://code.example/o/r/pull/42"),
        ("http://git.local/{pr}/{pr}", "http://git.local/42/42"),
        ("https://code.example/{key}/{0}/{pr}", "https://code.example/{key}/{0}/42"),
        ("https://code.example/pulls", None),  # no {pr}
        ("javascript:alert({pr})", None),  # not http(s)
        ("", None),
        (None, None),
    ],
)
def test_pr_url(template: str | None, url: str | None) -> None:
    assert pr_url(template, 42) == url
    assert pr_url(template, None) is None


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


# --- hostile commit text through the real Markdown export ------------------------------------

HOSTILE = ("fix(payments): <script>alert(1)</script> [x](javascript:alert(1)) "
           "[y](data:text/html;base64,PHNjcmlwdD4=) [z](vbscript:msgbox(1)) <javascript:alert(2)> PAY-7 (#77)")


def test_the_markdown_export_keeps_html_and_script_links_from_commit_text_as_text(app, demo_project):
    from relapp.extensions import db
    from relapp.models import Project
    from tests.conftest import signed_in, work_queue

    demo_project.commit_on_main("services/payments/x.txt", "x\n", HOSTILE + "\n\n<img src=x onerror=alert(1)>")
    project = db.session.query(Project).filter_by(key="demo").one()
    project.issue_url_template = "javascript:alert('{key}')"  # not http(s): issue keys stay text
    project.pr_url_template = "https://code.example/pull/{pr}"
    db.session.commit()
    client = app.test_client()
    cut = client.post("/api/v1/projects/demo/releases", json={}, headers=demo_project.headers("erin"))
    assert cut.status_code == 202, cut.get_json()
    work_queue()
    version = cut.get_json()["version"]
    api = client.get(f"/api/v1/projects/demo/releases/{version}/changelog?format=markdown",
                     headers=demo_project.headers("vic"))
    assert api.status_code == 200 and api.mimetype == "text/markdown"
    markdown = api.get_data(as_text=True)
    assert signed_in(app, "vic").get(f"/releases/demo/{version}/changelog.md").get_data(as_text=True) == markdown

    line = next(x for x in markdown.splitlines() if "alert(1)" in x)
    # The text is all there, shown as written …
    assert ("\\<script\\>alert(1)\\</script\\> \\[x\\](javascript:alert(1)) "
            "\\[y\\](data:text/html;base64,PHNjcmlwdD4=) \\[z\\](vbscript:msgbox(1)) "
            "\\<javascript:alert(2)\\> PAY-7 (`") in line
    # … but no HTML tag, autolink or entity starts anywhere (every < and & is escaped) …
    assert re.search(r"(?<!\\)[<&]", markdown) is None, markdown
    # … and the only links are http(s) ones.
    destinations = re.findall(r"(?<!\\)\]\(([^)]*)\)", markdown)
    assert "https://code.example/pull/77" in destinations
    assert all(d.startswith(("https://", "http://")) for d in destinations), destinations
    assert "javascript:alert('PAY-7')" not in markdown and "onerror" not in markdown
