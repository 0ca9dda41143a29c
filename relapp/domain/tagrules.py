"""How a tag name maps to a version: the template, the legacy and ignore rules, each checked once
and then matched fast.

A project's rules are checked when they are built: a template or rule that cannot be used raises
`RuleError`, naming the configuration key, the position in its list and what is allowed. They are
then matched in a fixed order, ignore rules first, then the template, then the legacy rules, each
as a full match. Only the rules whose first character can start a name are tried (a dispatch on
the first character). Rules that provably cannot backtrack badly run on Python's `re`; any other
user rule runs on `regex` with a timeout, so a rule can never hang a page.
"""

from __future__ import annotations

import functools
import importlib
import operator
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

import regex
from semver import Version

from relapp.domain.gitdata import TagRef

# --- semver text ---------------------------------------------------------------------------------

# Strict semver (semver.org's recommended regex) without anchors, so a template can wrap it.
# Numeric identifiers forbid leading zeros, so `v01.2.3` never matches the template. The patterns
# are compiled with ASCII, so `\d` is 0-9 only, as semver's grammar says.
_NUM = r"0|[1-9]\d*"
_PRE_ID = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_PRE = rf"{_PRE_ID}(?:\.{_PRE_ID})*"
_BUILD = r"[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*"
SEMVER_PATTERN = (
    rf"(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_PRE}))?(?:\+(?P<build>{_BUILD}))?"
)
_PRE_RE = re.compile(_PRE, re.ASCII)
_BUILD_RE = re.compile(_BUILD, re.ASCII)

# Pre-release spellings seen in hand-made tags: rc1, rc.1, -rc1, .rc1, beta2, a1.
_LEGACY_PRE = r"(?:[-.]?(?P<pre>(?:rc|alpha|beta|pre|a|b)[.-]?\d+))?"
_LEGACY_BUILD = r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"

# Ordered fullmatch rules for tags made before relapp. Groups: major, minor, patch (optional),
# pre (optional), build (optional). Digits are `\d+` on purpose: leading zeros are caught
# after the match so the tag is reported with a reason instead of silently dropped.
DEFAULT_LEGACY: tuple[str, ...] = (
    # v1.2.3, V1.2.3, 1.2.3, 1.2.0rc1, 1.2.0-rc.1, v1.2.0-rc1, 1.2.3+build
    rf"[vV]?(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+){_LEGACY_PRE}{_LEGACY_BUILD}",
    # v1.2, 1.2, 1.2rc1
    rf"[vV]?(?P<major>\d+)\.(?P<minor>\d+){_LEGACY_PRE}",
    # release-1.4.0, release-1.4, release/1.4.0, rel-1.4, release-v1.4.0
    rf"(?:release|rel)[-_/][vV]?(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?{_LEGACY_PRE}",
    # rel_1_4_0, release_1_4
    r"(?:release|rel)_(?P<major>\d+)_(?P<minor>\d+)(?:_(?P<patch>\d+))?",
)

LEGACY_GROUPS = ("major", "minor", "patch", "pre", "build")

_PRE_NORMAL = {"a": "alpha", "b": "beta"}
_PRE_SPLIT_RE = re.compile(r"(?P<token>[A-Za-z]+)[.-]?(?P<n>\d+)", re.ASCII)
_GLUED_PRE_RE = re.compile(r"(?:rc|alpha|beta|pre)\d+", re.IGNORECASE)


def normalise_pre(pre: str) -> str:
    """`rc1`, `rc.1`, `rc-1` -> `rc.1`; `a1` -> `alpha.1`; anything else is kept as written."""
    m = _PRE_SPLIT_RE.fullmatch(pre)
    return pre if m is None else _normalised(m)


def _normalised(split: re.Match[str]) -> str:
    token = split["token"].lower()
    return f"{_PRE_NORMAL.get(token, token)}.{int(split['n'])}"


def _version_factory() -> Callable[[int, int, int, str | None, str | None], Version]:
    """A Version maker that skips semver's argument checks, for parts already checked here.

    Version's __init__ converts and range-checks each part through a dict; tag inventories make
    thousands of versions from digits a regex has matched. The shortcut stores the same five
    slots with plain attribute stores (Version has no __setattr__ of its own; a store costs
    about a third of calling the slot's setter); if semver ever lays out Version differently,
    the self-check below falls back to the ordinary constructor.
    """
    names = ("_major", "_minor", "_patch", "_prerelease", "_build")
    if Version.__setattr__ is not object.__setattr__ or any(
        not hasattr(Version.__dict__.get(n), "__set__") for n in names
    ):
        return Version
    new = Version.__new__

    def make(major: int, minor: int, patch: int, pre: str | None, build: str | None) -> Version:
        v = new(Version)
        v._major = major
        v._minor = minor
        v._patch = patch
        v._prerelease = pre
        v._build = build
        return v

    try:
        sample = make(1, 2, 3, "rc.1", "b.7")
        same = sample == Version(1, 2, 3, "rc.1", "b.7") and str(sample) == "1.2.3-rc.1+b.7"
        same = same and hash(make(1, 2, 3, None, None)) == hash(Version(1, 2, 3))
    except Exception:  # noqa: BLE001 - any surprise means: use the ordinary constructor
        same = False
    return make if same else Version


make_version = _version_factory()


def _identity_factory() -> Callable[[Version], tuple[int, int, int, str | None]]:
    """What a Version hashes and compares on (major, minor, patch, pre-release), read straight
    from its slots when semver lays them out as expected, else through its properties."""
    slots = operator.attrgetter("_major", "_minor", "_patch", "_prerelease")
    try:
        same = slots(Version(1, 2, 3, "rc.1", "b")) == (1, 2, 3, "rc.1")
    except AttributeError:
        same = False
    if same:
        return slots
    return lambda v: (v.major, v.minor, v.patch, v.prerelease)


identity = _identity_factory()


VERSION_SLOT = "\0"  # stands for the version in a reason; NUL is never in a tag or a rule


class TagStatus(StrEnum):
    """How a tag name was understood."""

    CANONICAL = "canonical"
    LEGACY = "legacy"
    IGNORED = "ignored"
    UNKNOWN = "unknown"


class ClassifiedTag(NamedTuple):
    """A tag, how it was understood, the version it names (if any) and why (`reason`).

    A named tuple rather than a frozen dataclass: an inventory makes one per tag, and a tuple
    is made several times faster.
    """

    tag: TagRef
    status: TagStatus
    version: Version | None
    note: str  # the reason, with VERSION_SLOT standing for the version

    @property
    def name(self) -> str:
        """The tag's short name."""
        return self.tag.name

    @property
    def reason(self) -> str:
        """Why the tag was understood this way, in one phrase."""
        if self.version is None or VERSION_SLOT not in self.note:
            return self.note
        return self.note.replace(VERSION_SLOT, str(self.version))


class RuleError(ValueError):
    """A tag template or rule that cannot be used. `key` is the configuration key it came from
    ("tag_template", "legacy_tags" or "ignore_tags"), `index` its position in a list (None for
    the template); the message says what is wrong and what is allowed."""

    def __init__(self, key: str, index: int | None, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.index = index
        self.message = message


# --- templates -----------------------------------------------------------------------------------

_TEMPLATE_ALLOWED = (
    "use {version} once, or {major}, {minor} and {patch} once each in that order with literal "
    "text between them, e.g. v{version} or product-{major}_{minor}_{patch}"
)
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_SPLIT = ("major", "minor", "patch")
MAX_TAG_LEN = 100  # gitops refuses longer tag names (names.MAX_REF_LEN)
_TAG_CHARS = frozenset(string.ascii_letters + string.digits + "._-/")
_TAG_NAMES_ALLOWED = (
    "around the placeholders use letters, digits, '.', '_', '-' and '/', each part starting with "
    "a letter or digit, e.g. v{version} or product-{major}_{minor}_{patch}"
)


def tag_name_problem(name: str) -> str | None:
    """Why relapp would not make `name` a tag, or None: the rule gitops applies before git sees
    a name (relapp.gitops.names.check_ref_syntax), stricter than `git check-ref-format`."""
    if len(name) > MAX_TAG_LEN:
        return f"are longer than {MAX_TAG_LEN} characters"
    for c in name:
        if c not in _TAG_CHARS:
            return (
                "contain a control character" if ord(c) < 32 or ord(c) == 127 else f"contain {c!r}"
            )
    if ".." in name:
        return "contain '..'"
    for part in name.split("/"):
        if not part:
            return "have an empty part between slashes"
        if not part[0].isalnum():
            return f"have a part starting with {part[0]!r}"
        if part.endswith(".lock"):
            return "have a part ending with '.lock'"
        if part.endswith("."):
            return "have a part ending with '.'"
    return None


@dataclass(frozen=True)
class Template:
    """A parsed tag template: `prefix{version}suffix`, or `prefix{major}s1{minor}s2{patch}suffix`."""

    source: str
    literals: tuple[str, ...]  # (prefix, suffix), or (prefix, s1, s2, suffix) when split
    split: bool

    @classmethod
    def parse(cls, text: str) -> Template:
        """Check a template; a RuleError for "tag_template" says what is wrong and what is allowed."""

        def fail(problem: str) -> RuleError:
            return RuleError(
                "tag_template", None, f"The tag template {text!r} {problem}; {_TEMPLATE_ALLOWED}."
            )

        parts = _PLACEHOLDER_RE.split(text)
        literals, names = tuple(parts[0::2]), parts[1::2]
        unknown = [n for n in names if n not in ("version", *_SPLIT)]
        if unknown:
            raise fail(f"has the unknown placeholder {{{unknown[0]}}}")
        if any("{" in lit or "}" in lit for lit in literals):
            raise fail("has a brace that is not part of a placeholder")
        if not names:
            raise fail("has no placeholder")
        if "version" in names:
            if names.count("version") > 1:
                raise fail("uses {version} more than once")
            if len(names) > 1:
                raise fail("mixes {version} with {major}, {minor} or {patch}")
            split = False
        else:
            for n in _SPLIT:
                if names.count(n) > 1:
                    raise fail(f"uses {{{n}}} more than once")
            if "major" not in names:
                raise fail(f"uses {{{names[0]}}} without {{major}}")
            missing = [n for n in _SPLIT if n not in names]
            if missing:
                raise fail(f"has no {{{missing[0]}}}")
            if names != list(_SPLIT):
                raise fail("has {major}, {minor} and {patch} out of order")
            for (a, b), sep in zip(((0, 1), (1, 2)), literals[1:3], strict=True):
                if not sep or sep[0].isdigit():
                    raise fail(
                        f"needs literal text that does not start with a digit between "
                        f"{{{_SPLIT[a]}}} and {{{_SPLIT[b]}}}"
                    )
            split = True
        template = cls(text, literals, split)
        # The longest sample stands for the versions a project reaches, within MAX_TAG_LEN.
        for sample in (
            Version(1, 2, 3),
            Version(1, 2, 3, "rc.1"),
            Version(99999, 99999, 99999, "rc.99"),
        ):
            problem = tag_name_problem(template.render(sample))
            if problem:
                raise RuleError(
                    "tag_template",
                    None,
                    f"The tag template {text!r} would make tag names that {problem}; "
                    f"{_TAG_NAMES_ALLOWED}.",
                )
        return template

    def render(self, version: Version) -> str:
        """The tag name of a version: a split template puts `-pre` and `+build` after the patch."""
        if not self.split:
            prefix, suffix = self.literals
            return f"{prefix}{version}{suffix}"
        prefix, s1, s2, suffix = self.literals
        text = f"{prefix}{version.major}{s1}{version.minor}{s2}{version.patch}"
        if version.prerelease:
            text += f"-{version.prerelease}"
        if version.build:
            text += f"+{version.build}"
        return text + suffix

    def pattern(self, num: str = _NUM) -> str:
        """The regex reading the template's names (groups major, minor, patch, pre, build). A
        split template's patch is optional: `product-1_3` reads as 1.3.0."""
        esc = [re.escape(lit) for lit in self.literals]
        if not self.split:
            body = SEMVER_PATTERN if num == _NUM else SEMVER_PATTERN.replace(_NUM, num)
            return esc[0] + body + esc[1]
        return (
            rf"{esc[0]}(?P<major>{num}){esc[1]}(?P<minor>{num})(?:{esc[2]}(?P<patch>{num}))?"
            rf"(?:-(?P<pre>{_PRE}))?(?:\+(?P<build>{_BUILD}))?{esc[3]}"
        )


# --- which rules may run on `re` -----------------------------------------------------------------
#
# A user rule is `regex` syntax. It runs on Python's faster `re`, without a timeout, only when two
# checks agree: its text uses only constructs both engines read alike (`_plain_syntax`), and its
# parse tree bounds the backtracking (`_Bounds`). Any other rule runs on `regex` with a timeout.

_sre: Any = importlib.import_module("re._parser")  # the parser behind `re` (no public API)

_CLASS_ESCAPES = set("dDwWsS")
_PLAIN_ESCAPES = _CLASS_ESCAPES | set("\\.-_/+*?()[]{}|^$#&~ ")
_QUANTIFIER_RE = re.compile(r"\{(?:\d+(?:,\d*)?|,\d+)\}[?+]?|[*+?][?+]?")
_GROUP_OPEN_RE = re.compile(r"\((?:\?:|\?P<[A-Za-z_]\w*>)?")


def _plain_syntax(pattern: str) -> bool:
    """Whether the pattern uses only literals, simple escapes and classes, groups, `|`,
    quantifiers and `^`/`$`: the part of the syntax that `re` and `regex` read the same way."""
    i = 0
    if pattern.startswith("(?i)"):
        i = 4
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n or pattern[i + 1] not in _PLAIN_ESCAPES:
                return False
            i += 2
        elif c == "[":
            i = _plain_class_end(pattern, i)
            if i < 0:
                return False
        elif c == "(":
            m = _GROUP_OPEN_RE.match(pattern, i)
            if m is None or pattern.startswith("(?", i) and m.end() == i + 1:
                return False
            i = m.end()
        elif c in "{*+?":
            m = _QUANTIFIER_RE.match(pattern, i)
            if m is None:
                return False  # `re` reads a stray `{` as text, `regex` may read fuzzy matching
            i = m.end()
        else:
            i += 1  # literals, `)`, `|`, `.`, `^`, `$`
    return True


def _plain_class_end(pattern: str, start: int) -> int:
    """The index after a character class of literals, ranges and \\d-style escapes, or -1."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):
        i += 1  # a leading `]` is a literal
    while i < len(pattern):
        c = pattern[i]
        if c == "]":
            return i + 1
        if c == "[":
            return -1  # nested sets and [:alpha:] differ between the engines
        if c == "\\":
            if i + 1 >= len(pattern) or pattern[i + 1] not in _PLAIN_ESCAPES:
                return -1
            i += 2
        else:
            i += 1
    return -1


_ASCII_WORD = frozenset(string.ascii_letters + string.digits + "_")
_CATEGORIES = {
    "CATEGORY_DIGIT": frozenset(string.digits),
    "CATEGORY_WORD": _ASCII_WORD,
    "CATEGORY_SPACE": frozenset(" \t\n\r\f\v"),
}
_SINGLE = {"LITERAL", "NOT_LITERAL", "ANY", "IN"}
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}
MAX_ROUTES = 32  # alternative routes through a rule that may still run on `re`
FAST_MAX_LEN = 255  # longer names go through `regex`, with its timeout, for every user rule

Chars = frozenset[str] | None  # None: any character


class _Unbounded(Exception):
    """The pattern has a part whose backtracking the analysis does not bound."""


def _union(a: Chars, b: Chars) -> Chars:
    return None if a is None or b is None else a | b


def _overlap(a: Chars, b: Chars) -> bool:
    if a is None:
        return b is None or bool(b)
    return bool(a) and (b is None or not a.isdisjoint(b))


class _Bounds:
    """First characters and backtracking bound of a pattern, from `re`'s parse tree.

    `first(...)` over-approximates the characters a match can start with. `routes(...)` raises
    `_Unbounded` unless matching time is at most quadratic in the name's length: no
    back-references or lookarounds; every repetition is of one character, or of a body inside
    which the next character always tells what comes (`(?:\\.\\d+)*`: a round starts at each
    `.`); at most one repetition can end at more than one place (`.*` before `-`); at most
    MAX_ROUTES alternative routes.
    """

    def __init__(self, icase: bool) -> None:
        self.icase = icase
        self.ambiguous = 0

    def chars(self, chars: set[str] | frozenset[str], icase: bool) -> frozenset[str]:
        if icase:
            return frozenset(chars) | {c.swapcase() for c in chars if c.isascii()}
        return frozenset(chars)

    @staticmethod
    def scoped(icase: bool, add: int, remove: int) -> bool:
        if add & re.IGNORECASE:
            return True
        return False if remove & re.IGNORECASE else icase

    def item_first(self, op: Any, av: Any, icase: bool) -> tuple[Chars, bool]:
        """(first characters, can match empty) of one parsed item."""
        name = op.name
        if name == "LITERAL":
            return self.chars({chr(av)}, icase), False
        if name in ("NOT_LITERAL", "ANY"):
            return None, False
        if name == "IN":
            return self.set_first(av, icase), False
        if name == "AT":
            return frozenset(), True
        if name == "SUBPATTERN":
            _, add, remove, body = av
            return self.first(body, self.scoped(icase, add, remove))
        if name == "ATOMIC_GROUP":
            return self.first(av, icase)
        if name == "BRANCH":
            first: Chars = frozenset()
            empty = False
            for alt in av[1]:
                f, e = self.first(alt, icase)
                first, empty = _union(first, f), empty or e
            return first, empty
        if name in _REPEATS:
            low, _, body = av
            f, e = self.first(body, icase)
            return f, e or low == 0
        if name in ("ASSERT", "ASSERT_NOT"):
            return frozenset(), True  # consumes nothing: what follows gives the first character
        return None, True  # back-references, conditionals, anything new: any character

    def first(self, items: Any, icase: bool) -> tuple[Chars, bool]:
        """(first characters, can match empty) of a sequence of parsed items."""
        first: Chars = frozenset()
        for op, av in items:
            f, empty = self.item_first(op, av, icase)
            first = _union(first, f)
            if not empty:
                return first, False
        return first, True

    def set_first(self, items: Any, icase: bool) -> Chars:
        chars: set[str] = set()
        for op, av in items:
            name = op.name
            if name == "LITERAL":
                chars.add(chr(av))
            elif name == "RANGE" and av[1] - av[0] <= 256:
                chars.update(chr(c) for c in range(av[0], av[1] + 1))
            elif name == "CATEGORY" and av.name in _CATEGORIES:
                chars.update(_CATEGORIES[av.name])
            else:  # NEGATE, negated categories, wide ranges, anything new
                return None
        return self.chars(chars, icase)

    def routes(self, items: Any, follow: Chars, icase: bool, *, in_loop: bool) -> int:
        """Alternative routes through `items` when `follow` may come next."""
        total = 1
        after = follow
        for op, av in reversed(list(items)):
            total *= self.item_routes(op, av, after, icase, in_loop)
            if total > MAX_ROUTES:
                raise _Unbounded("too many alternative routes")
            f, empty = self.item_first(op, av, icase)
            after = _union(f, after) if empty else f
        return total

    def item_routes(self, op: Any, av: Any, after: Chars, icase: bool, in_loop: bool) -> int:
        name = op.name
        if name in _SINGLE or name == "AT":
            return 1
        if name == "SUBPATTERN":
            _, add, remove, body = av
            return self.routes(body, after, self.scoped(icase, add, remove), in_loop=in_loop)
        if name == "ATOMIC_GROUP":
            return self.routes(av, after, icase, in_loop=in_loop)
        if name == "BRANCH":
            alts = av[1]
            routes = [self.routes(alt, after, icase, in_loop=in_loop) for alt in alts]
            firsts = [self.first(alt, icase) for alt in alts]
            picked = all(not empty for _, empty in firsts) and all(
                not _overlap(a[0], b[0]) for i, a in enumerate(firsts) for b in firsts[i + 1 :]
            )
            if picked:
                return max(routes)  # the next character picks the alternative
            if in_loop:
                raise _Unbounded("overlapping alternatives inside a repetition")
            return sum(routes)
        if name in _REPEATS:
            return self.repeat_routes(av, after, icase, in_loop)
        raise _Unbounded(f"{name} is not analysed")

    def repeat_routes(self, av: Any, after: Chars, icase: bool, in_loop: bool) -> int:
        low, high, body = av
        f, empty = self.first(body, icase)
        if high == 1:  # optional
            routes = self.routes(body, after, icase, in_loop=in_loop)
            if not empty and not _overlap(f, after):
                return routes  # the next character says whether it is there
            if in_loop:
                raise _Unbounded("an optional part with an ambiguous end inside a repetition")
            return routes + 1
        single = len(body) == 1 and body[0][0].name in _SINGLE
        if not single:
            if in_loop:
                raise _Unbounded("a repetition inside a repetition")
            if empty:
                raise _Unbounded("a repetition of something that can be empty")
            # Each round starts with a character its inside cannot take, so rounds are found
            # without backtracking as long as nothing inside is ambiguous.
            self.routes(body, _union(f, after), icase, in_loop=True)
        if low != high and _overlap(f, after):
            self.ambiguous += 1
            if self.ambiguous > 1 or in_loop:
                raise _Unbounded("more than one repetition with an ambiguous end")
        return 1


def analyse(pattern: str) -> tuple[Chars, bool]:
    """(the characters a match can start with, None for any; whether `re` may run it)."""
    if not _plain_syntax(pattern):
        return None, False
    try:
        parsed = _sre.parse(pattern, re.ASCII)
    except Exception:  # noqa: BLE001 - `regex` syntax `re` refuses: any first character
        return None, False
    bounds = _Bounds(bool(parsed.state.flags & re.IGNORECASE))
    try:
        first, _ = bounds.first(parsed, bounds.icase)
    except Exception:  # noqa: BLE001 - a parse tree this code does not know
        return None, False
    try:
        bounds.routes(parsed, frozenset(), bounds.icase, in_loop=False)
    except _Unbounded:
        return first, False
    except Exception:  # noqa: BLE001
        return first, False
    return first, True


# --- rules ---------------------------------------------------------------------------------------

IGNORE_KEY, TEMPLATE_KEY, LEGACY_KEY = "ignore_tags", "tag_template", "legacy_tags"
MATCH_TIMEOUT = 0.05  # seconds one `regex` rule may spend on one tag name
STOP_AFTER = 3  # timeouts of one rule in one inventory before it is no longer tried
_RULE_ALLOWED = (
    "write a regular expression with named groups (?P<major>…) and (?P<minor>…), optionally "
    "(?P<patch>…), (?P<pre>…) and (?P<build>…), that matches whole tag names"
)
_IGNORE_ALLOWED = "write a regular expression that matches whole tag names, e.g. nightly-.*"
_SLOW_ADVICE = (
    "takes too long on some tag names (catastrophic backtracking); simplify it, e.g. avoid "
    "a repetition that can match the same text in several ways, like (a|aa)+"
)


@dataclass(frozen=True, eq=False)
class Rule:
    """One checked rule: where it came from, how it runs, and the reason it gives."""

    key: str  # IGNORE_KEY, TEMPLATE_KEY or LEGACY_KEY
    index: int | None
    source: str
    fast: re.Pattern[str] | None  # runs on `re` (names up to FAST_MAX_LEN unless trusted)
    slow: Any  # a `regex` pattern run with a timeout, or None for relapp's own patterns
    first: Chars
    why: str  # the reason a match gives; VERSION_SLOT stands for the version
    label: str  # "legacy rule 2 ('…')"
    parts: Callable[[Any], tuple[str | None, ...]]  # a match's (major, minor, patch, pre, build)

    def can_start(self, c: str) -> bool:
        return self.first is None or c in self.first


def parts_reader(groupindex: Any) -> Callable[[Any], tuple[str | None, ...]]:
    """Read (major, minor, patch, pre, build) from a match by group number; None for a group
    the pattern does not have. (By number, not name: `groups()` and a picker are both C.)"""
    pick = operator.itemgetter(
        *(groupindex[n] - 1 if n in groupindex else -1 for n in LEGACY_GROUPS)
    )
    return lambda m: pick((*m.groups(), None))


def _probes(source: str) -> list[str]:
    """Names built to make a backtracking pattern take exponential time, if it can."""
    literal = re.match(r"[A-Za-z0-9_/-]*", source)
    prefixes = {"", literal.group() if literal else ""}
    units = ["a", "0", "1", "-", ".", "_", "/", "a1", "1.", "1_", "1-", "a-", "a.", "-1"]
    units += sorted({c for c in source if c.isalnum() or c in "-_./"})[:12]
    out = []
    for prefix in sorted(prefixes):
        for unit in dict.fromkeys(units):
            body = unit * max(1, 36 // len(unit))
            out += [prefix + body + "!", prefix + body]
    return out


def quoted(text: str) -> str:
    """A rule in quotes as the user wrote it (repr() would double every backslash)."""
    return f"'{text}'" if "'" not in text else f'"{text}"' if '"' not in text else repr(text)


@functools.lru_cache(maxsize=1024)
def compile_rule(key: str, index: int, source: str) -> Rule:
    """Check and compile one legacy or ignore rule; RuleError says what is wrong and allowed."""
    allowed = _RULE_ALLOWED if key == LEGACY_KEY else _IGNORE_ALLOWED
    what = "legacy tag rule" if key == LEGACY_KEY else "ignore pattern"

    def fail(problem: str) -> RuleError:
        return RuleError(key, index, f"The {what} {quoted(source)} {problem}; {allowed}.")

    if key == LEGACY_KEY:
        label, why = (
            f"legacy rule {index + 1} ({quoted(source)})",
            f"legacy rule {index + 1} reads it as ",
        )
        why += VERSION_SLOT
    else:
        label, why = f"ignore pattern {quoted(source)}", f"matches ignore pattern {quoted(source)}"
    if source in DEFAULT_LEGACY:  # relapp's own forms: known to run in linear time on `re`
        first, _ = analyse(source)
        fast = re.compile(source, re.ASCII)
        return Rule(
            key, index, source, fast, None, first, why, label, parts_reader(fast.groupindex)
        )
    if not source:
        raise fail("is empty")
    try:
        slow = regex.compile(source, regex.ASCII | regex.V0)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise fail(f"is not a valid regular expression ({exc})") from None
    if key == LEGACY_KEY:
        names = set(slow.groupindex)
        for need in ("major", "minor"):
            if need not in names:
                raise fail(f"has no group named {need}")
        extra = sorted(names - set(LEGACY_GROUPS))
        if extra:
            raise fail(f"has a group named {extra[0]}, which relapp does not read")
    for probe in _probes(source):
        try:
            slow.fullmatch(probe, timeout=MATCH_TIMEOUT)
        except TimeoutError:
            raise fail(_SLOW_ADVICE) from None
    first, bounded = analyse(source)
    on_re = re.compile(source, re.ASCII) if bounded else None
    # Plain syntax numbers groups alike on both engines: one reader serves both.
    return Rule(key, index, source, on_re, slow, first, why, label, parts_reader(slow.groupindex))


# --- matching ------------------------------------------------------------------------------------


class Budget:
    """The timeouts of one inventory: a rule that timed out STOP_AFTER times is skipped after."""

    __slots__ = ("timeouts",)

    def __init__(self) -> None:
        self.timeouts: dict[int, int] = {}


Reading = tuple[TagStatus, Version | None, str]  # status, version, reason (see VERSION_SLOT)
_NO_RULE = "no rule matches this tag name"
_LEADING_ZERO = "leading zeros are not valid semver"
_INTS = {str(i): i for i in range(1000)}  # a dict hit is cheaper than int() on a short text
_TEMPLATE, _LEGACY, _IGNORE = 0, 1, 2
_CODES = {TEMPLATE_KEY: _TEMPLATE, LEGACY_KEY: _LEGACY, IGNORE_KEY: _IGNORE}
_NO_LIMIT = 1 << 62
# One candidate rule as the match loop reads it: kind, `re` fullmatch (or None: `regex` with a
# timeout), the longest name that fullmatch may see, the rule.
_Entry = tuple[int, Callable[[str], "re.Match[str] | None"] | None, int, Rule]


def _entry(rule: Rule) -> _Entry:
    fast = rule.fast.fullmatch if rule.fast is not None else None
    return (_CODES[rule.key], fast, _NO_LIMIT if rule.slow is None else FAST_MAX_LEN, rule)


@dataclass(frozen=True, eq=False)
class Matcher:
    """A project's rules, checked and ordered: ignore rules, the template, the legacy rules."""

    template: Template
    rules: tuple[Rule, ...]
    _loose: re.Pattern[str]  # the template with leading zeros allowed, for a better reason
    _by_first: dict[str, tuple[_Entry, ...]] = field(default_factory=dict)

    def candidates(self, c: str) -> tuple[_Entry, ...]:
        """The rules, in order, whose matches can start with character c."""
        found = self._by_first.get(c)
        if found is None:
            entries = tuple(_entry(r) for r in self.rules if r.can_start(c))
            found = self._by_first.setdefault(c, entries)
        return found

    def read(self, name: str, budget: Budget | None = None) -> Reading:
        """How a tag name is understood: the first rule, in order, that fully matches it."""
        return self._read(name, self.candidates(name[:1]), budget or Budget())

    def classify_all(
        self, tags: Iterable[TagRef], budget: Budget | None = None
    ) -> list[ClassifiedTag]:
        """Each tag with `read` of its name, in order.

        The first candidate rule is tried inline, and a plain X.Y.Z of the template (the usual
        tag of a repository relapp tags) is made on the spot; anything else goes through the
        ordered rules from the second candidate on. Same answers as `read`, fewer calls.
        """
        budget = budget or Budget()
        by_first, candidates, ints, make = self._by_first, self.candidates, _INTS, make_version
        canonical, legacy, ignored = TagStatus.CANONICAL, TagStatus.LEGACY, TagStatus.IGNORED
        new = tuple.__new__
        out: list[ClassifiedTag] = []
        append = out.append
        for tag in tags:
            name = tag.name
            entries = by_first.get(name[:1])
            if entries is None:
                entries = candidates(name[:1])
            if not entries or entries[0][1] is None or len(name) > entries[0][2]:
                append(new(ClassifiedTag, (tag, *self._read(name, entries, budget))))
                continue
            code, fullmatch, _, rule = entries[0]
            m = fullmatch(name)  # type: ignore[misc]  # not None: checked above
            if m is None:
                append(new(ClassifiedTag, (tag, *self._read(name, entries, budget, 1))))
            elif code == _TEMPLATE:
                major, minor, patch, pre, build = m.groups()
                if pre is None and patch is not None:
                    try:
                        version = make(ints[major], ints[minor], ints[patch], None, build)
                    except KeyError:
                        version = make(int(major), int(minor), int(patch), None, build)
                    append(new(ClassifiedTag, (tag, canonical, version, rule.why)))
                else:
                    reading = _template_form(major, minor, patch, pre, build, rule)
                    append(new(ClassifiedTag, (tag, *reading)))
            elif code == _LEGACY:
                parts = rule.parts(m)
                major, minor, patch, pre, build = parts
                read = None
                if not pre and not build:
                    # The usual X.Y[.Z] of small numbers, as _read_legacy makes it first.
                    try:
                        read = make(
                            ints[major or ""], ints[minor or ""], ints[patch or "0"], None, None
                        )
                    except KeyError:
                        pass
                if read is None:
                    read, problem = _read_legacy(parts, rule)
                if read is not None:
                    append(new(ClassifiedTag, (tag, legacy, read, rule.why)))
                else:
                    reading = self._read(name, entries, budget, 1, problem)
                    append(new(ClassifiedTag, (tag, *reading)))
            else:
                append(new(ClassifiedTag, (tag, ignored, None, rule.why)))
        return out

    def _read(
        self,
        name: str,
        entries: tuple[_Entry, ...],
        budget: Budget,
        start: int = 0,
        problem: str = "",
    ) -> Reading:
        for code, fullmatch, limit, rule in entries[start:]:
            if fullmatch is not None and len(name) <= limit:
                m = fullmatch(name)
            else:
                seen = budget.timeouts.get(id(rule), 0)
                if seen >= STOP_AFTER:
                    return (
                        TagStatus.UNKNOWN,
                        None,
                        f"{rule.label} was stopped: too slow on other tags",
                    )
                try:
                    m = rule.slow.fullmatch(name, timeout=MATCH_TIMEOUT)
                except TimeoutError:
                    budget.timeouts[id(rule)] = seen + 1
                    return TagStatus.UNKNOWN, None, f"{rule.label} took too long on this tag"
            if m is None:
                continue
            if code == _TEMPLATE:
                major, minor, patch, pre, build = m.groups()
                return _template_form(major, minor, patch, pre, build, rule)
            if code == _IGNORE:
                return TagStatus.IGNORED, None, rule.why
            version, problem = _read_legacy(rule.parts(m), rule)
            if version is not None:
                return TagStatus.LEGACY, version, rule.why
        if not problem and self._loose.fullmatch(name):
            problem = _LEADING_ZERO
        return TagStatus.UNKNOWN, None, problem or _NO_RULE


def _template_form(
    major: str, minor: str, patch: str | None, pre: str | None, build: str | None, rule: Rule
) -> Reading:
    """A template match with a pre-release, or without a patch number."""
    version = make_version(int(major), int(minor), int(patch or 0), pre, build)
    if pre is not None and _GLUED_PRE_RE.fullmatch(pre):
        # `v1.2.0-rc1` is valid semver, but `rc10` would sort below `rc2`; read it as `rc.1`
        # like the other hand-made spellings. Canonical means "what the template renders", and
        # the template never renders `rc1`.
        version = make_version(
            version.major, version.minor, version.patch, normalise_pre(pre), build
        )
        return (
            TagStatus.LEGACY,
            version,
            f"template form with pre-release {pre!r} read as {VERSION_SLOT}",
        )
    if patch is None:
        return (
            TagStatus.LEGACY,
            version,
            f"template form without a patch number, read as {VERSION_SLOT}",
        )
    return TagStatus.CANONICAL, version, rule.why


def _read_legacy(parts: tuple[str | None, ...], rule: Rule) -> tuple[Version | None, str]:
    """The version a legacy rule's (major, minor, patch, pre, build) give, or (None, why not)."""
    major, minor, patch, pre, build = parts
    if not pre and not build:
        try:  # the usual X.Y[.Z] of small numbers; anything else is judged below
            version = make_version(
                _INTS[major or ""], _INTS[minor or ""], _INTS[patch] if patch else 0, None, None
            )
        except KeyError:
            pass
        else:
            return version, ""
    nums = []
    for key, text in (("major", major or ""), ("minor", minor or ""), ("patch", patch or "0")):
        number = _INTS.get(text)
        if number is None:
            if not (text.isdigit() and text.isascii()):
                return None, f"{rule.label} reads {key} {text!r}, which is not a number"
            number = int(text)
        if len(text) > 1 and text[0] == "0":
            return None, _LEADING_ZERO
        nums.append(number)
    pre, build = pre or None, build or None
    if pre is not None:
        split = _PRE_SPLIT_RE.fullmatch(pre)
        if split is not None:  # rc1, rc.1, b2: normalised to token.N, valid by construction
            if len(split["n"]) > 1 and split["n"][0] == "0":
                return None, _LEADING_ZERO
            pre = _normalised(split)
        elif not _PRE_RE.fullmatch(pre):
            return (
                None,
                f"{rule.label} gives {_text(nums, pre, build)!r}, which is not valid semver",
            )
    if build is not None and not _BUILD_RE.fullmatch(build):
        return None, f"{rule.label} gives {_text(nums, pre, build)!r}, which is not valid semver"
    return make_version(nums[0], nums[1], nums[2], pre, build), ""


def _text(nums: Sequence[int], pre: str | None, build: str | None) -> str:
    return ".".join(map(str, nums)) + (f"-{pre}" if pre else "") + (f"+{build}" if build else "")


@functools.lru_cache(maxsize=256)
def compile_rules(template: str, legacy: tuple[str, ...], ignore: tuple[str, ...]) -> Matcher:
    """Check a project's template and rules (RuleError on the first bad one) and order them."""
    parsed = Template.parse(template)
    pattern = re.compile(parsed.pattern(), re.ASCII)
    own = Rule(
        TEMPLATE_KEY,
        None,
        template,
        pattern,
        None,
        analyse(pattern.pattern)[0],
        f"matches the template {template}",
        f"the template {template}",
        parts_reader(pattern.groupindex),
    )
    rules = (
        *(compile_rule(IGNORE_KEY, i, p) for i, p in enumerate(ignore)),
        own,
        *(compile_rule(LEGACY_KEY, i, p) for i, p in enumerate(legacy)),
    )
    return Matcher(parsed, rules, re.compile(parsed.pattern(r"\d+"), re.ASCII))
