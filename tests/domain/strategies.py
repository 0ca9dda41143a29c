"""Hypothesis strategies for semver identifiers, shared by the domain's property tests."""

from __future__ import annotations

import re

from hypothesis import strategies as st
from semver import Version

# relapp reads a template-shaped `rc1` as `rc.1` (see versioning._match); the template
# never renders that spelling.
GLUED_PRE = re.compile(r"(?:rc|alpha|beta|pre)\d+", re.IGNORECASE)


def numeric_ids(max_value: int) -> st.SearchStrategy[str]:
    """Numeric identifiers 0..max_value, without leading zeros."""
    return st.integers(min_value=0, max_value=max_value).map(str)


def alnum_ids(max_len: int) -> st.SearchStrategy[str]:
    """Alphanumeric identifiers (at least one letter or '-') of 1..max_len characters."""
    return st.from_regex(r"[0-9A-Za-z-]*[A-Za-z-][0-9A-Za-z-]*", fullmatch=True).filter(
        lambda s: 0 < len(s) <= max_len
    )


def dotted(ids: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[str]:
    """One to max_size identifiers joined by dots: a pre-release or build part."""
    return st.lists(ids, min_size=1, max_size=max_size).map(".".join)


def pre_releases(max_numeric: int, max_alnum: int) -> st.SearchStrategy[str | None]:
    """No pre-release, or one to three numeric or alphanumeric identifiers, as semver allows."""
    return st.none() | dotted(numeric_ids(max_numeric) | alnum_ids(max_alnum), 3)


def build_parts(max_numeric: int, max_alnum: int) -> st.SearchStrategy[str | None]:
    """No build metadata, or one or two alphanumeric or numeric identifiers."""
    return st.none() | dotted(alnum_ids(max_alnum) | numeric_ids(max_numeric), 2)


def semvers(
    max_part: int,
    pre: st.SearchStrategy[str | None] | None = None,
    build: st.SearchStrategy[str | None] | None = None,
) -> st.SearchStrategy[Version]:
    """Versions with major, minor and patch in 0..max_part (few, so versions often collide),
    and the given pre-release and build parts (none if not given)."""
    part = st.integers(min_value=0, max_value=max_part)
    return st.builds(
        Version,
        part,
        part,
        part,
        st.none() if pre is None else pre,
        st.none() if build is None else build,
    )
