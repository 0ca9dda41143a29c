"""The per-release changelog built from parsed commits: entries grouped by team, then section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relapp.domain.commits import (
    DEFAULT_ISSUE_PATTERN,
    MAX_SCANNED_CHARS,
    cancelled_shas,
    compile_issue_pattern,
    find_issue_keys,
    parse_fields,
    parse_message,
    revert_target,
)
from relapp.domain.gitdata import RawCommit, fast_frozen_init

# Callers that read a commit message alongside its changelog take the parser from here.
__all__ = [
    "DEFAULT_ISSUE_PATTERN",
    "OTHER_TEAM",
    "SECTION_ORDER",
    "Changelog",
    "ChangelogBuilder",
    "ChangelogEntry",
    "Section",
    "Team",
    "build_changelog",
    "compile_issue_pattern",
    "entry_markdown",
    "parse_message",
    "teams_for",
    "to_json",
    "to_markdown",
]

OTHER_TEAM = "other"


@dataclass(frozen=True, slots=True)
class Team:
    """A team and the path prefixes (directories or files) it owns."""

    name: str
    paths: tuple[str, ...]


def _owns(prefix: str, path: str) -> bool:
    # Directory semantics: `src/api` owns `src/api/x.py` but not `src/apix/y.py`; an empty
    # prefix (or "/") owns the whole tree.
    p = prefix.strip("/")
    return p == "" or path == p or path.startswith(p + "/")


def teams_for(files: Sequence[str], teams: Sequence[Team]) -> tuple[str, ...]:
    """Return the teams (in configured order) whose paths a commit touches, or ("other",)."""
    names = tuple(t.name for t in teams if any(_owns(p, f) for p in t.paths for f in files))
    return names or (OTHER_TEAM,)


class Section(StrEnum):
    """Changelog sections, in the order they are shown."""

    BREAKING = "Breaking changes"
    FEATURES = "Features"
    FIXES = "Fixes"
    PERFORMANCE = "Performance"
    REVERTS = "Reverts"
    OTHER = "Other"


SECTION_ORDER: tuple[Section, ...] = tuple(Section)
_TYPE_SECTION = {
    "feat": Section.FEATURES,
    "fix": Section.FIXES,
    "perf": Section.PERFORMANCE,
    "revert": Section.REVERTS,
}


@fast_frozen_init  # one per commit: the cheaper __init__ shows in a 10,000-commit changelog
@dataclass(frozen=True, slots=True)
class ChangelogEntry:
    """One non-merge commit of a release, as the changelog shows it."""

    sha: str
    short_sha: str
    type: str | None
    scope: str | None
    breaking: bool
    description: str
    subject: str
    pr: int | None
    issues: tuple[str, ...]
    author: str
    author_email: str
    co_authors: tuple[str, ...]
    teams: tuple[str, ...]
    cherry_picked_from: str | None

    @property
    def section(self) -> Section:
        """The section this entry is listed under (breaking wins over its type)."""
        if self.breaking:
            return Section.BREAKING
        return _TYPE_SECTION.get(self.type or "", Section.OTHER)


@dataclass(frozen=True)
class Changelog:
    """All entries of a commit range, and the same entries grouped by team then section."""

    entries: tuple[ChangelogEntry, ...]
    by_team: Mapping[str, tuple[tuple[Section, tuple[ChangelogEntry, ...]], ...]]
    non_conventional_count: int
    merge_count: int
    cancelled_reverts: tuple[str, ...]  # shas of revert pairs that cancelled inside the range


def _group(
    grouped: dict[str, dict[Section, list[ChangelogEntry]]],
) -> dict[str, tuple[tuple[Section, tuple[ChangelogEntry, ...]], ...]]:
    # Teams in configured order (the dict's), sections in display order, empty ones left out.
    return {
        team: tuple(
            (section, tuple(sections[section])) for section in SECTION_ORDER if section in sections
        )
        for team, sections in grouped.items()
        if sections
    }


class ChangelogBuilder:
    """Builds a changelog one commit at a time, so the work can overlap git writing the range.

    add() parses each commit and files its entry right away; build() does only what needs the
    whole range (cancelling revert pairs, which may arrive in either order). Fed the commits
    of a range in order, build() returns exactly what build_changelog returns for them.
    """

    __slots__ = (
        "_entries",
        "_findall",
        "_grouped",
        "_merges",
        "_needs_dash",
        "_owners",
        "_reverters",
        "_rx",
        "_shas",
        "_sinks",
        "_targets",
        "_teams",
    )

    def __init__(self, teams: Sequence[Team], issue_pattern: str = DEFAULT_ISSUE_PATTERN) -> None:
        """Start an empty changelog; raise ValueError when the issue pattern is unusable."""
        rx = compile_issue_pattern(issue_pattern)
        self._rx = rx
        # Without groups findall returns the whole matches, as find_issue_keys collects them.
        self._findall = rx.findall if not rx.groups else None
        # Every match of the default pattern contains "-": a message without one has no key,
        # and the substring test is far cheaper than the regex scan. Only for that pattern.
        self._needs_dash = rx.pattern == DEFAULT_ISSUE_PATTERN
        self._teams = tuple(teams)
        self._owners: dict[tuple[str, ...], tuple[str, ...]] = {}  # few distinct file sets
        team_order = dict.fromkeys([t.name for t in teams] + [OTHER_TEAM])
        # team -> section -> entries, filled as commits arrive; entry order is kept per list.
        self._grouped: dict[str, dict[Section, list[ChangelogEntry]]] = {t: {} for t in team_order}
        self._sinks: dict[tuple[tuple[str, ...], Section], tuple[list[ChangelogEntry], ...]] = {}
        self._entries: list[ChangelogEntry] = []
        self._merges: list[str] = []  # lowercase shas of merge commits
        self._shas: list[str] = []  # every commit's sha, in order: the cancelled list keeps it
        # Lowercase sha -> revert target (None: not a revert), as effective_commits keys them.
        self._targets: dict[str, str | None] = {}
        self._reverters: list[str] = []  # lowercase shas that name a revert target

    def add(self, commit: RawCommit) -> None:
        """Take the next commit of the range (in the range's order) and file its entry."""
        sha = commit.sha
        message = commit.message
        self._shas.append(sha)
        key = sha.lower()
        if len(commit.parents) > 1:
            # A merge has no entry, but it can revert or be reverted (`git revert -m`).
            target = revert_target(message)
            self._targets[key] = target
            if target is not None:
                self._reverters.append(key)
            self._merges.append(key)
            return
        ctype, scope, breaking, description, _, pr, co_authors, picked, reverts, subject = (
            parse_fields(message)
        )
        self._targets[key] = reverts
        if reverts is not None:
            self._reverters.append(key)
            ctype = "revert"  # `Revert "feat: x"` is a revert, whatever it reverted
        names = self._owners.get(commit.files)
        if names is None:
            names = self._owners[commit.files] = teams_for(commit.files, self._teams)
        issues: tuple[str, ...]
        findall = self._findall
        if self._needs_dash and "-" not in message:
            issues = ()
        elif findall is not None:
            issues = tuple(dict.fromkeys(findall(message[:MAX_SCANNED_CHARS])))
        else:
            issues = find_issue_keys(message, self._rx)
        e = ChangelogEntry(
            sha,
            sha[:7],
            ctype,
            scope,
            breaking,
            description,
            subject,  # the same text as commit.subject (CRLF normalising only touches line ends)
            pr,
            issues,
            commit.author_name,
            commit.author_email,
            co_authors,
            names,
            picked,
        )
        self._entries.append(e)
        # As ChangelogEntry.section, without the property call per entry.
        section = Section.BREAKING if breaking else _TYPE_SECTION.get(ctype or "", Section.OTHER)
        # The lists this entry goes to, found once per (teams, section) pair: a range has few.
        lists = self._sinks.get((names, section))
        if lists is None:
            # A name configured twice is one team: the entry is listed under it once.
            grouped = self._grouped
            lists = self._sinks[names, section] = tuple(
                [grouped[team].setdefault(section, []) for team in dict.fromkeys(names)]
            )
        for bucket in lists:
            bucket.append(e)

    def build(self) -> Changelog:
        """The changelog of every commit added so far, revert pairs that cancel left out."""
        targets = self._targets
        dropped: set[str] = set()
        # Only a revert whose target is in the range can cancel anything: usually there is none.
        if any(targets[r] in targets for r in self._reverters):
            dropped = cancelled_shas(targets)
        entries = self._entries
        merge_count = len(self._merges)
        cancelled: tuple[str, ...] = ()
        grouped = self._grouped
        if dropped:
            entries = [e for e in entries if e.sha.lower() not in dropped]
            merge_count = sum(1 for m in self._merges if m not in dropped)
            cancelled = tuple(s for s in self._shas if s.lower() in dropped)
            # Regroup the survivors from scratch: a team may have lost all its entries.
            grouped = {t: {} for t in grouped}
            for e in entries:
                section = e.section
                for team in dict.fromkeys(e.teams):
                    grouped[team].setdefault(section, []).append(e)
        return Changelog(
            entries=tuple(entries),
            by_team=_group(grouped),
            non_conventional_count=sum(1 for e in entries if e.type is None),
            merge_count=merge_count,
            cancelled_reverts=cancelled,
        )


def build_changelog(
    commits: Sequence[RawCommit],
    teams: Sequence[Team],
    issue_pattern: str = DEFAULT_ISSUE_PATTERN,
) -> Changelog:
    """Build the changelog of exactly these commits (the caller's `rev-list <tag> ^<prev>`)."""
    builder = ChangelogBuilder(teams, issue_pattern)
    add = builder.add
    for c in commits:
        add(c)
    return builder.build()


def _issue_link(key: str, template: str | None) -> str:
    # str.replace, not str.format: a template is user configuration and may hold other braces.
    return f"[{key}]({template.replace('{key}', key)})" if template else key


def entry_markdown(entry: ChangelogEntry, issue_url_template: str | None = None) -> str:
    """Render one entry as a Markdown list item."""
    scope = f"**{entry.scope}:** " if entry.scope else ""
    refs = [f"`{entry.short_sha}`"]
    if entry.pr is not None:
        refs.append(f"#{entry.pr}")
    refs.extend(_issue_link(k, issue_url_template) for k in entry.issues)
    who = ", ".join((entry.author, *entry.co_authors))
    return f"- {scope}{entry.description} ({', '.join(refs)}) — {who}"


def to_markdown(changelog: Changelog, *, title: str, issue_url_template: str | None = None) -> str:
    """Render a changelog as Markdown: a title, a heading per team, a sub-heading per section."""
    lines = [f"# {title}", ""]
    if not changelog.entries:
        lines += ["_No changes._", ""]
    for team, sections in changelog.by_team.items():
        lines += [f"## {team}", ""]
        for section, entries in sections:
            lines += [f"### {section.value}", ""]
            lines += [entry_markdown(e, issue_url_template) for e in entries]
            lines.append("")
    if changelog.non_conventional_count:
        n = changelog.non_conventional_count
        lines += [f"_{n} commit{'s' if n != 1 else ''} without a conventional-commit type._", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def to_json(changelog: Changelog) -> dict[str, Any]:
    """Return a JSON-serialisable dict of the changelog (entries once, teams refer to shas)."""
    return {
        "entries": [
            {
                "sha": e.sha,
                "short_sha": e.short_sha,
                "type": e.type,
                "scope": e.scope,
                "breaking": e.breaking,
                "section": e.section.value,
                "description": e.description,
                "subject": e.subject,
                "pr": e.pr,
                "issues": list(e.issues),
                "author": e.author,
                "author_email": e.author_email,
                "co_authors": list(e.co_authors),
                "teams": list(e.teams),
                "cherry_picked_from": e.cherry_picked_from,
            }
            for e in changelog.entries
        ],
        "by_team": {
            team: [{"section": s.value, "shas": [e.sha for e in es]} for s, es in sections]
            for team, sections in changelog.by_team.items()
        },
        "non_conventional_count": changelog.non_conventional_count,
        "merge_count": changelog.merge_count,
        "cancelled_reverts": list(changelog.cancelled_reverts),
    }
