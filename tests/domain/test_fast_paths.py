"""The engine's fast paths give exactly what the straightforward code they replace gives.

Each fast path (precedence keys instead of semver comparisons, literal-text prefilters before
regexes, one-pass grouping) is checked against an independent reference: semver itself, or a
plain implementation written here from the formats' descriptions (its own regexes, every one
run on every message, a recursive reading of the revert rule). Nothing here imports the code's
private helpers, so a bug in them cannot hide in the oracle too.
"""

from __future__ import annotations

import dataclasses
import re
from typing import NamedTuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from semver import Version

from relapp.domain.changelog import (
    Changelog,
    ChangelogBuilder,
    ChangelogEntry,
    Team,
    build_changelog,
)
from relapp.domain.commits import (
    DEFAULT_ISSUE_PATTERN,
    effective_commits,
    parse_fields,
    parse_message,
)
from relapp.domain.gitdata import RawCommit, TagRef, fast_frozen_init
from relapp.domain.versioning import (
    TagRules,
    TagStatus,
    classify,
    format_tag,
    inventory,
    next_main_version,
    precedence,
    version_key,
)

from .strategies import (
    GLUED_PRE,
    alnum_ids,
    build_parts,
    dotted,
    numeric_ids,
    pre_releases,
    semvers,
)

# --------------------------------------------------------------------------- versions

small = st.integers(min_value=0, max_value=4)
numeric_id = numeric_ids(12)
padded_id = st.from_regex(r"0[0-9]{1,3}", fullmatch=True)  # leading zeros: Version allows them
long_id = st.from_regex(r"[1-9][0-9]{25,40}", fullmatch=True)  # beyond 64-bit integers
alnum_id = alnum_ids(6)
any_id = numeric_id | padded_id | long_id | alnum_id
pre = st.none() | st.just("") | dotted(any_id, 4)
build = build_parts(12, 6)
loose_versions = semvers(4, pre, build)


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


@given(loose_versions, loose_versions)
@example(Version(1, 0, 0, "rc.10"), Version(1, 0, 0, "rc.9"))  # numbers by value, not by text
@example(Version(1, 0, 0, "rc.010"), Version(1, 0, 0, "rc.9"))
@example(Version(1, 0, 0, "rc.1"), Version(1, 0, 0, "rc.a"))  # numbers below words
@example(Version(1, 0, 0, "rc"), Version(1, 0, 0))  # a pre-release below its release
def test_precedence_orders_exactly_like_semver_compare(a: Version, b: Version) -> None:
    ka, kb = precedence(a), precedence(b)
    assert _sign(a.compare(b)) == (ka > kb) - (ka < kb)


@given(st.lists(loose_versions, max_size=12))
def test_sorting_by_precedence_is_sorting_by_semver(vs: list[Version]) -> None:
    by_key = sorted(vs, key=precedence)
    by_semver = sorted(vs)
    assert all(x.compare(y) == 0 for x, y in zip(by_key, by_semver, strict=True))


# Tag names in the spellings relapp meets: template, legacy, and names no rule reads.
_name_kinds = st.sampled_from(
    ["v{M}.{m}.{p}", "v{M}.{m}.{p}-rc.{n}", "{M}.{m}.{p}", "release-{M}.{m}.{p}",
     "rel_{M}_{m}_{p}", "V{M}.{m}.{p}", "v{M}.{m}", "{M}.{m}.{p}rc{n}", "v{M}.{m}.{p}+b{n}",
     "v{M}.{m}.{p}-beta.{n}", "v{M}.{m}.{p}-rc{n}", "nightly-{n}", "v0{M}.{m}.{p}"]
)  # fmt: skip


@st.composite
def tag_sets(draw: st.DrawFn) -> list[TagRef]:
    specs = draw(
        st.lists(
            st.tuples(_name_kinds, small, small, small, small, st.sampled_from("abc")),
            max_size=25,
        )
    )
    tags: dict[str, TagRef] = {}
    for kind, major, minor, patch, n, commit in specs:
        name = kind.format(M=major, m=minor, p=patch, n=n)
        tags.setdefault(name, TagRef(name, commit * 40, True, 0))
    return list(tags.values())


RULES = TagRules()


@settings(max_examples=200)
@given(tag_sets())
def test_inventory_versions_and_conflicts_match_the_semver_reference(tags: list[TagRef]) -> None:
    inv = inventory(tags, RULES)
    recognised = [t for t in inv.classified if t.status in (TagStatus.CANONICAL, TagStatus.LEGACY)]
    # The reference is the original code: a set of version keys sorted with semver's __lt__.
    keys = sorted({version_key(t.version) for t in recognised if t.version is not None})
    assert [str(v) for v in inv.versions()] == [str(v) for v in keys]
    names = [t.name for t in tags[::2]]
    ref_of = sorted({version_key(v) for v in (inv.version_of(n) for n in names) if v is not None})
    assert [str(v) for v in inv.versions_of(names)] == [str(v) for v in ref_of]

    groups: dict[Version, list[str]] = {}
    for t in recognised:
        assert t.version is not None
        groups.setdefault(version_key(t.version), []).append(t.name)
    shas = {t.name: t.tag.sha for t in recognised}
    ref_conflicts = [
        (str(v), names) for v, names in sorted(groups.items()) if len({shas[n] for n in names}) > 1
    ]
    assert [(str(c.version), [t.name for t in c.tags]) for c in inv.conflicts] == ref_conflicts
    for v in keys:
        expect = [t.name for t in recognised if version_key(t.version) == v]  # type: ignore[arg-type]
        assert [t.name for t in inv.tags_for(v)] == expect


@given(semvers(4, pre_releases(12, 6), build))
def test_canonical_tags_read_like_version_parse(v: Version) -> None:
    name = format_tag(v, RULES)
    got = classify(TagRef(name, "a" * 40, True, 0), RULES)
    if v.prerelease and GLUED_PRE.fullmatch(v.prerelease):
        assert got.status is TagStatus.LEGACY  # `rc1` is read as `rc.1` (see _match)
        return
    assert got.status is TagStatus.CANONICAL
    assert got.version is not None
    assert got.version.to_tuple() == Version.parse(str(v)).to_tuple()


def test_non_ascii_digits_keep_semvers_verdict() -> None:
    # `\d` matches Arabic-Indic digits, semver does not: the fast path must not accept them.
    name = "v1\u0661.2.3"
    try:
        status = classify(TagRef(name, "a" * 40, True, 0), RULES).status
    except ValueError:
        return  # semver rejects the text, as it did before the fast path
    assert status is not TagStatus.CANONICAL


def _commit(sha: str, message: str = "fix: x") -> RawCommit:
    return RawCommit(sha, ("0" * 40,), "Ada", "ada@example.com", 0, message)


@given(
    st.lists(st.tuples(small, small, small), min_size=1, max_size=10),
    st.lists(st.tuples(small, small, small, pre), max_size=10),
)
def test_next_main_version_previous_and_higher_match_semver(
    reach: list[tuple[int, int, int]], others: list[tuple[int, int, int, str | None]]
) -> None:
    reachable = [Version(*t) for t in reach]
    existing = reachable + [Version(a, b, c, p) for a, b, c, p in others]
    nxt = next_main_version(
        reachable=reachable,
        existing=existing,
        commits=[_commit("a" * 40)],
        baseline=Version(0, 1, 0),
    )
    assert nxt.previous is not None and nxt.previous.compare(max(reachable)) == 0
    higher = [v for v in existing if not v.prerelease and v > nxt.version]
    note = [n for n in nxt.notes if n.startswith("Higher versions")]
    assert bool(note) == bool(higher)
    if higher:
        assert f"(highest {max(higher)})" in note[0]


# --------------------------------------------------------------------------- messages


# The formats, written here from their descriptions rather than imported from the code.
REF_HEADER = re.compile(r"(\w+)(?:\(([^()\r\n]*)\))?(!)?: (.+)")  # type(scope)!: description
REF_TRAILER = re.compile(r"(BREAKING CHANGE|[A-Za-z0-9][A-Za-z0-9-]*):\s?(.*)")  # Key: value
REF_CHERRY = re.compile(r"^\(cherry picked from commit ([0-9a-fA-F]{40})\)\s*$", re.MULTILINE)
REF_REVERTS = re.compile(r"^This reverts commit ([0-9a-fA-F]{40})\b", re.MULTILINE)
REF_PR_SUFFIX = re.compile(r"\((?:pull request )?[#!](\d+)\)\s*$")  # (#12) (!12) (pull request #12)
REF_PR_MERGE = re.compile(r"Merge pull request #(\d+) from ")
REF_MR_SEE = re.compile(r"^See merge request \S*!(\d+)\s*$", re.MULTILINE)


def _reference_paragraphs(text: str) -> list[list[str]]:
    """The message's lines, grouped into paragraphs at lines holding only spaces and tabs."""
    paragraphs: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip(" \t") == "":
            paragraphs.append([])
        else:
            paragraphs[-1].append(line)
    return [p for p in paragraphs if "".join(p).strip()]


def _reference_trailers(message: str) -> tuple[tuple[str, str], ...]:
    """git's rule: the last paragraph (never the subject's) is trailers when every line is one."""
    paragraphs = _reference_paragraphs(message)
    if len(paragraphs) < 2:
        return ()
    trailers: list[list[str]] = []
    for line in "\n".join(paragraphs[-1]).splitlines():
        if not line.strip():
            continue
        if line[0] in " \t" and trailers:  # a folded value goes on
            trailers[-1][1] += " " + line.strip()
        elif REF_CHERRY.match(line):  # git's `-x` line sits among the trailers
            continue
        elif m := REF_TRAILER.fullmatch(line):
            trailers.append([m[1], m[2].strip()])
        else:
            return ()  # prose: body text, not trailers
    return tuple((k, v) for k, v in trailers)


class RefParsed(NamedTuple):
    """ParsedMessage's fields, in its order, so the two compare as tuples."""

    type: str | None
    scope: str | None
    breaking: bool
    description: str
    trailers: tuple[tuple[str, str], ...]
    pr: int | None
    co_authors: tuple[str, ...]
    cherry_picked_from: str | None
    reverts: str | None


def _reference_parse(message: str) -> RefParsed:
    """parse_message's fields the slow, plain way: every regex on every message, in order."""
    message = message.replace("\r\n", "\n")
    subject = message.split("\n")[0].strip()
    trailers = _reference_trailers(message)
    ctype = scope = None
    bang = False
    description = subject
    if m := REF_HEADER.fullmatch(subject):
        ctype, scope, bang, description = m[1].lower(), m[2], m[3] == "!", m[4].strip()
        scope = scope.strip() or None if scope is not None else None
    if m := REF_PR_SUFFIX.search(description):
        description = description[: m.start()].strip() or description
    breaking = bang or any(k.upper() in ("BREAKING CHANGE", "BREAKING-CHANGE") for k, _ in trailers)
    co_authors = tuple(v for k, v in trailers if k.lower() == "co-authored-by" and v)
    picked = REF_CHERRY.search(message)
    reverts = None
    is_revert = subject.lower().startswith("revert") or ctype == "revert"
    if is_revert and (r := REF_REVERTS.search(message)):
        reverts = r[1].lower()
    pr = None
    for found in (
        REF_PR_MERGE.match(subject),
        REF_PR_SUFFIX.search(subject),
        REF_MR_SEE.search(message),
    ):
        if found is not None:
            pr = int(found[1])
            break
    cherry = picked[1].lower() if picked else None
    return RefParsed(ctype, scope, breaking, description, trailers, pr, co_authors, cherry, reverts)


SHA = "0123456789abcdef0123456789abcdef01234567"
_pieces = st.sampled_from(
    [
        "feat", "fix", "Revert", "revert", "revert: ", "feat(api)", "(ui)", "( x )", "!", ": ",
        ":", " ", "  ", "\t", "\u00a0", "\u2003", "\n", "\n\n", "\n \n", "\r\n", "\r", "(",
        ")", "(#12)", " (#7)", "(!3)", "(pull request #45)", "(pull request #9) ", "#", "!8)",
        "(#1)(#2)", "x (y) (#3)", "Merge pull request #5 from org/x", "Merge pull request #",
        "See merge request grp/proj!21", "See merge request ", f"This reverts commit {SHA}.",
        "This reverts commit ", f"(cherry picked from commit {SHA})", "(cherry picked from commit ",
        "Refs: ABC-1", "Co-authored-by: Bo <bo@x>", "co-authored-by:", "BREAKING CHANGE: y",
        "BREAKING-CHANGE: z", "Signed-off-by: A", "  folded", "prose line", "word", "ü", "☃",
        "breaking-change: q", "Breaking Change: r", "CO-AUTHORED-BY: Cy <c@x>", "Co-authored-by:",
        "Co-authored-bz: D", "BREAKING-CHANGES: n", "AB-12", "-", "X1-", "ABC-", "ab-1", "ÄB-1",
        # Line breaks that str.splitlines() knows and `\n`-lines do not, and PR suffix shapes.
        "\x0b", "\x0c", "\x1c", "\x1e", "\x85", "\u2028", "\n\t\n", "(pull request 8)", "(#\u0661)",
        "(!", "(#", "\u0662)", "Key:  v  ",
    ]
)  # fmt: skip
messages = st.lists(_pieces | st.text(max_size=4), max_size=14).map("".join)


@settings(max_examples=1500)
@given(messages)
@example("feat: x\r\n\r\nRefs: ABC-1\r\nCo-authored-by: Bo <bo@x>\r\n")
@example(f'Revert "feat: x"\r\n\r\nThis reverts commit {SHA}.\r\n')
@example("fix: y \u2003(pull request #4)\u00a0")
@example("Merge pull request #5 from org/x (#6)")
@example("x\n\nRefs: ABC-1")
@example("chore: (#1)\n\nSee merge request grp/proj!21\n")
@example("fix: x\n\nRefs: A-1\n \nCo-authored-by: Bo <bo@x>")  # a blank line of spaces last
@example("fix: x\n\nRefs: A-1\x1cCo-authored-by: Bo <bo@x>")  # one more line for splitlines
@example("fix: x\n\nprose\n\t\nCo-authored-by: Bo <bo@x>")  # prose, then the real last one
@example(" \n\nCo-authored-by: Bo <bo@x>")  # no visible subject: one paragraph
@example("fix: y (#\u0661\u0662) (pull request 3)")  # Unicode digits; no # after the words
def test_parse_message_matches_the_reference_parser(message: str) -> None:
    assert dataclasses.astuple(parse_message(message)) == _reference_parse(message)
    # The changelog's reading skips trailers it does not need and differs in nothing else.
    whole, lean = parse_fields(message), parse_fields(message, all_trailers=False)
    assert lean[:4] + lean[5:] == whole[:4] + whole[5:]
    assert lean[4] in ((), whole[4])


@given(messages)
def test_effective_commits_without_cancelling_reverts_keeps_everything(message: str) -> None:
    commits = [_commit("1" * 40, message), _commit("2" * 40, "fix: y"), _commit("1" * 40, message)]
    kept, dropped = effective_commits(commits)
    reverts = _reference_parse(message).reverts
    if reverts not in {"1" * 40, "2" * 40}:
        assert kept == tuple(commits) and dropped == ()


TEAMS = (Team("api", ("services/api",)), Team("web", ("web",)), Team("api", ("lib",)))
REF_SECTIONS = ["Breaking changes", "Features", "Fixes", "Performance", "Reverts", "Other"]
REF_TYPE_SECTION = {"feat": "Features", "fix": "Fixes", "perf": "Performance", "revert": "Reverts"}


def _reference_teams(files: tuple[str, ...]) -> tuple[str, ...]:
    """Each configured team (a name given twice counts twice) owning one of the files, or other."""
    owners = []
    for team in TEAMS:
        for prefix in team.paths:
            if any(f == prefix or f.startswith(prefix + "/") for f in files):
                owners.append(team.name)
                break
    return tuple(owners) or ("other",)


def _reference_section(entry: ChangelogEntry) -> str:
    return "Breaking changes" if entry.breaking else REF_TYPE_SECTION.get(entry.type or "", "Other")


def _reference_by_team(entries: tuple[ChangelogEntry, ...]) -> dict[str, tuple[object, ...]]:
    """Per team in configured order (then other), per section in display order, none empty."""
    grouped = {}
    for team in dict.fromkeys([t.name for t in TEAMS] + ["other"]):
        mine = [e for e in entries if team in e.teams]
        sections = [
            (s, tuple(e for e in mine if _reference_section(e) == s))
            for s in REF_SECTIONS
            if any(_reference_section(e) == s for e in mine)
        ]
        if sections:
            grouped[team] = tuple(sections)
    return grouped


_files = st.lists(
    st.sampled_from(["services/api/a.py", "web/x.ts", "lib/l.py", "docs/d.md", "webx/y"]),
    max_size=3,
).map(tuple)


@settings(max_examples=150)
@given(st.lists(st.tuples(messages, _files, st.booleans()), max_size=12))
@example(
    [
        ("feat(api)!: drop v1 (#4)", ("services/api/a.py", "lib/l.py"), False),
        ("fix: y\n\nBREAKING CHANGE: z", ("web/x.ts",), False),
        ("perf: faster ABC-1 and ABC-1", ("webx/y",), False),
        ("Merge pull request #5 from org/x", (), True),
        ("docs: d", ("docs/d.md",), False),
    ]
)
def test_build_changelog_matches_per_commit_parsing_and_grouping(
    specs: list[tuple[str, tuple[str, ...], bool]],
) -> None:
    commits = [
        RawCommit(
            f"{i:040x}",
            ("a" * 40, "b" * 40) if merge else ("a" * 40,),
            "Ada",
            "ada@x",
            i,
            message,
            () if merge else files,
        )
        for i, (message, files, merge) in enumerate(specs)
    ]
    log = build_changelog(commits, TEAMS)
    reference = _reference_effective_commits(commits)
    assert reference is not None  # these messages never name a commit of the range
    kept, cancelled = reference
    assert effective_commits(commits) == reference
    assert log.cancelled_reverts == cancelled
    singles = [c for c in kept if len(c.parents) <= 1]
    assert log.merge_count == len(kept) - len(singles)
    assert [e.sha for e in log.entries] == [c.sha for c in singles]
    for e, c in zip(log.entries, singles, strict=True):
        p = _reference_parse(c.message)
        assert e.subject == c.message.split("\n")[0].strip()
        assert e.type == ("revert" if p.reverts is not None else p.type)
        assert (e.scope, e.breaking, e.description, e.pr) == (
            p.scope,
            p.breaking,
            p.description,
            p.pr,
        )
        assert (e.co_authors, e.cherry_picked_from) == (p.co_authors, p.cherry_picked_from)
        assert e.teams == _reference_teams(c.files)
        assert e.section == _reference_section(e)
    assert log.by_team == _reference_by_team(log.entries)


def _reference_effective_commits(
    commits: list[RawCommit],
) -> tuple[tuple[RawCommit, ...], tuple[str, ...]] | None:
    """The revert rule read recursively: None when reverts name each other in a cycle.

    A commit is alive unless an alive revert in the range reverts it; a revert pair cancels when
    the revert is alive and its target is in the range. (A cycle never comes from git, and the
    rule gives it no answer, so the reference declines it.)
    """
    last = {c.sha.lower(): c for c in commits}  # a sha given twice: its last message counts
    target = {sha: _reference_parse(c.message).reverts for sha, c in last.items()}
    for start in target:
        seen, cur = set(), start
        while cur in target and target[cur] is not None:
            if cur in seen:
                return None
            seen.add(cur)
            cur = target[cur]  # type: ignore[assignment]

    def alive(sha: str) -> bool:
        return not any(alive(r) for r, t in target.items() if t == sha)

    dropped = {s for s in target if not alive(s) or (target[s] in target and alive(s))}
    kept = tuple(c for c in commits if c.sha.lower() not in dropped)
    return kept, tuple(c.sha for c in commits if c.sha.lower() in dropped)


def _sha(i: int) -> str:
    return f"{i:040x}"


# A history of up to 10 commits where a revert may name any of them (before or after it in the
# stream, itself, or one outside the range), in either case, from a merge or a plain commit.
_revert_specs = st.lists(
    st.tuples(
        st.none() | st.integers(min_value=0, max_value=11),  # revert target index, if any
        st.booleans(),  # upper-case the target sha
        st.booleans(),  # a merge
        messages,
        _files,
    ),
    max_size=10,
)


def _revert_history(
    specs: list[tuple[int | None, bool, bool, str, tuple[str, ...]]],
) -> list[RawCommit]:
    commits = []
    for i, (target, upper, merge, message, files) in enumerate(specs):
        if target is not None:
            named = _sha(target).upper() if upper else _sha(target)
            message = f'Revert "{message[:10]}"\n\nThis reverts commit {named}.\n'
        commits.append(
            RawCommit(
                _sha(i),
                (_sha(98), _sha(99)) if merge else (_sha(98),),
                "Ada",
                "ada@x",
                i,
                message,
                () if merge else files,
            )
        )
    return commits


def _fed(
    commits: list[RawCommit], teams: tuple[Team, ...] = TEAMS
) -> tuple[Changelog, list[Changelog]]:
    """The builder fed one commit at a time, with the changelog built after every commit too."""
    builder = ChangelogBuilder(teams)
    partial = []
    for c in commits:
        builder.add(c)
        partial.append(builder.build())  # build() mid-stream must not change what follows
    return builder.build(), partial


@settings(max_examples=400)
@given(_revert_specs)
@example(
    [(1, False, False, "", ()), (None, False, False, "feat: t", ("web/x.ts",))]
)  # revert first
@example([(None, False, False, "feat: t", ("web/x.ts",)), (0, True, False, "", ())])  # revert after
@example(
    [(None, False, False, "feat: t", ()), (0, False, False, "", ()), (1, False, False, "", ())]
)
@example([(1, False, False, "", ()), (0, False, False, "", ())])  # two reverts of each other
@example([(0, False, False, "", ())])  # a commit naming itself
@example([(None, False, True, "Merge x", ()), (0, False, False, "", ())])  # reverting a merge
@example([(1, False, True, "", ()), (None, False, False, "fix: y", ("lib/l.py",))])  # by a merge
def test_builder_fed_incrementally_equals_build_changelog_with_revert_pairs(
    specs: list[tuple[int | None, bool, bool, str, tuple[str, ...]]],
) -> None:
    commits = _revert_history(specs)
    whole, partial = _fed(commits)
    assert whole == build_changelog(commits, TEAMS)
    for n, log in enumerate(partial, start=1):
        assert log == build_changelog(commits[:n], TEAMS)
    # And both agree with the revert rule read plainly (which gives a cycle, never made by git,
    # no answer: there the builder need only agree with effective_commits).
    reference = _reference_effective_commits(commits)
    kept, cancelled = effective_commits(commits)
    assert reference is None or (kept, cancelled) == reference
    assert whole.cancelled_reverts == cancelled
    singles = [c for c in kept if len(c.parents) <= 1]
    assert [e.sha for e in whole.entries] == [c.sha for c in singles]
    assert whole.merge_count == len(kept) - len(singles)
    assert all(e.teams == _reference_teams(c.files) for e, c in zip(whole.entries, singles))
    assert sum(len(es) for ss in whole.by_team.values() for _, es in ss) >= len(whole.entries)
    assert all(e in whole.entries for ss in whole.by_team.values() for _, es in ss for e in es)


def test_a_cancelled_pair_leaves_no_empty_team_or_section() -> None:
    t = RawCommit(_sha(1), (_sha(9),), "A", "a@x", 0, "feat: t", ("web/x.ts",))
    r = RawCommit(
        _sha(2),
        (_sha(1),),
        "A",
        "a@x",
        0,
        f'Revert "t"\n\nThis reverts commit {_sha(1)}.',
        ("web/x.ts",),
    )
    k = RawCommit(_sha(3), (_sha(2),), "A", "a@x", 0, "fix: k", ("lib/l.py",))
    for order in ([t, r, k], [r, t, k], [k, r, t]):
        log, _ = _fed(order)
        assert log == build_changelog(order, TEAMS)
        assert [e.sha for e in log.entries] == [_sha(3)]
        assert set(log.cancelled_reverts) == {_sha(1), _sha(2)}
        assert list(log.by_team) == ["api"]  # web had only the cancelled pair
        assert log.by_team["api"] == (("Fixes", (log.entries[0],)),)


@settings(max_examples=500)
@given(st.lists(messages, min_size=1, max_size=6))
@example(["fix: x\n\nRefs: ABC-1, ABC-1 and XY-22"])
@example(["no dash here at all"])
def test_issue_keys_with_the_dash_prefilter_match_the_plain_regex(msgs: list[str]) -> None:
    commits = [_commit(f"{i:040x}", m) for i, m in enumerate(msgs)]
    log = build_changelog(commits, (), DEFAULT_ISSUE_PATTERN)
    kept = effective_commits(commits)[0]
    assert len(log.entries) == len(kept)
    for e, c in zip(log.entries, kept, strict=True):
        assert e.issues == tuple(dict.fromkeys(re.findall(DEFAULT_ISSUE_PATTERN, c.message)))


# --------------------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True, slots=True)
class _PlainRaw:
    """RawCommit with the dataclass-made __init__: the reference for fast_frozen_init."""

    sha: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    authored: int
    message: str
    files: tuple[str, ...] = ()


def test_fast_init_records_behave_like_plain_frozen_dataclasses() -> None:
    args = ("a" * 40, ("b" * 40,), "Ada", "ada@x", 7, "fix: y\n\nbody")
    fast, plain = RawCommit(*args), _PlainRaw(*args)
    assert dataclasses.astuple(fast) == dataclasses.astuple(plain)
    assert fast.files == () and fast.subject == "fix: y"
    assert RawCommit(*args, files=("f",)).files == ("f",)
    kw = dict(zip([f.name for f in dataclasses.fields(RawCommit)], args, strict=False))
    assert RawCommit(**kw) == fast and hash(RawCommit(**kw)) == hash(fast)
    assert fast != RawCommit(*args, files=("f",))
    assert repr(fast).startswith("RawCommit(sha='aaaa") and "files=()" in repr(fast)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.sha = "c" * 40  # type: ignore[misc]
    with pytest.raises(TypeError):
        RawCommit(*args[:5])  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RawCommit(*args, ("f",), "extra")  # type: ignore[call-arg]
    assert dataclasses.replace(fast, message="feat: z").message == "feat: z"
    tag = TagRef("v1.0.0", "a" * 40, True, 5)
    assert (tag.name, tag.sha, tag.annotated, tag.created) == ("v1.0.0", "a" * 40, True, 5)
    fields = [f.name for f in dataclasses.fields(ChangelogEntry)]
    values = [f"v{i}" for i in range(len(fields))]
    entry = ChangelogEntry(*values)  # type: ignore[arg-type]
    assert [getattr(entry, f) for f in fields] == values
    assert entry == ChangelogEntry(**dict(zip(fields, values, strict=True)))  # type: ignore[arg-type]


def test_fast_init_refuses_classes_it_cannot_speed_up() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        x: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Post:
        x: int

        def __post_init__(self) -> None:
            pass

    for cls in (Mutable, NoSlots, Factory, Post):
        with pytest.raises(TypeError):
            fast_frozen_init(cls)
