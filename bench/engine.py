"""Benchmark of relapp's release engine against the bare git commands that fetch the same data.

Builds synthetic repositories with `git fast-import` (10k commits / 500 annotated tags and
100k commits / 5,000 annotated tags by default: one annotated tag every 20 commits, so tags
grow with commits), then times, per size:

- inventory:  versioning.inventory_of(): Workspace.tags() with
              each batch classified while git lists the rest   vs  git for-each-ref (same format)
- next:       tags_merged(head) + versions_of + commits since
              the previous release + next_main_version()       vs  git tag --merged + git log
- changelog:  Workspace.commits(b, [a]) over 10,000 commits
              + build_changelog() with three teams              vs  git log (same flags/format)

and prints the ratio relapp / git (target <= 1.5), how relapp's time grows with size, and the
number of git processes each operation starts. Timing never changes the exit status.

Run: `.venv/bin/python bench/engine.py` (or `make bench`); `--profile` adds a cProfile of
relapp's pure code at the largest size; `--sizes 10000:500,100000:5000` picks sizes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from semver import Version

# `python bench/engine.py` puts bench/ on the path; relapp's package imports config.py from the
# project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relapp import gitops
from relapp.domain.changelog import Changelog, ChangelogBuilder, Team, build_changelog
from relapp.domain.gitdata import RawCommit
from relapp.domain.versioning import (
    DEFAULT_LEGACY,
    Inventory,
    NextVersion,
    TagRules,
    inventory,
    inventory_of,
    next_main_version,
    previous_release,
)
from relapp.gitops.logformat import LOG_OPTIONS, log_format

_T = TypeVar("_T")

RANGE = 10_000  # commits in the changelog range
TEAMS = (
    Team("platform", ("services/api", "services/db")),
    Team("web", ("web",)),
    Team("infra", ("infra", "ci")),
)
ISSUE_PATTERN = r"[A-Z][A-Z0-9]+-\d+"
# A project configured as issue 8's users configure theirs: a split template (it renders the
# same `v1.2.0` names as `v{version}`), two rules of its own after the built-in forms, and an
# ignore rule, so the inventory measures the rule engine's every path.
RULES = TagRules(
    template="v{major}.{minor}.{patch}",
    legacy=(
        *DEFAULT_LEGACY,
        r"product-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)",
        r"rc-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)-(?P<pre>\d+)",
    ),
    ignore=(r"nightly-\d+",),
)
BASELINE = Version(0, 1, 0)
TARGET = 1.5

# The record layout of gitops.Workspace.commits (its token is random per call; ours is fixed
# at the same length so the output size is the same).
_TOKEN = "0123456789abcdef01234567"
LOG_FLAGS = (*LOG_OPTIONS, "--topo-order", f"--format={log_format(_TOKEN)}")
# Same fields as gitops.Workspace.tags.
REF_FORMAT = (
    "%(refname) %(objecttype) %(objectname) %(*objecttype) %(*objectname)"
    " %(taggerdate:unix) %(creatordate:unix)"
).replace(" ", "%1f")


# --------------------------------------------------------------------------- synthetic history

_TYPES = ("feat", "fix", "fix", "perf", "chore", "docs", "refactor", "test", "feat", "fix")
_SCOPES = ("api", "ui", "db", "auth", "ci", "billing", "search")
_WORDS = ("cache", "retry", "login", "export", "timeouts", "pagination", "webhooks", "csv", "sso")
_AUTHORS = tuple(
    (name, f"{name.split()[0].lower()}@example.com")
    for name in (
        "Ada Lovelace",
        "Grace Hopper",
        "Linus Torvalds",
        "Zoë Müller",
        "Ken Thompson",
        "Barbara Liskov",
        "Dennis Ritchie",
        "Margaret Hamilton",
        "Edsger Dijkstra",
        "Frances Allen",
        "Donald Knuth",
        "Radia Perlman",
    )
)
_PATHS = ("services/api", "services/db", "web/app", "infra/terraform", "ci", "docs")
_T0 = 1_600_000_000


def _message(i: int) -> str:
    """A conventional-commit-ish message; the mix of shapes is fixed by i."""
    if i % 50 == 49:
        return f"Merge pull request #{i} from org/topic-{i}\n\nTopic {i}\n"
    if i % 37 == 0:
        return f"Update dependencies for PAY-{i % 900 + 1}\n"  # not conventional
    ctype = _TYPES[i % len(_TYPES)]
    scope = _SCOPES[i % len(_SCOPES)]
    bang = "!" if i % 997 == 0 else ""
    word = _WORDS[i % len(_WORDS)]
    subject = f"{ctype}({scope}){bang}: handle {word} in step {i} (#{10_000 + i})"
    if i % 3 == 0:
        return subject + "\n"
    body = f"The {word} path now copes with case {i}; see OPS-{i % 500 + 1} for the report."
    trailers = [f"Refs: ABC-{i % 4000 + 1}"]
    if i % 5 == 0:
        name, email = _AUTHORS[(i + 3) % len(_AUTHORS)]
        trailers.append(f"Co-authored-by: {name} <{email}>")
    if i % 401 == 0:
        trailers.append(f"BREAKING CHANGE: the {word} option was renamed")
    return f"{subject}\n\n{body}\n\n" + "\n".join(trailers) + "\n"


def _tag_name(k: int) -> str:
    """The k-th release tag: mostly the template `v{version}`, with legacy and odd spellings."""
    major, minor = 1 + k // 50, k % 50
    if k % 97 == 50:
        return f"nightly-{k}"  # an ignore rule takes it
    if k % 89 == 30:
        return f"build-{k}"  # matches no rule: reported as unknown
    if k % 20 == 14:
        return f"product-{major}_{minor}_0"  # the project's own legacy rule
    if k % 41 == 9:
        return f"rc-{major}_{minor}_0-1"  # the project's rule with a pre-release
    if k % 17 == 4:
        return f"{major}.{minor}.0rc1"  # legacy pre-release
    if k % 13 == 3:
        return f"v{major}.{minor}.0-rc.1"  # canonical pre-release
    style = k % 10
    if style == 5:
        return f"{major}.{minor}.0"
    if style == 6:
        return f"release-{major}.{minor}.0"
    if style == 7:
        return f"rel_{major}_{minor}_0"
    if style == 8:
        return f"V{major}.{minor}.0"
    if style == 9:
        return f"v{major}.{minor}"
    return f"v{major}.{minor}.0"


def _path(i: int) -> str:
    # Few, shallow paths: fast-import rewrites every tree on the path for each commit, and
    # deeper/wider trees double the build time without changing what is measured.
    return f"{_PATHS[i % len(_PATHS)]}/f{i % 8}.txt"


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n%s\n" % (len(raw), raw)


def fast_import_stream(commits: int, tags: int) -> tuple[bytes, dict[str, int]]:
    """The fast-import stream of the history, and the commit index each tag names.

    Commit i has mark i+1. Every 50th commit is a merge of a one-commit topic branch (the
    commit just before it), so history is not purely linear. Tag k sits on commit k*step, on
    the main line; the head has step-1 commits after the last tag, so a release is due.
    """
    step = commits // tags
    parts: list[bytes] = []
    for i in range(commits):
        name, email = _AUTHORS[i % len(_AUTHORS)]
        ident = f"{name} <{email}> {_T0 + i * 60} +0000\n".encode()
        path = _path(i)
        head = b"commit refs/heads/main\nmark :%d\nauthor %scommitter %s" % (i + 1, ident, ident)
        parts.append(head + _data(_message(i)))
        if i % 50 == 49:
            # Merge: first parent is the main line (i-2), second the topic commit (i-1).
            parts.append(b"from :%d\nmerge :%d\n" % (i - 1, i))
        elif i % 50 == 48:
            parts.append(b"from :%d\n" % i)  # the topic commit, on top of i-1
        elif i:
            parts.append(b"from :%d\n" % i)
        if i % 50 != 49:
            parts.append(b"M 100644 inline %s\n" % path.encode() + _data(f"{i}"))
            if i % 10 == 1:  # some commits touch two teams
                other = f"{_PATHS[(i + 2) % len(_PATHS)]}/shared.txt"
                parts.append(b"M 100644 inline %s\n" % other.encode() + _data(f"{i}"))
        parts.append(b"\n")
    tag_at: dict[str, int] = {}
    for k in range(tags):
        at = k * step
        name = _tag_name(k)
        tag_at[name] = at
        tagger = f"Release Bot <bot@example.com> {_T0 + at * 60 + 30} +0000\n".encode()
        parts.append(
            b"tag %s\nfrom :%d\ntagger %s" % (name.encode(), at + 1, tagger)
            + _data(f"Release {name}")
        )
    return b"".join(parts), tag_at


@dataclass
class Repo:
    """A built repository: relapp's clone of it, and where things are."""

    commits: int
    tags: int
    ws: gitops.Workspace
    head: str
    range_from: str  # the changelog range is range_to ^range_from
    range_to: str
    range_commits: int
    build_seconds: float
    clone_seconds: float


def build_repo(root: Path, commits: int, tags: int) -> Repo:
    """Fast-import a bare 'remote', clone it the way relapp does, and find the range tags."""
    t0 = time.perf_counter()
    saved_tunables = os.environ.get("GLIBC_TUNABLES")
    stream, tag_at = fast_import_stream(commits, tags)
    remote = gitops.init_bare(root / f"remote-{commits}.git")
    # glibc trims and regrows fast-import's heap around every zlib buffer (about 9 brk calls
    # per commit, 60% of its run time); a top pad stops that. Only for the build: gitops passes
    # the environment on, and the measured git calls must run as they would in production.
    os.environ["GLIBC_TUNABLES"] = "glibc.malloc.top_pad=67108864"
    try:
        gitops.fast_import(remote, stream)
    finally:
        if saved_tunables is None:
            os.environ.pop("GLIBC_TUNABLES", None)
        else:
            os.environ["GLIBC_TUNABLES"] = saved_tunables
    t1 = time.perf_counter()
    ws = gitops.Workspace(root / f"clone-{commits}", str(remote))
    ws.ensure()  # `git clone --no-checkout`: tags end up packed, as in production
    t2 = time.perf_counter()
    head = ws.resolve("main")
    # The changelog range: the last tag back to the tag RANGE commits earlier (or the first).
    by_index = {at: name for name, at in tag_at.items()}
    last = max(by_index)
    first = max(last - RANGE, min(by_index))
    shas = {t.name: t.sha for t in ws.tags()}
    return Repo(
        commits=commits,
        tags=tags,
        ws=ws,
        head=head,
        range_from=shas[by_index[first]],
        range_to=shas[by_index[last]],
        range_commits=last - first,
        build_seconds=t1 - t0,
        clone_seconds=t2 - t1,
    )


# --------------------------------------------------------------------------- operations


def relapp_inventory(repo: Repo) -> Inventory:
    """Tag inventory as the services compute it: one for-each-ref, each batch of tags classified
    while git lists the rest."""
    return inventory_of(repo.ws, RULES)


def _previous_sha(inv: Inventory, reachable: tuple[Version, ...]) -> str:
    prev = previous_release(reachable)
    assert prev is not None
    return inv.tags_for(prev)[0].tag.sha


def relapp_next(repo: Repo, inv: Inventory) -> NextVersion:
    """Next version for main: reachable tags, the commits since the previous release, the rule."""
    reachable = inv.versions_of(repo.ws.tags_merged(repo.head))
    commits = repo.ws.commits(repo.head, [_previous_sha(inv, reachable)])
    return next_main_version(
        reachable=reachable, existing=inv.versions(), commits=commits, baseline=BASELINE
    )


def pure_next(inv: Inventory, names: set[str], commits: list[RawCommit]) -> NextVersion:
    """relapp_next without its two git calls (their output given), to split the time."""
    reachable = inv.versions_of(names)
    _previous_sha(inv, reachable)
    return next_main_version(
        reachable=reachable, existing=inv.versions(), commits=commits, baseline=BASELINE
    )


def relapp_changelog(repo: Repo) -> Changelog:
    """Changelog of the range: one git log, each commit parsed as git writes it, then grouped."""
    builder = ChangelogBuilder(TEAMS, ISSUE_PATTERN)
    repo.ws.commits(repo.range_to, [repo.range_from], on_commit=builder.add)
    return builder.build()


def _git(repo: Repo, *args: str) -> bytes:
    # A bare subprocess on relapp's clone: the floor relapp is measured against.
    return subprocess.run(["git", *args], cwd=repo.ws.path, capture_output=True, check=True).stdout


def git_inventory(repo: Repo) -> bytes:
    """The data the inventory is made from."""
    return _git(repo, "for-each-ref", f"--format={REF_FORMAT}", "refs/tags")


def git_next(repo: Repo, prev_sha: str) -> bytes:
    """The data the next version is made from: reachable tags, commits since the previous one."""
    return _git(repo, "tag", "--merged", repo.head) + _git(
        repo, "log", *LOG_FLAGS, "--end-of-options", repo.head, f"^{prev_sha}", "--"
    )


def git_changelog(repo: Repo) -> bytes:
    """The data the changelog is made from."""
    return _git(
        repo, "log", *LOG_FLAGS, "--end-of-options", repo.range_to, f"^{repo.range_from}", "--"
    )


def medians(fns: Sequence[Callable[[], object]], reps: int) -> list[float]:
    """Median wall time of each fn over reps rounds, after one warm-up round.

    The functions take turns within each round, so a burst of load from elsewhere on the
    machine hits relapp and its git baseline alike instead of skewing the ratio.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, bucket in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def count_git(fn: Callable[[], object]) -> Counter[str]:
    """The git processes fn starts, by subcommand, counted through gitops.on_git_call."""
    seen: Counter[str] = Counter()

    def hook(argv: tuple[str, ...]) -> None:
        seen[argv[0] if argv else "?"] += 1

    before = gitops.git_call_count()
    gitops.on_git_call.append(hook)
    try:
        fn()
    finally:
        gitops.on_git_call.remove(hook)
    assert gitops.git_call_count() - before == sum(seen.values())
    return seen


@dataclass
class Row:
    """One measured operation at one size."""

    commits: int
    tags: int
    op: str
    relapp: float
    pure: float  # the part of `relapp` spent in relapp's pure code (git output given)
    git: float
    calls: Counter[str]
    detail: str

    @property
    def ratio(self) -> float:
        return self.relapp / self.git if self.git else float("inf")


def timed_row(
    repo: Repo,
    op: str,
    relapp: Callable[[], _T],
    pure: Callable[[], object],
    git: Callable[[], object],
    reps: int,
    describe: Callable[[_T], str],
) -> tuple[Row, _T]:
    """Time one operation (relapp whole, its pure part, the git baseline) and count its git calls."""
    t_rel, t_pure, t_git = medians([relapp, pure, git], reps)
    calls = count_git(relapp)
    result = relapp()
    row = Row(repo.commits, repo.tags, op, t_rel, t_pure, t_git, calls, describe(result))
    return row, result


def measure(repo: Repo, reps: int) -> tuple[list[Row], Inventory]:
    """Time the three operations on one repository, relapp and git side by side."""
    ws = repo.ws
    tags = ws.tags()
    inventory_row, inv = timed_row(
        repo,
        "inventory",
        lambda: relapp_inventory(repo),
        lambda: inventory(tags, RULES),
        lambda: git_inventory(repo),
        reps,
        lambda inv: (
            f"{len(inv.classified):,} tags: {len(inv.recognised):,} recognised, "
            f"{len(inv.ignored)} ignored, {len(inv.unknown)} unknown, {len(inv.conflicts)} conflicts"
        ),
    )

    names = ws.tags_merged(repo.head)
    prev_sha = _previous_sha(inv, inv.versions_of(names))
    since = ws.commits(repo.head, [prev_sha])
    next_row, _ = timed_row(
        repo,
        "next version",
        lambda: relapp_next(repo, inv),
        lambda: pure_next(inv, names, since),
        lambda: git_next(repo, prev_sha),
        reps,
        lambda nxt: f"{nxt.previous} -> {nxt.version} ({nxt.bump}), {len(since)} commits since",
    )

    commits = ws.commits(repo.range_to, [repo.range_from])
    changelog_row, _ = timed_row(
        repo,
        "changelog",
        lambda: relapp_changelog(repo),
        lambda: build_changelog(commits, TEAMS, ISSUE_PATTERN),
        lambda: git_changelog(repo),
        reps,
        lambda log: (
            f"{repo.range_commits:,} commits: {len(log.entries):,} entries, "
            f"{log.merge_count} merges, {len(log.by_team)} teams"
        ),
    )
    return [inventory_row, next_row, changelog_row], inv


def profile(repo: Repo, inv: Inventory, top: int) -> str:
    """cProfile of the three relapp operations (git's own time shows as subprocess waits)."""
    out = io.StringIO()
    for label, fn in (
        ("inventory", lambda: relapp_inventory(repo)),
        ("next version", lambda: relapp_next(repo, inv)),
        ("changelog", lambda: relapp_changelog(repo)),
    ):
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
        out.write(f"\n--- profile: {label} at {repo.commits:,} commits (by own time)\n")
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --------------------------------------------------------------------------- report


def _calls(c: Counter[str]) -> str:
    return f"{sum(c.values())} (" + ", ".join(f"{k} {n}" for k, n in sorted(c.items())) + ")"


def report(rows: list[Row], repos: list[Repo]) -> str:
    """The table, the ratios per size, growth between sizes and git process counts."""
    lines = []
    for r in repos:
        lines.append(
            f"built {r.commits:,} commits / {r.tags:,} annotated tags: fast-import "
            f"{r.build_seconds:.2f} s, clone {r.clone_seconds:.2f} s"
        )
    lines.append("")
    head = (
        f"{'commits':>8} {'tags':>6}  {'operation':<13}{'relapp s':>10}{'(pure)':>9}"
        f"{'git s':>9}{'ratio':>7}"
    )
    lines += [head, "-" * len(head)]
    for row in rows:
        lines.append(
            f"{row.commits:>8,} {row.tags:>6,}  {row.op:<13}{row.relapp:>10.4f}{row.pure:>9.4f}"
            f"{row.git:>9.4f}{row.ratio:>7.2f}   {row.detail}"
        )
    lines.append("")
    sizes = sorted({(r.commits, r.tags) for r in rows})
    totals: dict[tuple[int, int], float] = {}
    for size in sizes:
        mine = [r for r in rows if (r.commits, r.tags) == size]
        rel, git = sum(r.relapp for r in mine), sum(r.git for r in mine)
        totals[size] = rel
        verdict = "met" if rel / git <= TARGET else "NOT met"
        lines.append(
            f"total at {size[0]:,} commits / {size[1]:,} tags: relapp {rel:.4f} s, git {git:.4f} s, "
            f"ratio {rel / git:.2f} (target <= {TARGET}: {verdict})"
        )
    rel_all, git_all = sum(r.relapp for r in rows), sum(r.git for r in rows)
    verdict = "met" if rel_all / git_all <= TARGET else "NOT met"
    lines.append(
        f"total over all sizes: ratio {rel_all / git_all:.2f} (target <= {TARGET}: {verdict})"
    )
    lines.append("")
    for small, big in itertools.pairwise(sizes):
        cf, tf = big[0] / small[0], big[1] / small[1]
        lines.append(
            f"growth {small[0]:,} -> {big[0]:,} commits (x{cf:g} commits, x{tf:g} tags; the "
            f"changelog range ~{RANGE:,} commits at both):"
        )
        for op in ("inventory", "next version", "changelog"):
            a = next(r for r in rows if (r.commits, r.tags) == small and r.op == op)
            b = next(r for r in rows if (r.commits, r.tags) == big and r.op == op)
            lines.append(f"  {op:<13} relapp x{b.relapp / a.relapp:.2f}   git x{b.git / a.git:.2f}")
        lines.append(
            f"  {'total':<13} relapp x{totals[big] / totals[small]:.2f}   "
            f"(linear would be at most x{max(cf, tf):g})"
        )
    lines.append("")
    lines.append("git processes per relapp operation:")
    for op in ("inventory", "next version", "changelog"):
        per_size = [r for r in rows if r.op == op]
        counts = {sum(r.calls.values()) for r in per_size}
        same = "same at every size" if len(counts) == 1 else "VARIES with size"
        lines.append(f"  {op:<13} {_calls(per_size[-1].calls)}  — {same}")
    walked = "yes" if "git" in sys.modules else "no"
    lines.append(f"GitPython imported during the run: {walked}")
    return "\n".join(lines)


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        commits, _, tags = item.partition(":")
        c = int(commits)
        sizes.append((c, int(tags) if tags else max(1, c // 20)))
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Build the repositories, measure, print; always exit 0 unless something broke."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="10000:500,100000:5000", help="commits:tags,…")
    parser.add_argument("--reps", type=int, default=7, help="timed rounds (median)")
    parser.add_argument("--profile", action="store_true", help="cProfile relapp at the top size")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repositories")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="relapp-bench-"))
    try:
        rows: list[Row] = []
        repos: list[Repo] = []
        last_inv: Inventory | None = None
        for commits, tags in _parse_sizes(args.sizes):
            print(f"building {commits:,} commits / {tags:,} tags …", file=sys.stderr, flush=True)
            repo = build_repo(root, commits, tags)
            repos.append(repo)
            print(f"measuring {commits:,} …", file=sys.stderr, flush=True)
            measured, last_inv = measure(repo, args.reps)
            rows += measured
        print(report(rows, repos))
        if args.profile and last_inv is not None:
            print(profile(repos[-1], last_inv, top=14))
    finally:
        if args.keep:
            print(f"repositories kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nbench runtime: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
