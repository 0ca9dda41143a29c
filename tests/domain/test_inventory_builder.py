"""InventoryBuilder, fed a repository's tags a batch at a time as git lists them, builds exactly
the inventory `inventory()` builds from the whole sorted list: in git's order (by name, the
tags of tags last), in any other order, in any batches, with build() called midway."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from relapp.domain.gitdata import TagRef
from relapp.domain.versioning import (
    DEFAULT_LEGACY,
    InventoryBuilder,
    TagRules,
    TagStatus,
    inventory,
    inventory_of,
)

RULE_SETS = (
    TagRules(),
    # issue 8's users' rules: a split template, an underscore rule, an ignore rule
    TagRules(
        template="v{major}.{minor}.{patch}",
        legacy=(*DEFAULT_LEGACY, r"product-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)"),
        ignore=(r"nightly-\d+",),
    ),
    # a rule that runs on `regex` with a timeout, and the template of another convention
    TagRules(
        template="product-{major}_{minor}_{patch}",
        legacy=(r"x(?=x)x-(?P<major>\d+)\.(?P<minor>\d+)",),
    ),
)

_KINDS = (
    "v{M}.{m}.{p}", "v{M}.{m}.{p}-rc.{n}", "{M}.{m}.{p}", "release-{M}.{m}", "v{M}.{m}",
    "product-{M}_{m}_{p}", "product-{M}_{m}", "nightly-{n}", "build-{n}", "xx-{M}.{m}",
    "v0{M}.{m}.{p}", "{M}.{m}.{p}rc{n}", "zz-{n}", "V{M}.{m}.{p}",
)  # fmt: skip
small = st.integers(min_value=0, max_value=3)


@st.composite
def listings(draw: st.DrawFn) -> tuple[list[TagRef], list[TagRef]]:
    """A repository's tags (unique names, several on one version, on commits a-c) as
    Workspace.tags() lists them, and as git writes them: by name, with some (the tags of tags)
    moved to the end."""
    specs = draw(
        st.lists(
            st.tuples(st.sampled_from(_KINDS), small, small, small, small, st.sampled_from("abc")),
            max_size=30,
        )
    )
    by_name: dict[str, TagRef] = {}
    for i, (kind, major, minor, patch, n, commit) in enumerate(specs):
        name = kind.format(M=major, m=minor, p=patch, n=n)
        by_name.setdefault(name, TagRef(name, commit * 40, bool(i % 2), i))
    listed = sorted(by_name.values(), key=lambda t: t.name)
    nested = draw(st.sets(st.sampled_from([t.name for t in listed]))) if listed else set()
    written = [t for t in listed if t.name not in nested] + [t for t in listed if t.name in nested]
    return listed, written


def _batches(draw: st.DrawFn, tags: list[TagRef]) -> list[list[TagRef]]:
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(tags)), max_size=5)))
    edges = [0, *cuts, len(tags)]
    return [tags[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=300)
@given(listings(), st.sampled_from(RULE_SETS), st.data())
def test_batches_in_git_order_build_the_inventory_of_the_sorted_list(
    listing: tuple[list[TagRef], list[TagRef]], rules: TagRules, data: st.DataObject
) -> None:
    listed, written = listing
    expected = inventory(listed, rules)
    builder = InventoryBuilder(rules)
    for i, batch in enumerate(_batches(data.draw, written)):
        builder.add(batch)
        if i == 1:
            builder.build()  # a look midway changes nothing that follows
    assert builder.build() == expected
    assert builder.build() == expected


@settings(max_examples=150)
@given(listings(), st.sampled_from(RULE_SETS), st.randoms(use_true_random=False), st.data())
def test_any_order_builds_the_inventory_of_the_sorted_list(
    listing: tuple[list[TagRef], list[TagRef]],
    rules: TagRules,
    rnd: random.Random,
    data: st.DataObject,
) -> None:
    listed, _ = listing
    shuffled = list(listed)
    rnd.shuffle(shuffled)
    builder = InventoryBuilder(rules)
    for batch in _batches(data.draw, shuffled):
        builder.add(batch)
    assert builder.build() == inventory(listed, rules)


def test_equal_names_keep_the_order_they_came_in_as_a_stable_sort_would() -> None:
    # Workspace.tags() never lists a name twice; if decoding ever made two equal, the builder
    # orders them as Workspace.tags()'s stable sort does.
    a, b = TagRef("v1.0.0", "a" * 40, True, 1), TagRef("v1.0.0", "b" * 40, True, 2)
    first = TagRef("1.0.0", "c" * 40, False, 3)
    builder = InventoryBuilder(TagRules())
    builder.add([a, first])
    builder.add([b])
    assert builder.build() == inventory([first, a, b], TagRules())


class _Listing:
    """What Workspace.tags(on_tags=…) does, over a given list: batches in git's order."""

    def __init__(self, written: list[TagRef], size: int) -> None:
        self.written, self.size = written, size

    def tags(self, on_tags: object = None) -> list[TagRef]:
        for i in range(0, len(self.written), self.size):
            on_tags(self.written[i : i + self.size])  # type: ignore[operator]
        return sorted(self.written, key=lambda t: t.name)


def test_inventory_of_classifies_what_the_source_hands_over() -> None:
    written = [TagRef(f"v1.{m}.0", "a" * 40, True, m) for m in range(12)]
    written += [TagRef("nightly-3", "b" * 40, False, 0), TagRef("v1.0.0-rc.1", "c" * 40, True, 0)]
    rules = RULE_SETS[1]
    inv = inventory_of(_Listing(written, 5), rules)
    assert inv == inventory(sorted(written, key=lambda t: t.name), rules)
    assert [c.name for c in inv.ignored] == ["nightly-3"]
    assert {c.status for c in inv.recognised} == {TagStatus.CANONICAL}
