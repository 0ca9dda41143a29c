"""Tag conventions: split and prefixed templates, legacy and ignore rules, invalid rules refused with
a sentence, slow rules stopped, how much of a repository relapp reads, and the rules proposed for
the tags it cannot read."""

from __future__ import annotations

import re
import time
import tomllib

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from semver import Version

from relapp.domain import tagrules
from relapp.domain.gitdata import TagRef
from relapp.domain.versioning import (
    DEFAULT_LEGACY,
    Inventory,
    RuleError,
    TagRules,
    TagStatus,
    classify,
    format_tag,
    inventory,
    parse_tag,
    tag_shape,
    tag_shapes,
    toml_snippet,
)
from relapp.gitops.names import check_ref_syntax

from .strategies import GLUED_PRE, build_parts, pre_releases, semvers

V = Version.parse
TEMPLATE_ALLOWED = "use {version} once, or {major}, {minor} and {patch} once each in that order"
NAMES_ALLOWED = (
    "use letters, digits, '.', '_', '-' and '/', each part starting with a letter or digit"
)


def tag(name: str, n: int = 1) -> TagRef:
    return TagRef(name=name, sha=f"{n:07x}" + "e" * 33, annotated=True, created=0)


def read(name: str, rules: TagRules) -> tuple[TagStatus, str | None]:
    c = classify(tag(name), rules)
    return c.status, (str(c.version) if c.version is not None else None)


# --- templates -----------------------------------------------------------------------------------

TEMPLATES = [
    ("product-{major}_{minor}_{patch}", "1.4.0", "product-1_4_0"),
    ("product-{major}_{minor}_{patch}", "8.21.0-rc.1", "product-8_21_0-rc.1"),
    ("v{major}.{minor}.{patch}", "10.0.3", "v10.0.3"),
    ("v{major}.{minor}.{patch}", "1.2.3-beta.2+b.7", "v1.2.3-beta.2+b.7"),
    ("release/{version}", "2.0.0", "release/2.0.0"),
    ("release/{version}", "2.0.0-rc.3", "release/2.0.0-rc.3"),
    ("{major}.{minor}.{patch}-stable", "1.5.0", "1.5.0-stable"),
    ("{major}.{minor}.{patch}-stable", "1.5.0-rc.1", "1.5.0-rc.1-stable"),
    ("v{version}", "0.1.0", "v0.1.0"),
]


@pytest.mark.parametrize(("template", "version", "name"), TEMPLATES)
def test_template_renders_and_reads_back(template: str, version: str, name: str) -> None:
    rules = TagRules(template=template)
    assert format_tag(V(version), rules) == name
    assert read(name, rules) == (TagStatus.CANONICAL, version)
    assert parse_tag(name, rules) == V(version)


@pytest.mark.parametrize(
    ("template", "name", "version"),
    [
        ("product-{major}_{minor}_{patch}", "product-1_3", "1.3.0"),
        ("{major}.{minor}.{patch}-stable", "1.3-stable", "1.3.0"),
        ("v{major}.{minor}.{patch}", "v2.0", "2.0.0"),
    ],
)
def test_two_part_tag_of_a_split_template_reads_as_patch_zero(
    template: str, name: str, version: str
) -> None:
    c = classify(tag(name), TagRules(template=template, legacy=()))
    assert (c.status, str(c.version)) == (TagStatus.LEGACY, version)
    assert c.reason == f"template form without a patch number, read as {version}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("product-1_2_0-rc1", (TagStatus.LEGACY, "1.2.0-rc.1")),  # glued rc: read as rc.1
        ("product-01_2_0", (TagStatus.UNKNOWN, None)),  # leading zeros
        ("product-1_\u0662_0", (TagStatus.UNKNOWN, None)),  # an Arabic-Indic two is not a digit
        ("product-1_2_0_7", (TagStatus.UNKNOWN, None)),
        ("xproduct-1_2_0", (TagStatus.UNKNOWN, None)),  # full match only
        ("lite-1_2_0", (TagStatus.UNKNOWN, None)),
    ],
)
def test_split_template_edges(name: str, expected: tuple[TagStatus, str | None]) -> None:
    rules = TagRules(template="product-{major}_{minor}_{patch}", legacy=())
    assert read(name, rules) == expected


def test_leading_zeros_in_a_template_form_are_reported() -> None:
    rules = TagRules(template="product-{major}_{minor}_{patch}", legacy=())
    assert classify(tag("product-01_2_0"), rules).reason == "leading zeros are not valid semver"


@given(
    semvers(30, pre_releases(30, 6), build_parts(30, 6)),
    st.sampled_from(
        ["product-{major}_{minor}_{patch}", "v{major}.{minor}.{patch}", "{major}.{minor}.{patch}-x",
         "r/{major}-{minor}_{patch}.9", "{major}.{minor}.{patch}"]
    ),
)  # fmt: skip
def test_split_templates_round_trip(v: Version, template: str) -> None:
    rules = TagRules(template=template, legacy=())
    name = format_tag(v, rules)
    c = classify(tag(name), rules)
    if v.prerelease and GLUED_PRE.fullmatch(v.prerelease):
        assert c.status is TagStatus.LEGACY  # `rc1` is read as `rc.1`
        return
    assert c.status is TagStatus.CANONICAL, (name, c.reason)
    assert str(c.version) == str(v)


TEMPLATE_ERRORS = [
    ("{version}-{version}", "uses {version} more than once"),
    ("v{minor}.{patch}", "uses {minor} without {major}"),
    ("v{version}.{major}", "mixes {version} with {major}, {minor} or {patch}"),
    ("{major}.{minor}", "has no {patch}"),
    ("{major}.{major}.{minor}.{patch}", "uses {major} more than once"),
    ("{patch}.{minor}.{major}", "has {major}, {minor} and {patch} out of order"),
    ("{major}{minor}.{patch}", "between {major} and {minor}"),
    ("{major}.{minor}1{patch}", "between {minor} and {patch}"),
    ("v", "has no placeholder"),
    ("", "has no placeholder"),
    ("v{x}", "has the unknown placeholder {x}"),
    ("v{version}}", "a brace that is not part of a placeholder"),
    ("v {version}", "would make tag names that contain ' '"),
    ("v~{version}", "contain '~'"),
    ("v+{version}", "contain '+'"),  # legal for git, but not a name relapp makes
    ("a..{version}", "contain '..'"),
    ("-{version}", "have a part starting with '-'"),
    ("/{version}", "have an empty part between slashes"),
    ("v{version}/", "have an empty part between slashes"),
    ("a//{version}", "have an empty part between slashes"),
    ("{version}.lock", "have a part ending with '.lock'"),
    ("v{version}.", "have a part ending with '.'"),
    ("x/.{version}", "have a part starting with '.'"),
    ("v{version}\t", "a control character"),
    ("x" * 80 + "-{version}", "longer than 100 characters"),
]


@pytest.mark.parametrize(("template", "problem"), TEMPLATE_ERRORS)
def test_bad_template_is_refused_with_what_is_allowed(template: str, problem: str) -> None:
    with pytest.raises(RuleError) as info:
        TagRules(template=template)
    err = info.value
    assert (err.key, err.index) == ("tag_template", None)
    assert problem in err.message
    allowed = TEMPLATE_ALLOWED if "would make tag names" not in err.message else NAMES_ALLOWED
    assert allowed in err.message
    assert "\n" not in err.message


def test_a_template_relapp_accepts_renders_names_relapp_can_tag() -> None:
    # The same rule gitops applies before a tag is made (checked here without git).
    for template, version, _ in TEMPLATES:
        name = format_tag(V(version), TagRules(template=template))
        if "+" not in name:  # relapp never makes versions with build metadata
            check_ref_syntax(name, "tag")


# --- legacy and ignore rules ---------------------------------------------------------------------

RC_RULE = r"rc-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)-(?P<pre>\d+)"
BETA_RULE = r"product-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)(?P<pre>b\d+)"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rc-1_5_0-1", (TagStatus.LEGACY, "1.5.0-1")),  # a bare number stays as written
        ("rc-1_5_0-12", (TagStatus.LEGACY, "1.5.0-12")),
        ("rc-1_5_0-01", (TagStatus.UNKNOWN, None)),  # leading zero in the pre-release
        ("product-1_5_0b2", (TagStatus.LEGACY, "1.5.0-beta.2")),  # b2 -> beta.2
        ("product-1_5_0", (TagStatus.CANONICAL, "1.5.0")),
    ],
)
def test_legacy_rules_with_pre_releases(name: str, expected: tuple[TagStatus, str | None]) -> None:
    rules = TagRules(template="product-{major}_{minor}_{patch}", legacy=(RC_RULE, BETA_RULE))
    assert read(name, rules) == expected


def test_legacy_rules_are_tried_in_order_and_name_the_rule() -> None:
    first = r"(?P<major>\d+)-(?P<minor>\d+)"
    second = r"(?P<major>\d+)-(?P<minor>\d+)(?:-(?P<patch>\d+))?"
    rules = TagRules(legacy=(first, second))
    one, two = classify(tag("4-5"), rules), classify(tag("4-5-6"), rules)
    assert (one.reason, two.reason) == (
        "legacy rule 1 reads it as 4.5.0",
        "legacy rule 2 reads it as 4.5.6",
    )


def test_a_rule_whose_groups_are_not_numbers_falls_through_with_a_reason() -> None:
    rules = TagRules(legacy=(r"x(?P<major>\w+)\.(?P<minor>\d+)",))
    c = classify(tag("xab.1"), rules)
    assert c.status is TagStatus.UNKNOWN
    assert "reads major 'ab', which is not a number" in c.reason


def test_ignore_rules_come_first_so_a_date_is_kept_out() -> None:
    rules = TagRules(ignore=(r"\d{4}\.\d{1,2}",))
    assert read("2023.11", rules) == (TagStatus.IGNORED, None)
    assert read("v1.2", rules) == (TagStatus.LEGACY, "1.2.0")
    assert read("1.2", rules) == (TagStatus.LEGACY, "1.2.0")
    assert read("2023.11", TagRules()) == (TagStatus.LEGACY, "2023.11.0")  # what it guards


def test_an_ignore_rule_wins_over_the_template() -> None:
    rules = TagRules(template="v{version}", ignore=(r"v0\..*",))
    assert read("v0.9.0", rules) == (TagStatus.IGNORED, None)
    assert read("v1.0.0", rules) == (TagStatus.CANONICAL, "1.0.0")


RULE_ERRORS = [
    ({"legacy": (RC_RULE, "([0-9")}, "legacy_tags", 1, "is not a valid regular expression"),
    ({"legacy": (r"(?P<minor>\d+)\.(?P<patch>\d+)",)}, "legacy_tags", 0, "no group named major"),
    ({"legacy": (r"(?P<major>\d+)",)}, "legacy_tags", 0, "no group named minor"),
    (
        {"legacy": (r"(?P<major>\d+)\.(?P<minor>\d+)\.(?P<build_no>\d+)",)},
        "legacy_tags",
        0,
        "a group named build_no, which relapp does not read",
    ),
    ({"legacy": ("",)}, "legacy_tags", 0, "is empty"),
    ({"ignore": ("nightly", "(")}, "ignore_tags", 1, "is not a valid regular expression"),
    ({"ignore": ("",)}, "ignore_tags", 0, "is empty"),
    # Catastrophic backtracking on the engine that would run them (regex with a timeout).
    ({"ignore": (r"(a|aa)+$",)}, "ignore_tags", 0, "takes too long on some tag names"),
    (
        {"legacy": (r"(?P<major>(?:1|11)+)\.(?P<minor>\d+)",)},
        "legacy_tags",
        0,
        "takes too long on some tag names",
    ),
    ({"ignore": (r"(?:x|xx)+y",)}, "ignore_tags", 0, "catastrophic backtracking"),
]


@pytest.mark.parametrize(("kwargs", "key", "index", "problem"), RULE_ERRORS)
def test_bad_rule_is_refused_naming_key_index_and_what_is_allowed(
    kwargs: dict[str, tuple[str, ...]], key: str, index: int, problem: str
) -> None:
    with pytest.raises(RuleError) as info:
        TagRules(**kwargs)
    err = info.value
    assert (err.key, err.index) == (key, index)
    assert problem in err.message
    allowed = (
        "named groups (?P<major>…) and (?P<minor>…)" if key == "legacy_tags" else "whole tag names"
    )
    assert allowed in err.message
    assert "\\\\" not in err.message  # the rule is quoted as written, not repr()'d


def test_rule_error_is_a_value_error_and_quotes_the_rule_as_written() -> None:
    with pytest.raises(ValueError, match=r"The legacy tag rule '\(\?P<major>\\d\+\)' has no group"):
        TagRules(legacy=(r"(?P<major>\d+)",))


# A rule that passes the checks at construction but backtracks for ages on one odd tag: `#` is
# not among the characters the construction probes try.
SLOW_ON_HASHES = r"(?P<major>\d+)\.(?P<minor>\d+)|(?:#|##)+z"


def test_a_rule_that_times_out_on_a_tag_leaves_it_unknown_and_is_stopped_after_three() -> None:
    rules = TagRules(legacy=(SLOW_ON_HASHES,))
    names = [f"{'#' * (40 + i)}!" for i in range(5)]
    started = time.monotonic()
    inv = inventory([tag("v1.0.0"), tag("3.4"), *(tag(n) for n in names)], rules)
    took = time.monotonic() - started
    by_name = {c.name: c for c in inv.classified}
    assert by_name["v1.0.0"].status is TagStatus.CANONICAL
    assert str(by_name["3.4"].version) == "3.4.0"
    reasons = [by_name[n].reason for n in names]
    assert all(by_name[n].status is TagStatus.UNKNOWN for n in names)
    assert reasons[:3] == [f"legacy rule 1 ('{SLOW_ON_HASHES}') took too long on this tag"] * 3
    assert (
        reasons[3:]
        == [f"legacy rule 1 ('{SLOW_ON_HASHES}') was stopped: too slow on other tags"] * 2
    )
    assert took < 30  # bounded by three timeouts, not by the pattern's exponential time


def test_a_slow_rule_times_out_alone_too() -> None:
    rules = TagRules(legacy=(SLOW_ON_HASHES,))
    c = classify(tag("#" * 44 + "!"), rules)
    assert (c.status, c.reason.endswith("took too long on this tag")) == (TagStatus.UNKNOWN, True)


# --- which rules run on `re` ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        *DEFAULT_LEGACY,
        r"product-(?P<major>\d+)_(?P<minor>\d+)(?:_(?P<patch>\d+))?",
        r"nightly-.*",
        r"builds/.*",
        r"\d{4}\.\d{1,2}",
        r".*-rc\d+",  # one repetition with an ambiguous end
        r"v(?:\.\d+)*x",
        r"(?i)v\d+",
        r"(?:ab|cd)+-\d+",  # alternatives told apart by their first character
        RC_RULE,
    ],
)
def test_plain_bounded_rules_run_on_re(pattern: str) -> None:
    assert tagrules.analyse(pattern)[1] is True


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a+)+",  # a repetition inside a repetition
        r"(a|aa)+",
        r"(?:x|xx)+y",
        r".*a.*b",  # two repetitions with ambiguous ends
        r"(?P<x>a)(?P=x)",  # back-reference
        r"(?=a)a\d",  # lookaround
        r"[[:alpha:]]+",  # a POSIX class: `regex` syntax that `re` reads differently
        r"ab{e<=1}",  # fuzzy matching in `regex`, literal text in `re`
        r"\p{L}+",
        r"(?<major>\d+)",  # `regex`'s spelling of a named group
        r"(?:a?){20}a{20}",
    ],
)
def test_rules_the_analysis_cannot_bound_run_on_regex(pattern: str) -> None:
    assert tagrules.analyse(pattern)[1] is False


@pytest.mark.parametrize(
    ("pattern", "first"),
    [
        (r"product-(?P<major>\d+)", {"p"}),
        (r"(?i)v\d+", {"v", "V"}),
        (r"[vV]?(?P<major>\d+)", set("vV0123456789")),
        (r"(?:release|rel)[-_/]\d", {"r"}),
        (r"(?:a|b)?c", {"a", "b", "c"}),
    ],
)
def test_first_characters_drive_the_dispatch(pattern: str, first: set[str]) -> None:
    assert tagrules.analyse(pattern)[0] == frozenset(first)


@pytest.mark.parametrize("pattern", [r"[^a]x", r".x", r"\Wx", r"\p{L}x"])
def test_unknown_first_characters_mean_any(pattern: str) -> None:
    assert tagrules.analyse(pattern)[0] is None


BOUNDED_RULES = [
    r"product-(?P<major>\d+)_(?P<minor>\d+)(?:_(?P<patch>\d+))?(?:-rc(?P<pre>\d+))?",
    r"[a-z]+-(?P<major>\d+)\.(?P<minor>\d+)",
    r".*-(?P<major>\d+)\.(?P<minor>\d+)",
    r"(?i)REL(?:_\d+)*",
]
_NAME_CHARS = "product-_.rcREL0123456789abxyz"


@settings(max_examples=300)
@given(st.sampled_from(BOUNDED_RULES), st.text(_NAME_CHARS, min_size=1, max_size=24))
def test_re_and_regex_agree_on_every_bounded_rule(pattern: str, name: str) -> None:
    assert tagrules.analyse(pattern)[1] is True
    fast = re.compile(pattern, re.ASCII).fullmatch(name)
    slow = regex.compile(pattern, regex.ASCII | regex.V0).fullmatch(name)
    assert (fast is None) == (slow is None)
    if fast is not None and slow is not None:
        assert fast.groupdict() == slow.groupdict()


def test_a_name_longer_than_the_fast_limit_goes_through_regex_with_the_same_answer() -> None:
    rules = TagRules(ignore=(r"x-.*",), legacy=(r"y-(?P<major>\d+)\.(?P<minor>\d+)",))
    long = "x-" + "a" * (tagrules.FAST_MAX_LEN + 10)
    assert read(long, rules) == (TagStatus.IGNORED, None)
    assert read("y-1." + "2" * 300, rules)[0] is TagStatus.LEGACY


# --- how much relapp reads -----------------------------------------------------------------------


def _repo(product: int, read_as_v: int, extra: list[str]) -> list[TagRef]:
    tags = [tag(f"product-{i // 50}_{i % 50}_0", i) for i in range(product)]
    tags += [tag(f"v1.{i}.0", 1000 + i) for i in range(read_as_v)]
    return tags + [tag(n, 2000 + i) for i, n in enumerate(extra)]


def test_understanding_counts_version_like_tags_and_refuses_below_half() -> None:
    inv = inventory(
        _repo(196, 29, ["demo", "stable", "nightly-3"]), TagRules(ignore=(r"nightly-\d+",))
    )
    u = inv.understanding()
    assert (u.version_like, u.read, u.not_understood) == (225, 29, 196)
    assert u.refusal() == "196 of 225 tags are not understood; see the adoption page."


def test_none_read_is_refused_too() -> None:
    u = inventory(_repo(3, 0, []), TagRules()).understanding()
    assert u.refusal() == "3 of 3 tags are not understood; see the adoption page."


@pytest.mark.parametrize(
    ("product", "read_as_v", "refused"),
    [(10, 10, False), (11, 10, True), (0, 1, False), (0, 0, False)],
)
def test_half_read_is_enough(product: int, read_as_v: int, refused: bool) -> None:
    u = inventory(_repo(product, read_as_v, ["latest", "demo"]), TagRules()).understanding()
    assert (u.refusal() is not None) is refused


def test_tags_without_a_digit_never_count() -> None:
    u = inventory([tag("latest"), tag("stable"), tag("demo")], TagRules()).understanding()
    assert (u.version_like, u.read, u.refusal()) == (0, 0, None)


# --- proposals for what relapp cannot read -------------------------------------------------------

MIXED = [
    *(f"product-1_{m}_0" for m in range(8)),
    "product-1_2_0-hotfixfoo",  # a suffixed one-off: the numbers of product-1_2_0
    "rc-1_5_0-1",
    "rc-1_5_0-2",
    "rc-1_6_0-1",  # release candidates of another shape
    "lite-1_1_0",
    "lite-1_2_0",
    "lite-1_3_0",  # a second product sharing the numbers
    "nightly-5",
    "nightly-6",
    "build.1.2.3.4.5",
    "demo",  # no number at all
]


def _mixed_inventory(rules: TagRules) -> tuple[list[TagRef], Inventory]:
    tags = [tag(n, i) for i, n in enumerate(MIXED)]
    return tags, inventory(tags, rules)


def test_unknown_tags_are_grouped_by_shape_with_a_rule_each() -> None:
    _, inv = _mixed_inventory(TagRules(legacy=()))
    shapes = {s.shape: s for s in tag_shapes(inv)}
    assert [s.shape for s in tag_shapes(inv)][:3] == ["product-N_N_N", "lite-N_N_N", "rc-N_N_N-N"]
    product = shapes["product-N_N_N"]
    assert (product.count, product.kind, product.key) == (8, "legacy", "legacy_tags")
    assert product.examples == ("product-1_0_0", "product-1_1_0", "product-1_2_0")
    assert product.proposed == r"product\-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)"
    rc = shapes["rc-N_N_N-N"]
    assert (rc.kind, rc.proposed) == (
        "legacy",
        r"rc\-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)\-(?P<pre>\d+)",
    )
    assert (shapes["lite-N_N_N"].kind, shapes["lite-N_N_N"].proposed) == (
        "variant",
        r"lite\-\d+_\d+_\d+",
    )
    assert shapes["product-N_N_N-hotfixfoo"].kind == "variant"
    assert (shapes["nightly-N"].kind, shapes["nightly-N"].proposed) == ("ignore", r"nightly\-\d+")
    assert shapes["build.N.N.N.N.N"].kind == "ignore"
    assert (shapes["demo"].kind, shapes["demo"].proposed) == ("ignore", "demo")


def test_each_proposal_is_a_valid_rule_reading_exactly_its_shape() -> None:
    base = TagRules(legacy=())
    tags, inv = _mixed_inventory(base)
    before = {c.name: c.status for c in inv.classified}
    for shape in tag_shapes(inv):
        if shape.key == "legacy_tags":
            rules = TagRules(template=base.template, legacy=(*base.legacy, shape.proposed))
            now = TagStatus.LEGACY
        else:
            rules = TagRules(template=base.template, legacy=base.legacy, ignore=(shape.proposed,))
            now = TagStatus.IGNORED
        after = {c.name: c.status for c in inventory(tags, rules).classified}
        changed = {n for n in after if after[n] != before[n]}
        assert changed == {n for n in before if tag_shape(n) == shape.shape}, shape
        assert {after[n] for n in changed} == {now}


def test_a_shape_whose_numbers_are_read_already_is_a_variant() -> None:
    rules = TagRules(template="product-{major}_{minor}_{patch}", legacy=())
    tags = [tag(f"product-1_{m}_0", m) for m in range(4)] + [
        tag(f"lite-1_{m}_0", 10 + m) for m in range(3)
    ]
    (lite,) = tag_shapes(inventory(tags, rules))
    assert (lite.shape, lite.kind, lite.key, lite.proposed) == (
        "lite-N_N_N",
        "variant",
        "ignore_tags",
        r"lite\-\d+_\d+_\d+",
    )


@pytest.mark.parametrize(
    ("legacy", "ignore"),
    [
        (
            [r"product\-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)", *DEFAULT_LEGACY],
            [r"lite\-\d+_\d+_\d+"],
        ),
        ([], ["it's-\\d+", 'say "\\d"', "tab\there", "back\\slash"]),
        (["(?P<major>\\d+)\\.(?P<minor>\\d+)"], []),
        ([], []),
    ],
)
def test_toml_snippet_round_trips_through_tomllib(legacy: list[str], ignore: list[str]) -> None:
    text = toml_snippet(legacy, ignore)
    parsed = tomllib.loads(text)
    assert parsed.get("legacy_tags", []) == legacy
    assert parsed.get("ignore_tags", []) == ignore
    assert ("legacy_tags" in parsed, "ignore_tags" in parsed) == (bool(legacy), bool(ignore))


def test_toml_snippet_uses_literal_strings_for_rules() -> None:
    text = toml_snippet([r"rc-(?P<major>\d+)_(?P<minor>\d+)"], [r"nightly-\d+"])
    assert text == (
        "legacy_tags = [\n  'rc-(?P<major>\\d+)_(?P<minor>\\d+)',\n]\n"
        "ignore_tags = [\n  'nightly-\\d+',\n]\n"
    )


# --- the inventory's short paths give what one tag at a time gives -------------------------------

RULE_SETS = [
    TagRules(),
    TagRules(template="product-{major}_{minor}_{patch}", legacy=(RC_RULE, *DEFAULT_LEGACY)),
    TagRules(
        template="v{major}.{minor}.{patch}", ignore=(r"v0\..*", r"\d{4}\.\d+"), legacy=(BETA_RULE,)
    ),
    TagRules(
        legacy=(
            r"(?P<major>\d+)\.(?P<minor>\d+)(?=$)",  # a lookahead: runs on `regex`
            r"(?i)REL-(?P<major>\d+)\.(?P<minor>\d+)",
        )
    ),
]
_PIECES = ["v", "V", "product-", "rc-", "rel-", "REL-", "release-", "1", "0", "01", "12", ".", "_", "-",
           "rc1", "b2", "-rc.1", "+b.7", "x", "2023"]  # fmt: skip


@settings(max_examples=300)
@given(
    st.sampled_from(range(len(RULE_SETS))),
    st.lists(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=7).map("".join), max_size=20),
)
def test_inventory_reads_every_tag_as_classify_does(which: int, names: list[str]) -> None:
    rules = RULE_SETS[which]
    tags = [tag(n, i) for i, n in enumerate(dict.fromkeys(names))]
    inv = inventory(tags, rules)
    for c in inv.classified:
        one = classify(c.tag, rules)
        assert (c.status, c.version, c.reason) == (one.status, one.version, one.reason), c.name
        assert str(c.version) == str(one.version)  # build metadata too
