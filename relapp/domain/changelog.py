"""The per-release changelog built from parsed commits: entries grouped by team, then section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relapp.domain.commits import (
    DEFAULT_ISSUE_PATTERN,
    MAX_SCANNED_CHARS,
    compile_issue_pattern,
    find_issue_keys,
    merged_in,
    parse_fields,
    parse_message,
    revert_outcome,
)
from relapp.domain.gitdata import RawCommit, fast_frozen_init

# Callers that read a commit message alongside its changelog take the parser from here.
__all__ = [
    "DEFAULT_ISSUE_PATTERN",
    "OTHER_TEAM",
    "SECTION_ORDER",
    "CancelledCommit",
    "Changelog",
    "ChangelogBuilder",
    "ChangelogEntry",
    "MergeCommit",
    "RevertPair",
    "Section",
    "Team",
    "build_changelog",
    "compile_issue_pattern",
    "entry_markdown",
    "parse_message",
    "pr_url",
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


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class MergeCommit:
    """A merge commit of the range: listed apart from the entries, folded on the page."""

    sha: str
    short_sha: str
    subject: str
    pr: int | None
    author: str


@dataclass(frozen=True, slots=True)
class CancelledCommit:
    """A commit whose change does not reach the release: a revert pair inside the range, or a
    commit brought in by a merge that such a pair reverted."""

    sha: str
    short_sha: str
    subject: str
    author: str
    merge: bool
    reverts: str | None  # the commit of the range this one reverts
    reverted_by: tuple[str, ...]  # the commits of the range that revert this one
    merged_by: str | None  # the reverted merge that brought it in (it is not reverted itself)


@dataclass(frozen=True, slots=True)
class RevertPair:
    """How cancelled commits are shown: one that was reverted and the revert that cancelled it
    (None: a second revert of a commit already shown), with what a reverted merge brought in."""

    reverted: CancelledCommit
    revert: CancelledCommit | None
    brought_in: tuple[CancelledCommit, ...]


@dataclass(frozen=True)
class Changelog:
    """Every commit of a range, each exactly once: an entry (grouped by team then section), a
    merge, or cancelled."""

    entries: tuple[ChangelogEntry, ...]
    by_team: Mapping[str, tuple[tuple[Section, tuple[ChangelogEntry, ...]], ...]]
    non_conventional_count: int
    merges: tuple[MergeCommit, ...]
    cancelled: tuple[CancelledCommit, ...]
    commit_count: int  # the commits of the range, counted as they arrived (`git rev-list --count`)

    @property
    def merge_count(self) -> int:
        """How many merges (not cancelled) the range holds."""
        return len(self.merges)

    @property
    def cancelled_reverts(self) -> tuple[str, ...]:
        """The shas of the cancelled commits, in the range's order."""
        return tuple(c.sha for c in self.cancelled)

    @property
    def summary(self) -> str:
        """One line: the range's commits and where each went ("142 commits: 120 entries, …")."""
        return (
            f"{_plural(self.commit_count, 'commit')}: "
            f"{_plural(len(self.entries), 'entry', 'entries')}, "
            f"{_plural(len(self.merges), 'merge')}, {len(self.cancelled)} cancelled"
        )

    @property
    def revert_pairs(self) -> tuple[RevertPair, ...]:
        """The cancelled commits as pairs, newest first; each commit is shown once."""
        by_sha = {c.sha: c for c in self.cancelled}
        brought: dict[str, list[CancelledCommit]] = {}
        for c in self.cancelled:
            if c.merged_by is not None:
                brought.setdefault(c.merged_by, []).append(c)
        used: set[str] = set()
        pairs: list[RevertPair] = []
        for c in reversed(self.cancelled):  # oldest first: a commit comes before its reverts
            if c.sha in used or c.merged_by is not None:
                continue
            used.add(c.sha)
            revert = next(
                (by_sha[r] for r in reversed(c.reverted_by) if r in by_sha and r not in used),
                None,
            )
            merged = brought.get(c.sha, [])
            if revert is not None:
                used.add(revert.sha)
                merged = merged + brought.get(revert.sha, [])
            pairs.append(RevertPair(c, revert, tuple(merged)))
        return tuple(reversed(pairs))


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
    whole range (cancelling revert pairs, which may arrive in either order, and what a
    reverted merge brought in). Fed the commits of a range in order, build() returns exactly
    what build_changelog returns for them.
    """

    __slots__ = (
        "_commits",
        "_entries",
        "_findall",
        "_grouped",
        "_merges",
        "_needs_dash",
        "_owners",
        "_reverts",
        "_rx",
        "_sinks",
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
        self._merges: list[MergeCommit] = []
        # Every commit in order (the count, and what cancelling needs: shas, parents, order).
        self._commits: list[RawCommit] = []
        # The position in _commits of each commit that names a revert target, and the target.
        # Most ranges have none, so nothing else is kept per commit for revert pairs.
        self._reverts: dict[int, str] = {}

    def add(self, commit: RawCommit) -> None:
        """Take the next commit of the range (in the range's order) and file its entry."""
        commits = self._commits
        commits.append(commit)
        message = commit.message
        if len(commit.parents) > 1:
            # A merge has no entry, but it can revert or be reverted (`git revert -m`).
            fields = parse_fields(message, all_trailers=False)
            if fields[8] is not None:
                self._reverts[len(commits) - 1] = fields[8]
            sha = commit.sha
            self._merges.append(MergeCommit(sha, sha[:7], fields[9], fields[5], commit.author_name))
            return
        # The entry takes no trailer but co-authors and breaking changes: skip reading the rest.
        ctype, scope, breaking, description, _, pr, co_authors, picked, reverts, subject = (
            parse_fields(message, all_trailers=False)
        )
        if reverts is not None:
            self._reverts[len(commits) - 1] = reverts
            ctype = "revert"  # `Revert "feat: x"` is a revert, whatever it reverted
        files = commit.files
        names = self._owners.get(files)
        if names is None:
            names = self._owners[files] = teams_for(files, self._teams)
        issues: tuple[str, ...] = ()
        findall = self._findall
        if self._needs_dash and "-" not in message:
            pass
        elif findall is not None:
            keys = findall(message, 0, MAX_SCANNED_CHARS)  # as slicing to the cap: no lookbehind
            if keys:
                issues = tuple(keys) if len(keys) == 1 else tuple(dict.fromkeys(keys))
        else:
            issues = find_issue_keys(message, self._rx)
        sha = commit.sha
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
        """The changelog of every commit added so far, each an entry, a merge or cancelled."""
        entries = self._entries
        merges = self._merges
        grouped = self._grouped
        cancelled: tuple[CancelledCommit, ...] = ()
        targets = self._targets() if self._reverts else {}
        # Only a revert whose target is in the range can cancel anything: usually there is none.
        if any(t is not None and t in targets for t in targets.values()):
            gone = self._cancel(targets)
            entries = [e for e in entries if e.sha.lower() not in gone]
            merges = [m for m in merges if m.sha.lower() not in gone]
            cancelled = tuple(gone.values())
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
            merges=tuple(merges),
            cancelled=cancelled,
            commit_count=len(self._commits),
        )

    def _targets(self) -> dict[str, str | None]:
        """Lowercase sha -> revert target (None: not a revert), as effective_commits keys them:
        in first-seen order, a repeated sha keeping its last message's target."""
        reverts = self._reverts
        targets: dict[str, str | None] = {}
        for i, c in enumerate(self._commits):
            targets[c.sha.lower()] = reverts.get(i)
        return targets

    def _cancel(self, targets: Mapping[str, str | None]) -> dict[str, CancelledCommit]:
        """The cancelled commits by lowercase sha, in the range's order."""
        dropped, undone = revert_outcome(targets)
        shas = [c.sha for c in self._commits]
        keys = [s.lower() for s in shas]
        sha_of = dict(zip(keys, shas, strict=True))
        # A merge undone by `git revert -m 1` takes back all it brought in: those commits'
        # changes are not in the release either. Oldest merge first, so a commit brought in by
        # a nested merge that was reverted itself is ascribed to that one.
        merged_by: dict[str, str] = {}
        undone_merges = [m.sha.lower() for m in reversed(self._merges) if m.sha.lower() in undone]
        if undone_merges:
            graph = {
                k: tuple(p.lower() for p in c.parents)
                for k, c in zip(keys, self._commits, strict=True)
            }
            for m in undone_merges:
                for k in merged_in(m, graph):
                    if k not in dropped and k not in merged_by:
                        merged_by[k] = m
        reverted_by: dict[str, list[str]] = {}
        for k in keys:  # the range's order
            t = targets.get(k)
            if t is not None and t in targets:
                reverted_by.setdefault(t, []).append(sha_of[k])
        known: dict[str, ChangelogEntry | MergeCommit] = {e.sha.lower(): e for e in self._entries}
        known.update((m.sha.lower(), m) for m in self._merges)
        gone: dict[str, CancelledCommit] = {}
        for k in keys:
            if k not in dropped and k not in merged_by:
                continue
            c = known[k]
            target = targets.get(k)
            gone[k] = CancelledCommit(
                sha=c.sha,
                short_sha=c.short_sha,
                subject=c.subject,
                author=c.author,
                merge=isinstance(c, MergeCommit),
                reverts=sha_of[target] if target is not None and target in sha_of else None,
                reverted_by=tuple(reverted_by.get(k, ())),
                merged_by=sha_of[merged_by[k]] if k in merged_by else None,
            )
        return gone


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


# Markdown escapes: every character that could start emphasis, code, a link, an autolink, an
# HTML tag or an entity is backslash-escaped, so commit text shows as written: `<script>` stays
# text and `[x](javascript:…)` is no link. A line break inside commit text (a carriage return in
# a subject, a trailer's value) becomes a space, so no text starts a block of its own.
_MD_SPECIAL = str.maketrans({**{c: "\\" + c for c in "\\`*_[]<>&~|"}, "\r": " ", "\n": " "})
# A link destination may not hold spaces, angle brackets or unbalanced parentheses.
_MD_URL = str.maketrans({" ": "%20", "<": "%3C", ">": "%3E", "(": "%28", ")": "%29"})


def _md(text: str) -> str:
    return text.translate(_MD_SPECIAL)


def _md_link(text: str, url: str) -> str:
    return f"[{_md(text)}]({url.translate(_MD_URL)})"


def pr_url(template: str | None, pr: int | None) -> str | None:
    """The link of a PR number, for an http(s) template holding `{pr}`; else None."""
    # str.replace, not str.format: a template is user configuration and may hold other braces.
    if pr is None or not template or not _usable(template, "{pr}"):
        return None
    return template.replace("{pr}", str(pr))


def _usable(template: str | None, placeholder: str) -> bool:
    # As the page links issue keys: only an http(s) URL, so no other scheme reaches an href.
    return bool(
        template and template.startswith(("https://", "http://")) and placeholder in template
    )


def _issue_link(key: str, template: str | None) -> str:
    # str.replace, not str.format: a template is user configuration and may hold other braces.
    # Only an http(s) template links, as on the page: no javascript:, data: or vbscript: href.
    if template and _usable(template, "{key}"):
        return _md_link(key, template.replace("{key}", key))
    return _md(key)


def _pr_ref(pr: int, template: str | None) -> str:
    url = pr_url(template, pr)
    return _md_link(f"#{pr}", url) if url else f"#{pr}"


def entry_markdown(
    entry: ChangelogEntry,
    issue_url_template: str | None = None,
    pr_url_template: str | None = None,
) -> str:
    """Render one entry as a Markdown list item."""
    scope = f"**{_md(entry.scope)}:** " if entry.scope else ""
    refs = [f"`{entry.short_sha}`"]
    if entry.pr is not None:
        refs.append(_pr_ref(entry.pr, pr_url_template))
    refs.extend(_issue_link(k, issue_url_template) for k in entry.issues)
    who = _md(", ".join((entry.author, *entry.co_authors)))
    return f"- {scope}{_md(entry.description)} ({', '.join(refs)}) — {who}"


def _cancelled_markdown(c: CancelledCommit) -> str:
    return f"{_md(c.subject)} (`{c.short_sha}`)"


def to_markdown(
    changelog: Changelog,
    *,
    title: str,
    issue_url_template: str | None = None,
    pr_url_template: str | None = None,
) -> str:
    """Render a changelog as Markdown: a title, a heading per team, a sub-heading per section,
    then the merges and the cancelled commits, so that every commit of the range is named."""
    lines = [f"# {_md(title)}", ""]
    if changelog.commit_count:
        lines += [f"_{changelog.summary}._", ""]
    else:
        lines += ["_No changes._", ""]
    for team, sections in changelog.by_team.items():
        lines += [f"## {_md(team)}", ""]
        for section, entries in sections:
            lines += [f"### {section.value}", ""]
            lines += [entry_markdown(e, issue_url_template, pr_url_template) for e in entries]
            lines.append("")
    if changelog.merges:
        lines += ["## Merges", ""]
        for m in changelog.merges:
            refs = [f"`{m.short_sha}`"]
            if m.pr is not None:
                refs.append(_pr_ref(m.pr, pr_url_template))
            lines.append(f"- {_md(m.subject)} ({', '.join(refs)})")
        lines.append("")
    if changelog.cancelled:
        lines += ["## Cancelled (reverted within this release)", ""]
        short = {c.sha: c.short_sha for c in changelog.cancelled}
        for pair in changelog.revert_pairs:
            first = _cancelled_markdown(pair.reverted)
            if pair.revert is not None:
                line = f"- {first} reverted by {_cancelled_markdown(pair.revert)}"
            elif pair.reverted.reverts is not None:
                target = short.get(pair.reverted.reverts, pair.reverted.reverts[:7])
                line = f"- {first}, which reverts `{target}`"
            else:
                line = f"- {first}"
            if pair.brought_in:
                n = len(pair.brought_in)
                line += f", with the {_plural(n, 'commit')} the merge brought in:"
            lines.append(line)
            lines += [f"  - {_cancelled_markdown(c)}" for c in pair.brought_in]
        lines.append("")
    if changelog.non_conventional_count:
        n = changelog.non_conventional_count
        lines += [f"_{_plural(n, 'commit')} without a conventional-commit type._", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def to_json(changelog: Changelog, *, pr_url_template: str | None = None) -> dict[str, Any]:
    """Return a JSON-serialisable dict of the changelog (entries once, teams refer to shas).

    With a usable `pr_url_template`, entries and merges carry `pr_url` (None without a PR).
    """
    links = _usable(pr_url_template, "{pr}")

    def with_link(item: dict[str, Any], pr: int | None) -> dict[str, Any]:
        if links:
            item["pr_url"] = pr_url(pr_url_template, pr)
        return item

    return {
        "commit_count": changelog.commit_count,
        "entries": [
            with_link(
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
                },
                e.pr,
            )
            for e in changelog.entries
        ],
        "by_team": {
            team: [{"section": s.value, "shas": [e.sha for e in es]} for s, es in sections]
            for team, sections in changelog.by_team.items()
        },
        "non_conventional_count": changelog.non_conventional_count,
        "merge_count": changelog.merge_count,
        "merges": [
            with_link(
                {
                    "sha": m.sha,
                    "short_sha": m.short_sha,
                    "subject": m.subject,
                    "pr": m.pr,
                    "author": m.author,
                },
                m.pr,
            )
            for m in changelog.merges
        ],
        "cancelled": [
            {
                "sha": c.sha,
                "short_sha": c.short_sha,
                "subject": c.subject,
                "author": c.author,
                "merge": c.merge,
                "reverts": c.reverts,
                "reverted_by": list(c.reverted_by),
                "merged_by": c.merged_by,
            }
            for c in changelog.cancelled
        ],
        "cancelled_reverts": list(changelog.cancelled_reverts),
    }
