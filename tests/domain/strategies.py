"""Hypothesis strategies for semver identifiers, shared by the domain's property tests."""

from __future__ import annotations

import re

from hypothesis import strategies as st

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
