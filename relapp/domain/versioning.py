"""Tag inventory, legacy adoption, and the next version for main, for a line, and for an rc."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from semver import Version

from relapp.domain import tagrules
from relapp.domain.commits import effective_commits, parse_message
from relapp.domain.gitdata import RawCommit, TagRef
from relapp.domain.tagrules import DEFAULT_LEGACY, ClassifiedTag, RuleError, TagStatus

# The tag rules themselves live in relapp.domain.tagrules; their public names are offered here
# too, so callers keep one module for versions and tags.
__all__ = [
    "DEFAULT_LEGACY",
    "Bump",
    "ClassifiedTag",
    "Conflict",
    "Inventory",
    "InventoryBuilder",
    "NextVersion",
    "Refusal",
    "RuleError",
    "TagRules",
    "TagShape",
    "TagSource",
    "TagStatus",
    "Understanding",
    "classify",
    "format_tag",
    "inventory",
    "inventory_of",
    "line_of",
    "next_hotfix_version",
    "next_main_version",
    "next_prerelease",
    "parse_tag",
    "precedence",
    "previous_release",
    "release_kind",
    "tag_shape",
    "tag_shapes",
    "toml_snippet",
    "version_key",
]


@dataclass(frozen=True)
class TagRules:
    """A project's tag template plus the legacy and ignore rules used to adopt old tags.

    Built once per set of rules (the checked form is cached): an invalid template or rule raises
    RuleError naming its key, its position and what is allowed. Ignore rules are checked first,
    then the template, then the legacy rules in order; see relapp.domain.tagrules.
    """

    template: str = "v{version}"
    legacy: tuple[str, ...] = DEFAULT_LEGACY
    ignore: tuple[str, ...] = ()
    _matcher: tagrules.Matcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        legacy, ignore = tuple(self.legacy), tuple(self.ignore)
        object.__setattr__(self, "legacy", legacy)
        object.__setattr__(self, "ignore", ignore)
        object.__setattr__(self, "_matcher", tagrules.compile_rules(self.template, legacy, ignore))


def classify(tag: TagRef, rules: TagRules) -> ClassifiedTag:
    """Classify one tag by the project's ordered full-match rules."""
    return ClassifiedTag(tag, *rules._matcher.read(tag.name))


def parse_tag(name: str, rules: TagRules) -> Version | None:
    """Return the version a tag name stands for (template or legacy form), else None."""
    return rules._matcher.read(name)[1]


def format_tag(version: Version, rules: TagRules) -> str:
    """Render the canonical tag name of a version through the project's template."""
    return rules._matcher.template.render(version)


def version_key(version: Version) -> Version:
    """The identity of a version: build metadata does not make a different version."""
    return version.replace(build=None) if version.build else version


_PreId = tuple[int, int, str]
Precedence = tuple[int | _PreId, ...]


def _pre_id(identifier: str) -> _PreId:
    # Same ordering as semver's _nat_cmp: numeric ids by value (without converting
    # arbitrarily long ones to int) and below alphanumeric ids, which compare as text.
    if not identifier.isdigit():
        return (1, 0, identifier)
    if not identifier.isascii():
        identifier = str(int(identifier))
    normalized = identifier.lstrip("0") or "0"
    return (0, len(normalized), normalized)


def precedence(version: Version) -> Precedence:
    """A sort key that orders versions exactly like semver's compare (build ignored)."""
    pre = version.prerelease
    if not pre:
        # A release sorts above every pre-release of the same X.Y.Z: 1 > 0 in slot 3.
        return (version.major, version.minor, version.patch, 1)
    return (version.major, version.minor, version.patch, 0, *map(_pre_id, pre.split(".")))


def _identity(version: Version) -> tuple[int, int, int, str | None]:
    # What Version hashes on: deduplicating by it matches a set of version_key()s.
    return (version.major, version.minor, version.patch, version.prerelease)


def _unique_sorted(versions: Iterable[Version]) -> tuple[Version, ...]:
    """version_key() of each, deduplicated, ascending by semver precedence."""
    seen: dict[tuple[int, int, int, str | None], Version] = {}
    for v in versions:
        if v.build:
            v = v.replace(build=None)
        seen.setdefault(_identity(v), v)
    return tuple(sorted(seen.values(), key=precedence))


@dataclass(frozen=True, slots=True)
class Conflict:
    """One version claimed by tags on different commits: reported for a person to settle."""

    version: Version
    tags: tuple[ClassifiedTag, ...]

    @property
    def shas(self) -> tuple[str, ...]:
        """The distinct commits claiming this version."""
        return tuple(dict.fromkeys(t.tag.sha for t in self.tags))


@dataclass(frozen=True)
class Inventory:
    """Every tag of a repository, classified, with conflicting versions reported."""

    classified: tuple[ClassifiedTag, ...]
    recognised: tuple[ClassifiedTag, ...]
    ignored: tuple[ClassifiedTag, ...]
    unknown: tuple[ClassifiedTag, ...]
    conflicts: tuple[Conflict, ...]
    by_name: Mapping[str, ClassifiedTag]

    def versions(self) -> tuple[Version, ...]:
        """All recognised versions (prereleases included, conflicted ones too), ascending."""
        return _unique_sorted(t.version for t in self.recognised if t.version is not None)

    def stable_versions(self) -> tuple[Version, ...]:
        """Recognised versions without a prerelease part, ascending."""
        return tuple(v for v in self.versions() if not v.prerelease)

    def version_of(self, name: str) -> Version | None:
        """The version a tag name stands for in this inventory, or None."""
        t = self.by_name.get(name)
        return t.version if t is not None else None

    def versions_of(self, names: Iterable[str]) -> tuple[Version, ...]:
        """The recognised versions among these tag names (e.g. `git tag --merged` output)."""
        by_name = self.by_name
        found = (by_name.get(n) for n in names)
        return _unique_sorted(t.version for t in found if t is not None and t.version is not None)

    def tags_for(self, version: Version) -> tuple[ClassifiedTag, ...]:
        """Every recognised tag naming this version (aliases and conflicting ones)."""
        key = version_key(version)
        triple = (key.major, key.minor, key.patch)
        # The X.Y.Z test is cheap and rejects nearly every tag before semver's compare runs.
        return tuple(
            t
            for t in self.recognised
            if t.version is not None
            and (t.version.major, t.version.minor, t.version.patch) == triple
            and version_key(t.version) == key
        )

    def is_conflicted(self, version: Version) -> bool:
        """Whether tags on different commits claim this version."""
        key = version_key(version)
        return any(c.version == key for c in self.conflicts)

    def understanding(self) -> Understanding:
        """How many tags look like versions (they hold a digit and no ignore rule took them),
        and how many of those relapp reads."""
        has_digit = _DIGIT_RE.search
        version_like = sum(
            1 for c in self.classified if c.status is not TagStatus.IGNORED and has_digit(c.name)
        )
        read = len(self.recognised)  # every version has digits, so all of these count
        return Understanding(version_like, read, version_like - read)


_DIGIT_RE = re.compile(r"[0-9]")


@dataclass(frozen=True, slots=True)
class Understanding:
    """How much of a repository's version-like tags relapp reads; too little refuses a cut."""

    version_like: int  # tags holding a digit that no ignore rule took
    read: int  # recognised among them
    not_understood: int  # version_like - read

    def refusal(self) -> str | None:
        """The sentence that refuses a cut or a preview when relapp reads none, or fewer than
        half, of the tags that look like versions; None when it reads enough (or no tag looks
        like a version, where the baseline applies)."""
        if self.version_like and self.read * 2 < self.version_like:
            return (
                f"{self.not_understood} of {self.version_like} tags are not understood; "
                "see the adoption page."
            )
        return None


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Hold off Python's cycle collector while an inventory builds its objects.

    An inventory makes a few objects per tag, none of them in a reference cycle, and keeps them
    all. Each 700 new objects start a collection that finds nothing (about 40 on 5,000 tags,
    now and then a full one over the whole process); held off, one collection follows instead.
    Measured on 5,000 tags: 5-10% off the median. Reference counting frees as usual meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def inventory(tags: Iterable[TagRef], rules: TagRules) -> Inventory:
    """Classify every tag and report versions claimed by tags on different commits."""
    with _no_cycle_collection():
        tags = tags if isinstance(tags, (list, tuple)) else list(tags)
        # A rule too slow on a few tags is not tried on the rest (one budget for the inventory).
        classified = rules._matcher.classify_all(tags, tagrules.Budget())
        filed = _Filed()
        filed.add(classified)
        return filed.inventory(classified)


class TagSource(Protocol):
    """What lists a repository's tags a batch at a time (relapp.gitops.Workspace does)."""

    def tags(self, on_tags: Callable[[list[TagRef]], None] | None = None) -> list[TagRef]:
        """Every tag, sorted by name, each batch handed to on_tags as soon as it is listed."""
        ...


def inventory_of(source: TagSource, rules: TagRules) -> Inventory:
    """The inventory of a repository's tags, each batch classified while the rest is listed.

    The same inventory as `inventory(source.tags(), rules)`: the tags in name order.
    """
    builder = InventoryBuilder(rules)
    with _no_cycle_collection():
        source.tags(on_tags=builder.add)
        return builder.build()


class InventoryBuilder:
    """Builds an inventory a batch of tags at a time, so classifying overlaps listing the tags.

    add() classifies each batch and files it right away (recognised, ignored or unknown, and by
    version); build() does only what needs every tag: the conflicts and the lookups. The
    inventory lists the tags in name order, as Workspace.tags() does: fed a repository's tags
    in any order, build() returns exactly what `inventory()` returns for them sorted by name (a
    stable sort, so two equal names keep the order they came in). Fed in name order, as git
    lists them, nothing is sorted or classified twice.
    """

    __slots__ = ("_budget", "_classified", "_filed", "_in_order", "_last", "_rules")

    def __init__(self, rules: TagRules) -> None:
        """Start an empty inventory of tags read by these rules."""
        self._rules = rules
        # A rule too slow on a few tags is not tried on the rest (one budget for the inventory).
        self._budget = tagrules.Budget()
        self._classified: list[ClassifiedTag] = []
        self._filed = _Filed()
        self._last = ""  # the name of the last tag added; a tag name is never empty
        self._in_order = True

    def add(self, tags: Sequence[TagRef]) -> None:
        """Classify the next batch of tags and file them."""
        classified = self._rules._matcher.classify_all(tags, self._budget)
        self._classified += classified
        if not self._in_order:
            return
        last = self._last
        for tag in tags:
            name = tag.name
            if name <= last:
                # Out of name order: build() sorts and files everything once all have come.
                self._in_order = False
                return
            last = name
        self._last = last
        self._filed.add(classified)

    def build(self) -> Inventory:
        """The inventory of every tag added, in name order."""
        classified = self._classified
        filed = self._filed
        if not self._in_order:
            classified = sorted(classified, key=_tag_name)
            if self._budget.timeouts:
                # Which tags a slow rule was stopped on depends on the order they were read in.
                tags = [c.tag for c in classified]
                classified = self._rules._matcher.classify_all(tags, tagrules.Budget())
            filed = _Filed()
            filed.add(classified)
        return filed.inventory(classified)


def _tag_name(c: ClassifiedTag) -> str:
    return c.tag.name


_Identity = tuple[int, int, int, str | None]


class _Filed:
    """Classified tags filed in the order they come: the lists and version groups an inventory
    is made of."""

    __slots__ = ("first", "ignored", "more", "recognised", "unknown")

    def __init__(self) -> None:
        self.recognised: list[ClassifiedTag] = []
        self.ignored: list[ClassifiedTag] = []
        self.unknown: list[ClassifiedTag] = []
        # Grouped by what Version hashes on (the same grouping as a dict keyed by version_key);
        # a version's first tag in `first`, the rare later ones in `more`.
        self.first: dict[_Identity, ClassifiedTag] = {}
        self.more: dict[_Identity, list[ClassifiedTag]] = {}

    def add(self, classified: Iterable[ClassifiedTag]) -> None:
        ignored, identity = TagStatus.IGNORED, tagrules.identity
        recognised, ignored_tags, unknown = self.recognised, self.ignored, self.unknown
        first, more = self.first, self.more
        for c in classified:
            version = c.version
            if version is not None:  # canonical or legacy
                recognised.append(c)
                key = identity(version)
                if first.setdefault(key, c) is not c:
                    more.setdefault(key, [first[key]]).append(c)
            elif c.status is ignored:
                ignored_tags.append(c)
            else:
                unknown.append(c)

    def inventory(self, classified: Sequence[ClassifiedTag]) -> Inventory:
        """The inventory of these tags (the ones filed, in the same order)."""
        # Only the few groups on several commits are conflicts, so only they are sorted.
        claimed = [
            (version_key(g[0].version), g)  # type: ignore[arg-type]  # recognised: has a version
            for g in self.more.values()
            if len({c.tag.sha for c in g}) > 1  # same commit: aliases
        ]
        claimed.sort(key=lambda vg: precedence(vg[0]))
        return Inventory(
            classified=tuple(classified),
            recognised=tuple(self.recognised),
            ignored=tuple(self.ignored),
            unknown=tuple(self.unknown),
            conflicts=tuple(Conflict(version=v, tags=tuple(g)) for v, g in claimed),
            by_name={c.tag.name: c for c in classified},
        )


# --- proposals for tags no rule reads -----------------------------------------------------------

_DIGITS_RE = re.compile(r"[0-9]+")
_SHAPE_EXAMPLES = 3
_NUMBER_GROUPS = ("major", "minor", "patch", "pre")


@dataclass(frozen=True, slots=True)
class TagShape:
    """Unknown tags of one shape (each run of digits written N) and the rule proposed for them.

    kind: "legacy" (a rule reading their numbers as versions), "variant" (their numbers are
    mostly versions read already, e.g. `lite-1_4_0` beside `product-1_4_0`: reading them would
    make conflicts, so they are proposed as ignored) or "ignore" (too few or too many numbers to
    be a version).
    """

    shape: str
    count: int
    examples: tuple[str, ...]
    kind: str
    proposed: str

    @property
    def key(self) -> str:
        """The configuration key the proposed rule goes under."""
        return "legacy_tags" if self.kind == "legacy" else "ignore_tags"


def tag_shape(name: str) -> str:
    """`product-8_21_0` -> `product-N_N_N`: each run of ASCII digits becomes N."""
    return _DIGITS_RE.sub("N", name)


def _shape_rule(name: str, groups: Sequence[str | None]) -> str:
    """A pattern of the name's shape: literal text escaped, the i-th run of digits as the i-th
    group (None: `\\d+` without a group)."""
    parts = _DIGITS_RE.split(name)
    out = [re.escape(parts[0])]
    for group, literal in zip(groups, parts[1:], strict=True):
        out.append(rf"(?P<{group}>\d+)" if group else r"\d+")
        out.append(re.escape(literal))
    return "".join(out)


def tag_shapes(inventory: Inventory) -> tuple[TagShape, ...]:
    """The unknown tags grouped by shape, largest group first, each with a proposed rule.

    Two or three runs of digits propose a legacy rule (major, minor, patch); a fourth run is
    read as a numeric pre-release. Fewer or more runs propose an ignore pattern. Shapes are
    judged largest first, each on top of the versions read before it: a shape whose tags
    mostly carry versions already read is a variant, proposed as ignored. Every proposal
    passes TagRules, and matches exactly the tags of its shape.
    """
    by_shape: dict[str, list[ClassifiedTag]] = {}
    for c in inventory.unknown:
        by_shape.setdefault(tag_shape(c.name), []).append(c)
    read = {version_key(c.version) for c in inventory.recognised if c.version is not None}
    shapes = []
    for shape, members in sorted(by_shape.items(), key=lambda item: (-len(item[1]), item[0])):
        sample = members[0].name
        runs = len(_DIGITS_RE.findall(sample))
        examples = tuple(c.name for c in members[:_SHAPE_EXAMPLES])
        ignore = _shape_rule(sample, [None] * runs)
        if not 2 <= runs <= 4:
            shapes.append(TagShape(shape, len(members), examples, "ignore", ignore))
            continue
        legacy = _shape_rule(sample, _NUMBER_GROUPS[:runs])
        versions = [_numbers_version(c.name) for c in members]
        shared = sum(1 for v in versions if v is not None and version_key(v) in read)
        if 2 * shared >= len(members):
            shapes.append(TagShape(shape, len(members), examples, "variant", ignore))
            continue
        read.update(version_key(v) for v in versions if v is not None)
        shapes.append(TagShape(shape, len(members), examples, "legacy", legacy))
    return tuple(shapes)


def _numbers_version(name: str) -> Version | None:
    """The version a shape's legacy rule reads from a name: its first three runs of digits,
    a fourth as the pre-release; None where semver refuses (leading zeros)."""
    runs = _DIGITS_RE.findall(name)
    if any(len(r) > 1 and r[0] == "0" for r in runs):
        return None
    nums = [int(r) for r in runs[:3]] + [0] * (3 - min(len(runs), 3))
    return Version(nums[0], nums[1], nums[2], runs[3] if len(runs) > 3 else None)


def toml_snippet(legacy: Sequence[str] = (), ignore: Sequence[str] = ()) -> str:
    """The TOML lines that set a project's `legacy_tags` and `ignore_tags` (a key whose list is
    empty is left out), in literal strings so backslashes need no escaping.

    `legacy_tags` replaces the built-in forms (DEFAULT_LEGACY) rather than adding to them, so
    pass the whole list the project should have, built-in forms it still needs included.
    """
    lines = []
    for key, rules in (("legacy_tags", legacy), ("ignore_tags", ignore)):
        if rules:
            lines.append(f"{key} = [")
            lines += [f"  {_toml_string(r)}," for r in rules]
            lines.append("]")
    return "\n".join(lines) + ("\n" if lines else "")


def _toml_string(text: str) -> str:
    # A literal string ('...') keeps backslashes as they are; it cannot hold a quote or a
    # control character, which a basic string ("...") escapes instead.
    if "'" not in text and all(ord(c) >= 32 and c != "\x7f" for c in text):
        return f"'{text}'"
    escaped = "".join(
        "\\" + c if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 32 or c == "\x7f" else c
        for c in text
    )
    return f'"{escaped}"'


class Bump(Enum):
    """What the person cutting a release from main asks for."""

    MINOR = "minor"
    MAJOR = "major"


class Refusal(ValueError):
    """A release that must not be made; the message says what to do, `code` says which rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class NextVersion:
    """The version to release, the release it follows, and why."""

    version: Version
    previous: Version | None
    bump: str  # "initial", "minor", "major", "patch"
    breaking_commits: tuple[str, ...]
    notes: tuple[str, ...]


def line_of(version: Version) -> tuple[int, int]:
    """The (major, minor) line a version belongs to."""
    return (version.major, version.minor)


def release_kind(version: Version, previous: Version | None) -> str:
    """Kind of a release: "hotfix" for patch > 0, else "major" or "minor" relative to previous."""
    if version.patch > 0:
        return "hotfix"
    if previous is None:
        return "major" if version.minor == 0 else "minor"
    return "major" if version.major != previous.major else "minor"


def _triple(version: Version) -> tuple[int, int, int]:
    return (version.major, version.minor, version.patch)


def _short(sha: str) -> str:
    return sha[:7]


def _breaking(commits: Sequence[RawCommit]) -> tuple[str, ...]:
    # Same parser and same revert cancelling as the changelog, so bump and notes agree: a
    # breaking change reverted inside the range gives no major.
    kept, _ = effective_commits(commits)
    return tuple(c.sha for c in kept if len(c.parents) <= 1 and parse_message(c.message).breaking)


def previous_release(reachable: Iterable[Version]) -> Version | None:
    """The release a new one from main follows: the highest stable reachable version (never by date)."""
    stable = [v for v in reachable if not v.prerelease]
    return max(stable, key=precedence) if stable else None


def next_main_version(
    *,
    reachable: Iterable[Version],
    existing: Iterable[Version],
    commits: Sequence[RawCommit],
    requested: Bump | None = None,
    reason: str | None = None,
    baseline: Version,
) -> NextVersion:
    """Decide the version of a release cut from main: at least minor, major when breaking.

    `reachable`: versions of recognised tags reachable from the commit being released.
    `existing`: every recognised version in the repository and the database.
    Without a reachable stable release, `baseline` itself is released when no version exists
    at all; otherwise the release is a bump of the baseline (so it never sits below or on
    versions that exist elsewhere in the line structure).
    """
    if requested is Bump.MAJOR and not (reason or "").strip():
        raise Refusal(
            "reason_required", "A major release needs a reason; say why it is a major release."
        )
    if not commits:
        raise Refusal(
            "nothing_new",
            "Nothing changed since the previous release; merge something to main first.",
        )
    # A list, not a set: only the "skipped" note below needs them deduplicated.
    existing_keys = [version_key(v) for v in existing]
    stable_reachable = [version_key(v) for v in reachable if not v.prerelease]
    # Among releases semver's order is the X.Y.Z order; max keeps the first of equals too.
    previous = max(stable_reachable, key=_triple) if stable_reachable else None
    breaking = _breaking(commits)
    notes: list[str] = []

    if previous is None and not existing_keys:
        base = version_key(baseline)
        notes.append(f"No earlier release: starting at the configured baseline {base}.")
        return NextVersion(base, None, "initial", breaking, tuple(notes))

    start = previous if previous is not None else version_key(baseline)
    if previous is None:
        notes.append(
            f"No release is reachable from this commit: bumping from the baseline {start}."
        )
    if breaking:
        bump = "major"
        notes.append("Major: breaking changes in " + ", ".join(_short(s) for s in breaking) + ".")
    else:
        bump = "major" if requested is Bump.MAJOR else "minor"
    if requested is Bump.MAJOR:
        notes.append(f"Major requested: {(reason or '').strip()}")
    candidate = start.bump_major() if bump == "major" else start.bump_minor()

    # A line X.Y is owned as soon as any version of it exists (e.g. rc tags of an early-cut
    # release branch): main skips to the next free minor rather than landing inside it.
    owned = {line_of(v) for v in existing_keys}
    while line_of(candidate) in owned:
        owners = sorted({v for v in existing_keys if line_of(v) == line_of(candidate)})
        notes.append(
            f"Skipped {candidate.major}.{candidate.minor}: already used by "
            + ", ".join(str(v) for v in owners)
            + "."
        )
        candidate = candidate.bump_minor()
    # candidate is a plain X.Y.Z (a bump), so a release is above it iff its X.Y.Z is.
    top = _triple(candidate)
    higher = [v for v in existing_keys if not v.prerelease and _triple(v) > top]
    if higher:
        notes.append(
            f"Higher versions exist on other branches (highest {max(higher, key=_triple)}); "
            "they are not reachable from this commit."
        )
    return NextVersion(candidate, previous, bump, breaking, tuple(notes))


def next_hotfix_version(
    *,
    base: Version,
    existing: Iterable[Version],
    line_previous: Version | None,
    line_previous_contained: bool,
    commits: Sequence[RawCommit],
    force_reason: str | None = None,
    nothing_new: bool = False,
) -> NextVersion:
    """Decide the version of a hotfix on the line of `base`: X.Y.(highest patch of X.Y + 1).

    `line_previous`: the highest version of the line (the previous hotfix, or `base`);
    `line_previous_contained`: whether the commit being tagged contains it (caller asks git).
    `commits`: the fixes going in; a feat or breaking one is refused unless `force_reason`.
    `nothing_new`: the caller found nothing new on the line's branch since `line_previous`.
    """
    base = version_key(base)
    if base.prerelease:
        raise Refusal(
            "base_is_prerelease",
            f"{base} is a pre-release; hotfixes start from a released version.",
        )
    if nothing_new:
        raise Refusal(
            "nothing_new",
            f"Nothing new on the {base.major}.{base.minor} line since {line_previous or base}; "
            "add a fix to the line's branch first.",
        )
    if line_previous is not None and not line_previous_contained:
        raise Refusal(
            "not_cumulative",
            f"This hotfix would not contain {line_previous}, the line's previous release; build "
            "it on the line's release branch so it includes the earlier fixes.",
        )
    notes: list[str] = []
    kept, _ = effective_commits(commits)
    offending = []
    for c in kept:
        if len(c.parents) > 1:
            continue
        parsed = parse_message(c.message)
        if parsed.breaking or parsed.type == "feat":
            offending.append(c.sha)
    forced = (force_reason or "").strip()
    if offending and not forced:
        raise Refusal(
            "not_a_fix",
            "A hotfix line accepts fixes only, but these commits are features or breaking: "
            + ", ".join(_short(s) for s in offending)
            + ". Release them from main, or force the hotfix with a reason.",
        )
    if offending:
        notes.append(
            "Forced despite non-fix commits "
            + ", ".join(_short(s) for s in offending)
            + f": {forced}"
        )

    line = line_of(base)
    same_line = [version_key(v) for v in existing if line_of(v) == line]
    patch = max([base.patch] + [v.patch for v in same_line if not v.prerelease]) + 1
    # A pre-release further up the line (X.Y.P-rc.N, P >= patch) would sit above the hotfix;
    # take its patch number so the hotfix still sorts above everything on the line.
    pre_patches = [v.patch for v in same_line if v.prerelease and v.patch >= patch]
    if pre_patches:
        patch = max(pre_patches)
        notes.append(f"Pre-releases up to {base.major}.{base.minor}.{patch} exist on this line.")
    version = Version(base.major, base.minor, patch)
    return NextVersion(version, line_previous or base, "patch", (), tuple(notes))


_TOKEN_RE = re.compile(r"[0-9A-Za-z-]*[A-Za-z-][0-9A-Za-z-]*")


def next_prerelease(base: Version, existing: Iterable[Version], token: str = "rc") -> Version:
    """Return X.Y.Z-<token>.N with N one more than the highest N of that base and token."""
    if not _TOKEN_RE.fullmatch(token):
        raise ValueError(f"The pre-release token {token!r} must be letters, digits or '-'.")
    final = Version(base.major, base.minor, base.patch)
    highest = 0
    for v in existing:
        v = version_key(v)
        if (v.major, v.minor, v.patch) != (final.major, final.minor, final.patch):
            continue
        if not v.prerelease:
            raise Refusal(
                "already_released",
                f"{final} is already released; a pre-release of it would sort below it.",
            )
        parts = v.prerelease.split(".")
        if parts[0] == token:
            n = parts[1] if len(parts) == 2 else ""
            highest = max(highest, int(n) if n.isdigit() else 0)
    # Built explicitly: bump_prerelease() on a stable version gives X.Y.Z-rc.1 of the *same*
    # X.Y.Z, which sorts below the release it was meant to precede.
    return final.replace(prerelease=f"{token}.{highest + 1}")
