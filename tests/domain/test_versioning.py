"""Tag classification, conflicts, and next versions for main, hotfix lines and pre-releases."""

from __future__ import annotations

from functools import partial

import pytest
from semver import Version

from relapp.domain.gitdata import RawCommit, TagRef
from relapp.domain.versioning import (
    Bump,
    Refusal,
    TagRules,
    TagStatus,
    classify,
    format_tag,
    inventory,
    line_of,
    next_hotfix_version,
    next_main_version,
    next_prerelease,
    parse_tag,
    release_kind,
)

V = Version.parse


def sha(n: int) -> str:
    # The number leads, so short shas (first 7 hex digits) differ between commits.
    return f"{n:07x}" + "e" * 33


def tag(name: str, n: int = 1) -> TagRef:
    return TagRef(name=name, sha=sha(n), annotated=True, created=1_700_000_000)


def commit(message: str, n: int) -> RawCommit:
    return RawCommit(
        sha=sha(n),
        parents=(sha(n + 1000),),
        author_name="Ada",
        author_email="ada@example.com",
        authored=1_700_000_000,
        message=message,
    )


FIX = [commit("fix: a thing", 1)]

# --- classification ---------------------------------------------------------------------------

CORPUS = [
    # name, status, version
    ("v1.2.3", TagStatus.CANONICAL, "1.2.3"),
    ("v1.2.3-rc.2", TagStatus.CANONICAL, "1.2.3-rc.2"),
    ("v1.2.3+build.7", TagStatus.CANONICAL, "1.2.3+build.7"),
    ("v1.2", TagStatus.LEGACY, "1.2.0"),
    ("1.2.3", TagStatus.LEGACY, "1.2.3"),
    ("V1.2.3", TagStatus.LEGACY, "1.2.3"),
    ("release-1.4.0", TagStatus.LEGACY, "1.4.0"),
    ("release-1.4", TagStatus.LEGACY, "1.4.0"),
    ("rel_1_4_0", TagStatus.LEGACY, "1.4.0"),
    ("rel_1_4", TagStatus.LEGACY, "1.4.0"),
    ("1.2.0rc1", TagStatus.LEGACY, "1.2.0-rc.1"),
    ("1.2.0-rc.1", TagStatus.LEGACY, "1.2.0-rc.1"),
    ("v1.2.0-rc1", TagStatus.LEGACY, "1.2.0-rc.1"),  # template shape, but rc1 -> rc.1
    ("1.3.0b2", TagStatus.LEGACY, "1.3.0-beta.2"),
    ("nightly", TagStatus.UNKNOWN, None),
    ("v01.2.3", TagStatus.UNKNOWN, None),
    ("v1.02", TagStatus.UNKNOWN, None),
    ("v1.2.3-rc.01", TagStatus.UNKNOWN, None),
    ("v1.2.3.4", TagStatus.UNKNOWN, None),
    ("xv1.2.3", TagStatus.UNKNOWN, None),  # fullmatch: no prefix slack
    ("v1.2.3-", TagStatus.UNKNOWN, None),
    ("deploy-2023-05-01", TagStatus.UNKNOWN, None),
]


@pytest.mark.parametrize(("name", "status", "version"), CORPUS)
def test_classify_default_rules(name: str, status: TagStatus, version: str | None) -> None:
    c = classify(tag(name), TagRules())
    assert c.status is status, c.reason
    assert (str(c.version) if c.version else None) == version
    assert c.reason


def test_leading_zero_reason_is_reported() -> None:
    c = classify(tag("v01.2.3"), TagRules())
    assert "leading zeros" in c.reason


@pytest.mark.parametrize(
    ("name", "status", "version"),
    [
        ("app-1.2.3", TagStatus.CANONICAL, "1.2.3"),
        ("app-1.2.3-rc.1", TagStatus.CANONICAL, "1.2.3-rc.1"),
        ("v1.2.3", TagStatus.LEGACY, "1.2.3"),
        ("nightly-5", TagStatus.IGNORED, None),
        ("nightly", TagStatus.IGNORED, None),
        ("builds/77", TagStatus.IGNORED, None),
        ("app-1.2", TagStatus.UNKNOWN, None),
    ],
)
def test_classify_custom_template_and_ignore(
    name: str, status: TagStatus, version: str | None
) -> None:
    rules = TagRules(template="app-{version}", ignore=(r"nightly(-\d+)?", r"builds/.*"))
    c = classify(tag(name), rules)
    assert (c.status, str(c.version) if c.version else None) == (status, version)


def test_ignore_comes_first_and_only_fullmatches() -> None:
    rules = TagRules(ignore=(r"1\.2\.3", r"night", r"v9\..*"))
    assert classify(tag("1.2.3"), rules).status is TagStatus.IGNORED  # before the legacy rules
    assert classify(tag("v9.0.0"), rules).status is TagStatus.IGNORED  # before the template
    assert classify(tag("nightly"), rules).status is TagStatus.UNKNOWN


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"template": "v"}, "has no placeholder"),
        ({"template": "{version}-{version}"}, "more than once"),
        ({"template": "v{version}{x}"}, "unknown placeholder"),
        ({"legacy": ("([0-9",)}, "not a valid regular expression"),
        ({"legacy": (r"(\d+)\.(\d+)",)}, "no group named major"),
        ({"ignore": ("(",)}, "ignore pattern"),
    ],
)
def test_bad_rules_raise_sentences(kwargs: dict[str, object], words: str) -> None:
    # RuleError is a ValueError: callers that catch ValueError keep working.
    with pytest.raises(ValueError, match=words):
        TagRules(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("template", "version", "name"),
    [
        ("v{version}", "1.2.3", "v1.2.3"),
        ("{version}", "1.2.3-rc.1", "1.2.3-rc.1"),
        ("release/{version}/final", "2.0.0", "release/2.0.0/final"),
    ],
)
def test_format_and_parse_tag(template: str, version: str, name: str) -> None:
    rules = TagRules(template=template)
    assert format_tag(V(version), rules) == name
    assert parse_tag(name, rules) == V(version)
    assert classify(tag(name), rules).status is TagStatus.CANONICAL


# --- inventory and conflicts ------------------------------------------------------------------


def test_inventory_conflicts_and_aliases() -> None:
    tags = [
        tag("v1.0.0", 1),
        tag("1.0.0", 1),  # alias: same version, same commit
        tag("v1.1.0", 2),
        tag("release-1.1", 3),  # conflict: 1.1.0 on another commit
        tag("v1.2.0+a", 4),
        tag("v1.2.0+b", 5),  # build metadata is not a different version
        tag("v1.3.0-rc.1", 6),
        tag("nightly", 7),
    ]
    inv = inventory(tags, TagRules())
    assert [str(c.version) for c in inv.conflicts] == ["1.1.0", "1.2.0"]
    assert [t.name for t in inv.conflicts[0].tags] == ["v1.1.0", "release-1.1"]
    assert inv.conflicts[0].shas == (sha(2), sha(3))
    assert [str(v) for v in inv.versions()] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0-rc.1"]
    assert [str(v) for v in inv.stable_versions()] == ["1.0.0", "1.1.0", "1.2.0"]
    assert [t.name for t in inv.unknown] == ["nightly"]
    assert inv.version_of("release-1.1") == V("1.1.0")
    assert inv.version_of("nightly") is None
    assert [t.name for t in inv.tags_for(V("1.0.0"))] == ["v1.0.0", "1.0.0"]
    assert inv.is_conflicted(V("1.1.0")) and not inv.is_conflicted(V("1.0.0"))
    assert inv.versions_of(["v1.0.0", "1.0.0", "nightly", "gone"]) == (V("1.0.0"),)


def test_conflicted_version_still_blocks_allocation() -> None:
    inv = inventory([tag("v1.1.0", 2), tag("release-1.1", 3)], TagRules())
    nxt = next_main_version(
        reachable=[V("1.0.0")], existing=inv.versions(), commits=FIX, baseline=V("0.1.0")
    )
    assert nxt.version == V("1.2.0")


# --- next main version ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reachable", "existing", "messages", "requested", "expected", "bump"),
    [
        # no previous release anywhere: the baseline itself
        ([], [], ["fix: a"], None, "0.1.0", "initial"),
        # prev 1.2.0 -> minor by default, even for fixes only
        (["1.2.0"], ["1.2.0"], ["fix: a"], None, "1.3.0", "minor"),
        # highest reachable, not the latest line: hotfixes of 1.2 do not move main's prev
        (
            ["1.1.0", "1.2.0", "1.2.3"],
            ["1.1.0", "1.2.0", "1.2.3"],
            ["feat: a"],
            None,
            "1.3.0",
            "minor",
        ),
        # breaking by bang or trailer -> major
        (["1.2.0"], ["1.2.0"], ["feat!: a"], None, "2.0.0", "major"),
        (["1.2.0"], ["1.2.0"], ["fix: a\n\nBREAKING CHANGE: b"], None, "2.0.0", "major"),
        # a body line `feat!:` is not a header
        (["1.2.0"], ["1.2.0"], ["chore: a\n\nfeat!: quoted"], None, "1.3.0", "minor"),
        # rc tags never count as prev ...
        (["1.2.0", "1.3.0-rc.1"], ["1.2.0", "1.3.0-rc.1"], ["fix: a"], None, "1.4.0", "minor"),
        (["1.2.0", "2.0.0-rc.1"], ["1.2.0", "2.0.0-rc.1"], ["fix: a"], None, "1.3.0", "minor"),
        # ... and own their line: an early-cut 1.3 with rcs is skipped
        (["1.2.0"], ["1.2.0", "1.3.0-rc.1", "1.3.0-rc.2"], ["fix: a"], None, "1.4.0", "minor"),
        # several owned lines in a row
        (["1.2.0"], ["1.2.0", "1.3.0-rc.1", "1.4.0"], ["fix: a"], None, "1.5.0", "minor"),
        # major skips an owned 2.0 line too
        (["1.2.0"], ["1.2.0", "2.0.0-rc.1"], ["feat!: a"], None, "2.1.0", "major"),
        # nothing reachable, but versions exist elsewhere: bump from the baseline
        ([], ["0.1.0-rc.1"], ["fix: a"], None, "0.2.0", "minor"),
        # build metadata ignored for collisions
        (["1.2.0"], ["1.2.0", "1.3.0+x"], ["fix: a"], None, "1.4.0", "minor"),
        # requested minor does not override breaking
        (["1.2.0"], ["1.2.0"], ["feat!: a"], Bump.MINOR, "2.0.0", "major"),
    ],
)
def test_next_main_version(
    reachable: list[str],
    existing: list[str],
    messages: list[str],
    requested: Bump | None,
    expected: str,
    bump: str,
) -> None:
    commits = [commit(m, i) for i, m in enumerate(messages, start=1)]
    nxt = next_main_version(
        reachable=[V(v) for v in reachable],
        existing=[V(v) for v in existing],
        commits=commits,
        requested=requested,
        baseline=V("0.1.0"),
    )
    assert (str(nxt.version), nxt.bump) == (expected, bump)


def test_main_previous_and_breaking_commits_reported() -> None:
    commits = [commit("feat!: a", 1), commit("fix: b", 2), commit("feat(x)!: c", 3)]
    nxt = next_main_version(
        reachable=[V("1.2.0"), V("1.2.1")],
        existing=[V("1.2.1")],
        commits=commits,
        baseline=V("0.1.0"),
    )
    assert nxt.previous == V("1.2.1")
    assert nxt.breaking_commits == (sha(1), sha(3))
    assert any("breaking" in n for n in nxt.notes)


def test_reverted_breaking_change_gives_no_major() -> None:
    t = commit("feat!: risky", 1)
    r = commit(f'Revert "feat!: risky"\n\nThis reverts commit {t.sha}.\n', 2)
    nxt = next_main_version(
        reachable=[V("1.2.0")],
        existing=[V("1.2.0")],
        commits=[r, t, commit("fix: x", 3)],
        baseline=V("0.1.0"),
    )
    assert nxt.version == V("1.3.0")


def test_requested_major_needs_reason() -> None:
    cut = partial(
        next_main_version,
        reachable=[V("1.2.0")],
        existing=[V("1.2.0")],
        commits=FIX,
        baseline=V("0.1.0"),
    )
    for reason in (None, "", "   "):
        with pytest.raises(Refusal) as exc:
            cut(requested=Bump.MAJOR, reason=reason)
        assert exc.value.code == "reason_required"
        assert "reason" in str(exc.value)
    ok = cut(requested=Bump.MAJOR, reason="new platform")
    assert ok.version == V("2.0.0")
    assert "Major requested: new platform" in ok.notes


def test_nothing_new_refused() -> None:
    with pytest.raises(Refusal) as exc:
        next_main_version(
            reachable=[V("1.2.0")], existing=[V("1.2.0")], commits=[], baseline=V("0.1.0")
        )
    assert exc.value.code == "nothing_new"


# --- hotfix -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "existing", "expected"),
    [
        ("1.2.0", ["1.2.0"], "1.2.1"),
        ("1.2.0", ["1.2.0", "1.2.1", "1.2.2"], "1.2.3"),
        # base is an older patch: still the highest of the line + 1
        ("1.2.1", ["1.2.0", "1.2.1", "1.2.4", "1.3.0", "2.0.0"], "1.2.5"),
        # other lines never interfere
        ("1.2.0", ["1.2.0", "1.3.7", "1.1.9"], "1.2.1"),
        # an rc of the next patch sits below its release
        ("1.2.0", ["1.2.0", "1.2.1-rc.1"], "1.2.1"),
        # an rc further up the line: take its patch so the hotfix is above it
        ("1.2.0", ["1.2.0", "1.2.3-rc.1"], "1.2.3"),
        # base missing from existing (DB-only knowledge) still counts
        ("1.2.6", ["1.2.0"], "1.2.7"),
    ],
)
def test_next_hotfix_version(base: str, existing: list[str], expected: str) -> None:
    nxt = next_hotfix_version(
        base=V(base),
        existing=[V(v) for v in existing],
        line_previous=None,
        line_previous_contained=True,
        commits=FIX,
    )
    assert str(nxt.version) == expected
    assert release_kind(nxt.version, nxt.previous) == "hotfix"


def test_non_cumulative_hotfix_refused() -> None:
    with pytest.raises(Refusal) as exc:
        next_hotfix_version(
            base=V("1.2.0"),
            existing=[V("1.2.0"), V("1.2.1")],
            line_previous=V("1.2.1"),
            line_previous_contained=False,
            commits=FIX,
        )
    assert exc.value.code == "not_cumulative"
    assert "1.2.1" in str(exc.value)
    ok = next_hotfix_version(
        base=V("1.2.0"),
        existing=[V("1.2.0"), V("1.2.1")],
        line_previous=V("1.2.1"),
        line_previous_contained=True,
        commits=FIX,
    )
    assert (ok.version, ok.previous) == (V("1.2.2"), V("1.2.1"))


@pytest.mark.parametrize("message", ["feat: new", "fix!: breaks", "fix: x\n\nBREAKING-CHANGE: y"])
def test_feature_on_line_refused_unless_forced(message: str) -> None:
    commits = [commit("fix: ok", 1), commit(message, 2)]
    hotfix = partial(
        next_hotfix_version,
        base=V("1.2.0"),
        existing=[V("1.2.0")],
        line_previous=None,
        line_previous_contained=True,
        commits=commits,
    )
    with pytest.raises(Refusal) as exc:
        hotfix()
    assert exc.value.code == "not_a_fix"
    assert sha(2)[:7] in str(exc.value) and sha(1)[:7] not in str(exc.value)
    with pytest.raises(Refusal):
        hotfix(force_reason="  ")
    forced = hotfix(force_reason="customer escalation")
    assert forced.version == V("1.2.1")
    assert any("customer escalation" in n and sha(2)[:7] in n for n in forced.notes)


def test_hotfix_nothing_new_and_prerelease_base_refused() -> None:
    with pytest.raises(Refusal) as exc:
        next_hotfix_version(
            base=V("1.2.0"),
            existing=[V("1.2.0")],
            line_previous=V("1.2.0"),
            line_previous_contained=True,
            commits=[],
            nothing_new=True,
        )
    assert exc.value.code == "nothing_new"
    with pytest.raises(Refusal) as exc:
        next_hotfix_version(
            base=V("1.3.0-rc.1"),
            existing=[],
            line_previous=None,
            line_previous_contained=True,
            commits=FIX,
        )
    assert exc.value.code == "base_is_prerelease"
    # branch-head mode with no listed commits but something new is allowed
    ok = next_hotfix_version(
        base=V("1.2.0"),
        existing=[V("1.2.0")],
        line_previous=V("1.2.0"),
        line_previous_contained=True,
        commits=[],
    )
    assert ok.version == V("1.2.1")


# --- prereleases and helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "existing", "token", "expected"),
    [
        ("1.3.0", [], "rc", "1.3.0-rc.1"),
        ("1.3.0", ["1.3.0-rc.1", "1.3.0-rc.4", "1.3.0-beta.9", "1.4.0-rc.7"], "rc", "1.3.0-rc.5"),
        ("1.3.0", ["1.3.0-rc.1"], "beta", "1.3.0-beta.1"),
        ("1.3.0-rc.2", ["1.3.0-rc.2"], "rc", "1.3.0-rc.3"),
    ],
)
def test_next_prerelease(base: str, existing: list[str], token: str, expected: str) -> None:
    got = next_prerelease(V(base), [V(v) for v in existing], token)
    assert str(got) == expected
    assert got < Version(got.major, got.minor, got.patch)


def test_prerelease_of_released_version_refused() -> None:
    with pytest.raises(Refusal) as exc:
        next_prerelease(V("1.3.0"), [V("1.3.0")])
    assert exc.value.code == "already_released"
    with pytest.raises(ValueError, match="token"):
        next_prerelease(V("1.3.0"), [], "r c")


@pytest.mark.parametrize(
    ("version", "previous", "kind"),
    [
        ("2.0.0", "1.4.0", "major"),
        ("2.1.0", "1.4.0", "major"),
        ("1.5.0", "1.4.2", "minor"),
        ("1.4.3", "1.4.2", "hotfix"),
        ("1.0.0", None, "major"),
        ("0.1.0", None, "minor"),
    ],
)
def test_release_kind(version: str, previous: str | None, kind: str) -> None:
    assert release_kind(V(version), V(previous) if previous else None) == kind


def test_line_of() -> None:
    assert line_of(V("1.2.3-rc.1+b")) == (1, 2)


@pytest.mark.parametrize("reachable, expected", [
    ([], None),
    (["1.0.0", "1.2.0", "1.10.0", "1.9.9"], "1.10.0"),
    (["1.2.0", "2.0.0-rc.1"], "1.2.0"),
    (["2.0.0-rc.1"], None),
])
def test_previous_release_is_the_highest_stable_reachable_version(reachable, expected):
    from relapp.domain.versioning import previous_release

    found = previous_release([Version.parse(v) for v in reachable])
    assert (str(found) if found else None) == expected
