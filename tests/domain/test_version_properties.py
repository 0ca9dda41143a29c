"""Properties of version ordering, tag round-trips and allocation, checked with hypothesis."""

from __future__ import annotations

import dataclasses

from hypothesis import assume, given
from hypothesis import strategies as st
from semver import Version

from relapp.domain.gitdata import RawCommit
from relapp.domain.versioning import (
    TagRules,
    format_tag,
    line_of,
    next_hotfix_version,
    next_main_version,
    next_prerelease,
    parse_tag,
)

from .strategies import GLUED_PRE, build_parts, pre_releases, semvers

versions = semvers(6, pre_releases(30, 8), build_parts(30, 8))
stable = semvers(6)

# The round trip is over the spellings the template renders (never a glued `rc1`).

FIX = [
    RawCommit(
        sha="f" * 40,
        parents=("e" * 40,),
        author_name="Ada",
        author_email="ada@example.com",
        authored=0,
        message="fix: something",
    )
]


@given(versions, versions)
def test_compare_antisymmetric(a: Version, b: Version) -> None:
    assert a.compare(b) == -b.compare(a)
    assert (a.compare(b) == 0) == (a.replace(build=None) == b.replace(build=None))


@given(versions, versions, versions)
def test_compare_transitive(a: Version, b: Version, c: Version) -> None:
    if a.compare(b) <= 0 and b.compare(c) <= 0:
        assert a.compare(c) <= 0


@given(
    versions,
    st.sampled_from(["v{version}", "{version}", "release-{version}", "app/{version}/x"]),
)
def test_parse_format_round_trip(v: Version, template: str) -> None:
    assume(v.prerelease is None or not GLUED_PRE.fullmatch(v.prerelease))
    rules = TagRules(template=template)
    parsed = parse_tag(format_tag(v, rules), rules)
    assert parsed is not None
    assert str(parsed) == str(v)  # str: build metadata must survive too


@given(stable)
def test_rc_sorts_below_its_release(v: Version) -> None:
    rc = next_prerelease(v, [])
    assert rc < v
    assert rc.compare(v) == -1


@given(
    st.lists(stable, max_size=3),
    st.lists(versions, max_size=8),
    st.booleans(),
)
def test_next_main_above_its_line_and_unused(
    reachable: list[Version], others: list[Version], breaking: bool
) -> None:
    existing = reachable + others
    commits = [dataclasses.replace(FIX[0], message="feat!: x")] if breaking else FIX
    nxt = next_main_version(
        reachable=reachable, existing=existing, commits=commits, baseline=Version(0, 1, 0)
    )
    keys = [e.replace(build=None) for e in existing]
    assert nxt.version not in keys
    assert all(nxt.version > e for e in keys if line_of(e) == line_of(nxt.version))
    assert nxt.version.patch == 0 and nxt.version.prerelease is None
    if reachable:
        assert nxt.version > max(reachable)
        assert nxt.previous == max(r.replace(build=None) for r in reachable)


@given(stable, st.lists(versions, max_size=10))
def test_next_hotfix_above_its_line_and_unused(base: Version, others: list[Version]) -> None:
    nxt = next_hotfix_version(
        base=base,
        existing=[base, *others],
        line_previous=None,
        line_previous_contained=True,
        commits=FIX,
    )
    keys = [e.replace(build=None) for e in [base, *others]]
    assert line_of(nxt.version) == line_of(base)
    assert nxt.version not in keys
    assert all(nxt.version > e for e in keys if line_of(e) == line_of(base))
    assert nxt.version.prerelease is None


@given(stable, st.lists(versions, max_size=10))
def test_next_prerelease_unused_and_below_release(base: Version, others: list[Version]) -> None:
    others = [o for o in others if o.replace(prerelease=None, build=None) != base or o.prerelease]
    rc = next_prerelease(base, others)
    assert rc not in [o.replace(build=None) for o in others]
    assert rc < base
    same = [o for o in others if o.replace(prerelease=None, build=None) == base]
    assert all(rc > o for o in same if o.prerelease and o.prerelease.startswith("rc."))
