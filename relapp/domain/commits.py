"""Commit-message parsing: conventional type, scope, breaking, PR number, issue keys, reverts."""

from __future__ import annotations

import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from relapp.domain.gitdata import RawCommit

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
_PR_MERGE_RE = re.compile(r"^Merge pull request #(?P<n>\d+) from ")
_MR_SEE_RE = re.compile(r"^See merge request \S*!(?P<n>\d+)\s*$", re.MULTILINE)
_PARAGRAPH_BREAK_RE = re.compile(r"\n[ \t]*\n")
# The start of a trailer line, and whole lines of `Key: value` holding no line break other
# than \n (str.splitlines() breaks at \r, \v, \f, \x1c-\x1e, \x85, \u2028 and \u2029 too).
_TRAILER_KEY_RE = re.compile(r"(?:BREAKING CHANGE|[A-Za-z0-9][A-Za-z0-9-]*):")
_TRAILER_LINES_RE = re.compile(
    r"^(BREAKING CHANGE|[A-Za-z0-9][A-Za-z0-9-]*):([^\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]*)$",
    re.MULTILINE,
)

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
    # The usual shapes, read without splitting the whole message into paragraphs. `last` follows
    # the last empty line; when the text starts with a visible character, the paragraph holding
    # it lies before, so the subject is never the last paragraph. Each shortcut applies only
    # when nothing in `last` is a blank line (no line of spaces and tabs): then `last` is the
    # last paragraph, as _PARAGRAPH_BREAK_RE's split would find it. (str.find, count and
    # startswith parse their arguments slowly; partition, `in` and slices do not.)
    head, blank, last = text.rpartition("\n\n")
    if blank and head and not head[0].isspace():
        # Every line a plain `Key: value` with no line break but \n (which splitlines() would
        # also split at): no line is blank, so this is the last paragraph, read line by line.
        pairs = _TRAILER_LINES_RE.findall(last)
        n = len(pairs)
        if n == 1 and "\n" not in last or n > 1 and n == last.count("\n") + 1:
            return tuple([(key, value.strip()) for key, value in pairs])
        # A first line that is prose (not blank, not folded, not git's -x line, no `Key:`)
        # makes the paragraph body text, provided it is the last one.
        if (
            not last[0].isspace()
            and last[0] != "("
            and _TRAILER_KEY_RE.match(last) is None
            and _PARAGRAPH_BREAK_RE.search(last) is None
        ):
            return ()
    elif "\n" not in text:  # one line: a single paragraph, so no trailer block
        return ()
    return _paragraph_trailers(text)


def _paragraph_trailers(text: str) -> tuple[tuple[str, str], ...]:
    """The trailers of the last paragraph of text (a message without its outer newlines)."""
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
    return ParsedMessage(*parse_fields(message)[:9])


# ParsedMessage's fields in order, then the subject line.
ParsedFields = tuple[
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


def parse_fields(message: str, all_trailers: bool = True) -> ParsedFields:
    """parse_message's fields as a plain tuple, followed by the subject line.

    With all_trailers false, the trailer block is read only when it may hold what the other
    fields take from it (a co-author or a breaking change) and is () otherwise: the changelog
    needs no other trailer, and most messages have neither.
    """
    # A plain tuple: the changelog reads these fields straight into its entry, and building a
    # ParsedMessage per commit in between would cost about as much as parsing the header.
    if "\r" in message:
        message = message.replace("\r\n", "\n")  # messages written on Windows keep their CRs
    first, _, rest = message.partition("\n")
    subject = first.strip()
    trailers: tuple[tuple[str, str], ...] = ()
    # Without text after the first line there is one paragraph, so no trailer block. Trailer
    # keys are ASCII, so lowercasing finds every spelling of the two that matter.
    if rest and (all_trailers or _may_hold_trailers_that_count(rest.lower())):
        trailers = _trailer_block(message)
    m = HEADER_RE.match(subject)
    ctype: str | None = None
    scope: str | None = None
    bang = False
    description = subject
    if m is not None:
        raw_type, raw_scope, raw_bang, raw_desc = m.groups()  # type, scope, bang, desc
        ctype = raw_type.lower()
        if raw_scope is not None:
            scope = raw_scope.strip() or None
        bang = raw_bang is not None
        description = raw_desc.strip()
    # The PR suffix (_PR_SUFFIX_RE): `\s*$` ends the pattern and description is stripped (and
    # has no newline), so a match ends the text and the text ends with ")"; its "(" is the
    # last one, and the `\s*` before it is whitespace that strip() drops anyway. It is also
    # the suffix the subject would match: the description is the subject's tail, and `(…#N)`
    # holds no ": " so it cannot reach back over the header. One reading serves both, and it
    # is plain string work: between that "(" and the final ")", an optional "pull request ",
    # then "#" or "!" and digits (`\d` is str.isdecimal, Unicode's Nd).
    suffix_pr: int | None = None
    if description[-1:] == ")":
        before, paren, inside = description.rpartition("(")
        if paren:
            inside = inside[:-1]
            if inside[:13] == "pull request ":
                inside = inside[13:]
            digits = inside[1:]
            if digits.isdecimal() and inside[0] in "#!":
                suffix_pr = int(digits)
                description = before.strip() or description
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
    pr = suffix_pr
    if subject[:20] == _PR_MERGE_TEXT:
        merged = _PR_MERGE_RE.match(subject)
        if merged is not None:
            pr = int(merged["n"])
    if pr is None and _MR_SEE_TEXT in message:
        see = _MR_SEE_RE.search(message)
        if see is not None:
            pr = int(see["n"])
    return (
        ctype,
        scope,
        breaking,
        description,
        trailers,
        pr,
        co_authors,
        picked["sha"].lower() if picked else None,
        reverts,
        subject,
    )


def _may_hold_trailers_that_count(lowered: str) -> bool:
    """Whether lowercased message text may hold a co-author or breaking-change trailer."""
    return "co-authored-by" in lowered or "breaking" in lowered


def revert_target(message: str) -> str | None:
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
    return find_issue_keys(message, compile_issue_pattern(pattern))


def find_issue_keys(message: str, rx: re.Pattern[str]) -> tuple[str, ...]:
    """The keys a compiled issue pattern finds in a message, unique, in order of appearance."""
    seen: dict[str, None] = {}
    for m in rx.finditer(message[:MAX_SCANNED_CHARS]):
        seen.setdefault(m.group(0), None)
    return tuple(seen)


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
    targets = {c.sha.lower(): revert_target(c.message) for c in commits}
    dropped = cancelled_shas(targets)
    if not dropped:
        # No revert has its target here: every commit is alive and nothing cancels.
        return tuple(commits), ()
    kept = tuple(c for c in commits if c.sha.lower() not in dropped)
    return kept, tuple(c.sha for c in commits if c.sha.lower() in dropped)


def cancelled_shas(targets: Mapping[str, str | None]) -> set[str]:
    """The lowercase shas that cancel, given each commit's revert target (None: not a revert)."""
    return revert_outcome(targets)[0]


def revert_outcome(targets: Mapping[str, str | None]) -> tuple[set[str], set[str]]:
    """(cancelled, undone) lowercase shas, given each commit's revert target (None: not a revert).

    Cancelled holds both halves of every pair that cancels; undone, the subset that an
    effective revert inside the range undid (the other halves are those reverts).
    """
    reverted_by: dict[str, list[str]] = {}
    for sha, target in targets.items():
        if target is not None and target in targets:
            reverted_by.setdefault(target, []).append(sha)
    if not reverted_by:
        return set(), set()

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
    undone: set[str] = set()
    for sha, target in targets.items():
        if not is_alive(sha):
            dropped.add(sha)  # reverted by an effective revert inside the range
            undone.add(sha)
        if target is not None and target in targets and is_alive(sha):
            dropped.add(sha)  # an effective revert whose target is here: the pair cancels
    return dropped, undone


def merged_in(merge: str, parents: Mapping[str, Sequence[str]]) -> set[str]:
    """The commits of a range that a merge brought in: those reachable from its other parents
    but not from its first, walking only the range (`parents`: sha -> its parents).

    Walking only the range is exact: a commit of the range is never reached through one outside
    it, since everything an excluded commit reaches is excluded too.
    """
    first, *others = parents.get(merge, ()) or ("",)
    mainline: set[str] = set()
    stack = [first] if first in parents else []
    while stack:
        cur = stack.pop()
        if cur not in mainline:
            mainline.add(cur)
            stack.extend(p for p in parents[cur] if p in parents and p not in mainline)
    brought: set[str] = set()
    stack = [p for p in others if p in parents and p not in mainline]
    while stack:
        cur = stack.pop()
        if cur not in brought:
            brought.add(cur)
            stack.extend(
                p for p in parents[cur] if p in parents and p not in mainline and p not in brought
            )
    return brought


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
