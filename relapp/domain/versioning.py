"""Tag inventory, legacy adoption, and the next version for main, for a line, and for an rc."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from semver import Version

from relapp.domain.commits import effective_commits, parse_message
from relapp.domain.gitdata import RawCommit, TagRef

# Strict semver (semver.org's recommended regex) without anchors, so a template can wrap it.
# Numeric identifiers forbid leading zeros, so `v01.2.3` never matches the template.
_NUM = r"0|[1-9]\d*"
_PRE_ID = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
SEMVER_PATTERN = (
    rf"(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)

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

_PRE_NORMAL = {"a": "alpha", "b": "beta"}
_PRE_SPLIT_RE = re.compile(r"(?P<token>[A-Za-z]+)[.-]?(?P<n>\d+)")
_GLUED_PRE_RE = re.compile(r"(?:rc|alpha|beta|pre)\d+", re.IGNORECASE)


def _normalise_pre(pre: str) -> str:
    """`rc1`, `rc.1`, `rc-1` -> `rc.1`; `a1` -> `alpha.1`; anything else is kept as written."""
    m = _PRE_SPLIT_RE.fullmatch(pre)
    if m is None:
        return pre
    token = m["token"].lower()
    return f"{_PRE_NORMAL.get(token, token)}.{int(m['n'])}"


class TagStatus(StrEnum):
    """How a tag name was understood."""

    CANONICAL = "canonical"
    LEGACY = "legacy"
    IGNORED = "ignored"
    UNKNOWN = "unknown"


class RuleError(ValueError):
    """A tag template or rule that cannot be used. `key` is the configuration key it came from
    ("tag_template", "legacy_tags" or "ignore_tags"), `index` its position in a list (None for
    the template); the message says what is wrong and what is allowed."""

    def __init__(self, key: str, index: int | None, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.index = index
        self.message = message


@dataclass(frozen=True)
class TagRules:
    """A project's tag template plus the legacy and ignore rules used to adopt old tags."""

    template: str = "v{version}"
    legacy: tuple[str, ...] = DEFAULT_LEGACY
    ignore: tuple[str, ...] = ()
    _canonical: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _legacy: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _ignore: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _suffix_len: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.template.count("{version}") != 1:
            raise ValueError(
                f"The tag template {self.template!r} must contain {{version}} exactly once, "
                "e.g. v{version}."
            )
        prefix, suffix = self.template.split("{version}")
        if any(c in prefix + suffix for c in "{}"):
            raise ValueError(
                f"The tag template {self.template!r} may only use the {{version}} placeholder; "
                "remove the other braces."
            )
        canonical = re.compile(re.escape(prefix) + SEMVER_PATTERN + re.escape(suffix))
        object.__setattr__(self, "_canonical", canonical)
        object.__setattr__(self, "_suffix_len", len(suffix))
        object.__setattr__(self, "_legacy", _compile_all("legacy tag rule", self.legacy))
        object.__setattr__(self, "_ignore", _compile_all("ignore pattern", self.ignore))
        for rx, src in zip(self._legacy, self.legacy, strict=True):
            if not {"major", "minor"} <= set(rx.groupindex):
                raise ValueError(
                    f"The legacy tag rule {src!r} needs named groups (?P<major>…) and (?P<minor>…)."
                )


def _compile_all(what: str, patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise ValueError(
                f"The {what} {p!r} is not a valid regular expression ({exc}); fix the project "
                "configuration."
            ) from exc
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ClassifiedTag:
    """A tag, how it was understood, the version it names (if any) and why."""

    tag: TagRef
    status: TagStatus
    version: Version | None
    reason: str

    @property
    def name(self) -> str:
        """The tag's short name."""
        return self.tag.name


def _has_leading_zero(*parts: str | None) -> bool:
    return any(p is not None and len(p) > 1 and p.startswith("0") for p in parts)


def _match(name: str, rules: TagRules) -> tuple[TagStatus, Version | None, str]:
    """Classify a tag name: canonical, then legacy rules, then ignore patterns, else unknown."""
    m = rules._canonical.fullmatch(name)
    if m is not None:
        if name.isascii():
            # For ASCII text the template's pattern is exactly semver's grammar, so its groups
            # are what Version.parse would find; building directly skips a second regex pass.
            version = Version(
                int(m["major"]), int(m["minor"]), int(m["patch"]), m["pre"], m["build"]
            )
        else:
            # `\d` also matches non-ASCII digits, which semver rejects: keep its error.
            # The template's literal parts are fixed, so the version is the text between them.
            version = Version.parse(name[m.start("major") : m.end() - rules._suffix_len])
        pre = version.prerelease
        if pre is not None and _GLUED_PRE_RE.fullmatch(pre):
            # `v1.2.0-rc1` is valid semver, but `rc10` would sort below `rc2`; read it as
            # `rc.1` like the other hand-made spellings. Canonical means "what the template
            # renders", and the template never renders `rc1`.
            version = version.replace(prerelease=_normalise_pre(pre))
            return (
                TagStatus.LEGACY,
                version,
                f"template form with pre-release {pre!r} read as {version}",
            )
        return TagStatus.CANONICAL, version, f"matches the template {rules.template}"
    problem = ""
    for i, (rx, src) in enumerate(zip(rules._legacy, rules.legacy, strict=True), start=1):
        lm = rx.fullmatch(name)
        if lm is None:
            continue
        groups = lm.groupdict()
        major, minor, patch = groups.get("major"), groups.get("minor"), groups.get("patch")
        pre = groups.get("pre")
        pre_n = _PRE_SPLIT_RE.fullmatch(pre) if pre else None
        if _has_leading_zero(major, minor, patch, pre_n["n"] if pre_n else None):
            problem = "leading zeros are not valid semver"
            continue
        nums = (int(major or 0), int(minor or 0), int(patch or 0))
        if not pre and not groups.get("build"):
            # Three non-negative ints always make valid semver: no text to parse back.
            version = Version(*nums)
        else:
            text = f"{nums[0]}.{nums[1]}.{nums[2]}"
            if pre:
                text += "-" + _normalise_pre(pre)
            if groups.get("build"):
                text += "+" + str(groups["build"])
            try:
                version = Version.parse(text)
            except ValueError:
                problem = f"legacy rule {i} ({src!r}) gives {text!r}, which is not valid semver"
                continue
        return TagStatus.LEGACY, version, f"legacy rule {i} reads it as {version}"
    for rx, src in zip(rules._ignore, rules.ignore, strict=True):
        if rx.fullmatch(name):
            return TagStatus.IGNORED, None, f"matches ignore pattern {src!r}"
    return TagStatus.UNKNOWN, None, problem or "no rule matches this tag name"


def classify(tag: TagRef, rules: TagRules) -> ClassifiedTag:
    """Classify one tag by the project's ordered full-match rules."""
    status, version, reason = _match(tag.name, rules)
    return ClassifiedTag(tag=tag, status=status, version=version, reason=reason)


def parse_tag(name: str, rules: TagRules) -> Version | None:
    """Return the version a tag name stands for (template or legacy form), else None."""
    return _match(name, rules)[1]


def format_tag(version: Version, rules: TagRules) -> str:
    """Render the canonical tag name of a version through the project's template."""
    return rules.template.replace("{version}", str(version))


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


def inventory(tags: Iterable[TagRef], rules: TagRules) -> Inventory:
    """Classify every tag and report versions claimed by tags on different commits."""
    classified = tuple(classify(t, rules) for t in tags)
    recognised = tuple(c for c in classified if c.status in (TagStatus.CANONICAL, TagStatus.LEGACY))
    # Grouped by what Version hashes on (the same grouping as a dict keyed by version_key).
    groups: dict[tuple[int, int, int, str | None], list[ClassifiedTag]] = {}
    for c in recognised:
        assert c.version is not None  # recognised tags always carry a version
        groups.setdefault(_identity(c.version), []).append(c)
    # Only the few groups on several commits are conflicts, so only they are sorted.
    claimed = [
        (version_key(g[0].version), g)  # type: ignore[arg-type]  # recognised: has a version
        for g in groups.values()
        if len(g) > 1 and len({c.tag.sha for c in g}) > 1  # same commit: aliases
    ]
    claimed.sort(key=lambda vg: precedence(vg[0]))
    conflicts = tuple(Conflict(version=v, tags=tuple(g)) for v, g in claimed)
    return Inventory(
        classified=classified,
        recognised=recognised,
        ignored=tuple(c for c in classified if c.status is TagStatus.IGNORED),
        unknown=tuple(c for c in classified if c.status is TagStatus.UNKNOWN),
        conflicts=conflicts,
        by_name={c.tag.name: c for c in classified},
    )


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
