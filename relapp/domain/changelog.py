"""Commit message parsing and the per-release changelog: type, scope, breaking, PR, issues, teams."""

from __future__ import annotations

import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relapp.domain.gitdata import RawCommit, fast_frozen_init

# Conventional-commit header. `\w+` so that `feat`, `Fix` and `wip` all parse; the type is
# lowercased afterwards. Only the subject line is matched: body lines never count as a type
# (commitizen scans every line and gets false positives from quoted messages).
HEADER_RE = re.compile(r"^(?P<type>\w+)(?:\((?P<scope>[^()\r\n]*)\))?(?P<bang>!)?: (?P<desc>.+)$")

# A git trailer: `Key: value`, where the key is a token, plus the one key git itself allows
# a space in. Continuation lines start with whitespace.
_TRAILER_RE = re.compile(r"^(?P<key>BREAKING CHANGE|[A-Za-z0-9][A-Za-z0-9-]*):\s?(?P<value>.*)$")
_CHERRY_RE = re.compile(
    r"^\(cherry picked from commit (?P<sha>[0-9a-fA-F]{40})\)\s*$", re.MULTILINE
)
_REVERTS_RE = re.compile(r"^This reverts commit (?P<sha>[0-9a-fA-F]{40})\b", re.MULTILINE)
# PR numbers: GitHub squash suffix `(#12)`, PSR's `(pull request #12)`, GitLab `(!12)`.
_PR_SUFFIX_RE = re.compile(r"\s*\((?:pull request )?[#!](?P<n>\d+)\)\s*$")
# The same suffix from its "(": that is the text's last "(", as the suffix holds no other.
_PR_SUFFIX_FROM_PAREN_RE = re.compile(r"\((?:pull request )?[#!](?P<n>\d+)\)\s*$")
_PR_MERGE_RE = re.compile(r"^Merge pull request #(?P<n>\d+) from ")
_MR_SEE_RE = re.compile(r"^See merge request \S*!(?P<n>\d+)\s*$", re.MULTILINE)
_PARAGRAPH_BREAK_RE = re.compile(r"\n[ \t]*\n")

# The literal text each regex needs: a substring test is far cheaper than a regex search, and
# most messages have none of these, so the regex only runs where it can match.
_CHERRY_TEXT = "(cherry picked from commit "
_REVERTS_TEXT = "This reverts commit "
_PR_MERGE_TEXT = "Merge pull request #"
_MR_SEE_TEXT = "See merge request "

DEFAULT_ISSUE_PATTERN = r"[A-Z][A-Z0-9]+-\d+"
# A user-configured regex runs in Python's backtracking engine; capping what it reads keeps
# a pathological pattern from spending minutes on a huge squash message.
MAX_SCANNED_CHARS = 64 * 1024
MAX_PATTERN_CHARS = 500

OTHER_TEAM = "other"


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What one commit message says about itself."""

    type: str | None  # lowercased conventional type, None when the subject is not conventional
    scope: str | None
    breaking: bool
    description: str  # the header's description, or the whole subject; PR suffix removed
    trailers: tuple[tuple[str, str], ...]
    pr: int | None
    co_authors: tuple[str, ...]
    cherry_picked_from: str | None  # the first (original) `-x` source sha
    reverts: str | None  # full sha named by `This reverts commit <sha>.`


def _trailer_block(message: str) -> tuple[tuple[str, str], ...]:
    """Parse the last paragraph as git trailers when it is one (the subject never is)."""
    text = message.strip("\n")
    if "\n" not in text:  # one line: a single paragraph, so no trailer block
        return ()
    paragraphs = [p for p in _PARAGRAPH_BREAK_RE.split(text) if p.strip()]
    if len(paragraphs) < 2:
        return ()
    trailers: list[tuple[str, str]] = []
    for line in paragraphs[-1].splitlines():
        if not line.strip():
            continue
        if line[0] in " \t" and trailers:  # folded continuation of the previous value
            key, value = trailers[-1]
            trailers[-1] = (key, f"{value} {line.strip()}")
            continue
        if line.startswith(_CHERRY_TEXT) and _CHERRY_RE.match(line):
            # git appends this inside the trailer block
            continue
        m = _TRAILER_RE.match(line)
        if m is None:
            # Like git: a paragraph with prose in it is body text, not trailers.
            return ()
        key, value = m.group("key", "value")
        trailers.append((key, value.strip()))
    return tuple(trailers)


def parse_message(message: str) -> ParsedMessage:
    """Parse a full commit message (subject, body, trailers) into a ParsedMessage."""
    return ParsedMessage(*_parse(message)[:9])


# ParsedMessage's fields in order, then the subject line.
_Parsed = tuple[
    str | None,
    str | None,
    bool,
    str,
    tuple[tuple[str, str], ...],
    int | None,
    tuple[str, ...],
    str | None,
    str | None,
    str,
]
_BREAKING_KEYS = ("BREAKING CHANGE", "BREAKING-CHANGE")


def _parse(message: str) -> _Parsed:
    # A plain tuple: the changelog reads these fields straight into its entry, and building a
    # ParsedMessage per commit in between would cost about as much as parsing the header.
    if "\r" in message:
        message = message.replace("\r\n", "\n")  # messages written on Windows keep their CRs
    end = message.find("\n")
    subject = (message if end < 0 else message[:end]).strip()
    trailers = _trailer_block(message) if end >= 0 else ()  # one line: no trailer block
    m = HEADER_RE.match(subject)
    ctype: str | None = None
    scope: str | None = None
    bang = False
    description = subject
    if m is not None:
        raw_type, raw_scope, raw_bang, raw_desc = m.group("type", "scope", "bang", "desc")
        ctype = raw_type.lower()
        if raw_scope is not None:
            scope = raw_scope.strip() or None
        bang = raw_bang is not None
        description = raw_desc.strip()
    # The PR suffix (_PR_SUFFIX_RE): `\s*$` ends the pattern and description is stripped (and
    # has no newline), so a match ends the text and the text ends with ")"; its "(" is the
    # last one, and the `\s*` before it is whitespace that strip() drops anyway. It is also
    # the suffix the subject would match: the description is the subject's tail, and `(…#N)`
    # holds no ": " so it cannot reach back over the header. One match serves both.
    suffix = None
    if description.endswith(")"):
        paren = description.rfind("(")
        if paren >= 0:
            suffix = _PR_SUFFIX_FROM_PAREN_RE.match(description, paren)
            if suffix is not None:
                description = description[:paren].strip() or description
    breaking = bang
    co_authors: tuple[str, ...] = ()
    if trailers:
        # One pass instead of a generator per question. Trailer keys are ASCII (_TRAILER_RE),
        # so upper() and lower() keep their length and a length test can go first.
        co: list[str] = []
        for k, v in trailers:
            n = len(k)
            if n == 14:
                if v and k.lower() == "co-authored-by":
                    co.append(v)
            elif n == 15 and not breaking and k.upper() in _BREAKING_KEYS:
                breaking = True
        if co:
            co_authors = tuple(co)
    picked = _CHERRY_RE.search(message) if _CHERRY_TEXT in message else None
    reverts: str | None = None
    if _REVERTS_TEXT in message and (subject.lower().startswith("revert") or ctype == "revert"):
        r = _REVERTS_RE.search(message)
        reverts = r["sha"].lower() if r else None
    # PR number, first source that has one: merge subject, subject suffix, GitLab trailer.
    pr_match = _PR_MERGE_RE.match(subject) if subject.startswith(_PR_MERGE_TEXT) else None
    if pr_match is None:
        pr_match = suffix
    if pr_match is None and _MR_SEE_TEXT in message:
        pr_match = _MR_SEE_RE.search(message)
    return (
        ctype,
        scope,
        breaking,
        description,
        trailers,
        int(pr_match["n"]) if pr_match is not None else None,
        co_authors,
        picked["sha"].lower() if picked else None,
        reverts,
        subject,
    )


def _reverts(message: str) -> str | None:
    """parse_message(message).reverts, without parsing the rest when it cannot be set."""
    # Normalising CRLF cannot create this text (it has no CR or LF), so its absence is final.
    return parse_message(message).reverts if _REVERTS_TEXT in message else None


def compile_issue_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a project's issue-key regex, or raise ValueError with a sentence saying what to fix."""
    if not pattern:
        raise ValueError("The issue key pattern is empty; set it to a regex such as [A-Z]+-\\d+.")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(
            f"The issue key pattern is longer than {MAX_PATTERN_CHARS} characters; shorten it."
        )
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(
            f"The issue key pattern {pattern!r} is not a valid regular expression ({exc}); fix it "
            "in the project configuration."
        ) from exc
    if rx.search("") is not None:
        raise ValueError(
            f"The issue key pattern {pattern!r} matches the empty string; make it require at least "
            "one character, e.g. [A-Z]+-\\d+."
        )
    return rx


def issue_keys(message: str, pattern: str = DEFAULT_ISSUE_PATTERN) -> tuple[str, ...]:
    """Return the issue keys the pattern finds in a message, unique, in order of appearance."""
    return _issue_keys(message, compile_issue_pattern(pattern))


def _issue_keys(message: str, rx: re.Pattern[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for m in rx.finditer(message[:MAX_SCANNED_CHARS]):
        seen.setdefault(m.group(0), None)
    return tuple(seen)


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


def effective_commits(
    commits: Sequence[RawCommit],
) -> tuple[tuple[RawCommit, ...], tuple[str, ...]]:
    """Drop revert pairs that cancel inside the range; return (kept commits, dropped shas).

    A revert cancels with its target when both are in the range. A revert that is itself
    reverted is not effective, so "reapply" chains (T, revert T, revert of that) keep T.
    """
    if not any(_REVERTS_TEXT in c.message for c in commits):
        return tuple(commits), ()  # no revert at all: nothing can cancel
    # Keyed by lowercase sha in first-seen order; a repeated sha keeps its last message.
    targets = {c.sha.lower(): _reverts(c.message) for c in commits}
    dropped = _cancelling(targets)
    if not dropped:
        # No revert has its target here: every commit is alive and nothing cancels.
        return tuple(commits), ()
    kept = tuple(c for c in commits if c.sha.lower() not in dropped)
    return kept, tuple(c.sha for c in commits if c.sha.lower() in dropped)


def _cancelling(targets: Mapping[str, str | None]) -> set[str]:
    """The lowercase shas that cancel, given each commit's revert target (None: not a revert)."""
    reverted_by: dict[str, list[str]] = {}
    for sha, target in targets.items():
        if target is not None and target in targets:
            reverted_by.setdefault(target, []).append(sha)
    if not reverted_by:
        return set()

    alive: dict[str, bool] = {}

    def is_alive(sha: str) -> bool:
        # Iterative DFS: revert chains are short, but a recursive walk has no business in a
        # pure function that may be handed a pathological history.
        stack = [sha]
        while stack:
            cur = stack[-1]
            pending = [r for r in reverted_by.get(cur, ()) if r not in alive]
            if pending:
                for r in pending:
                    if r in stack:  # a cycle cannot come from git; treat the edge as absent
                        alive[r] = True
                    else:
                        stack.append(r)
                continue
            stack.pop()
            alive[cur] = not any(alive[r] for r in reverted_by.get(cur, ()))
        return alive[sha]

    dropped: set[str] = set()
    for sha, target in targets.items():
        if not is_alive(sha):
            dropped.add(sha)  # reverted by an effective revert inside the range
        if target is not None and target in targets and is_alive(sha):
            dropped.add(sha)  # an effective revert whose target is here: the pair cancels
    return dropped


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
        # Without groups findall returns the whole matches, as _issue_keys collects them.
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
            target = _reverts(message)
            self._targets[key] = target
            if target is not None:
                self._reverters.append(key)
            self._merges.append(key)
            return
        ctype, scope, breaking, description, _, pr, co_authors, picked, reverts, subject = _parse(
            message
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
            issues = _issue_keys(message, self._rx)
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
            dropped = _cancelling(targets)
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


class FixPresence(StrEnum):
    """Whether a hotfix commit is also on main, and how we know."""

    SAME_COMMIT = "same commit"  # the very commit is reachable from main
    BY_TRAILER = "by trailer"  # its `cherry picked from commit` source is on main
    BY_PATCH_ID = "by patch id"  # a commit on main has the same `git patch-id --stable`
    MISSING = "missing"


def fix_on_main(
    fixes: Sequence[RawCommit],
    *,
    main_shas: Container[str],
    fix_patch_ids: Mapping[str, str],
    main_patch_ids: Container[str],
) -> dict[str, FixPresence]:
    """For each hotfix commit, say whether main has it: same commit, by -x trailer, by patch id."""
    result: dict[str, FixPresence] = {}
    for fix in fixes:
        picked = _CHERRY_RE.findall(fix.message)  # every hop of a chained -x pick
        patch_id = fix_patch_ids.get(fix.sha)
        if fix.sha in main_shas:
            result[fix.sha] = FixPresence.SAME_COMMIT
        elif any(s.lower() in main_shas for s in picked):
            result[fix.sha] = FixPresence.BY_TRAILER
        elif patch_id is not None and patch_id in main_patch_ids:
            result[fix.sha] = FixPresence.BY_PATCH_ID
        else:
            result[fix.sha] = FixPresence.MISSING
    return result
