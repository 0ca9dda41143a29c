"""Read models for the release page: its facts, changelog, deployments, decisions, hotfixes, the
fixes' presence on main, and the commits on main a hotfix could pick."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from .. import gitops
from ..domain import changelog as cl
from ..exceptions import NotFound, ServiceError
from ..extensions import db
from ..models import Decision, Deployment, Job, Project, Release
from . import releases as rel
from .cards import Card, card_for

CANDIDATE_TYPES = ("fix", "perf")
COMPARE_BELOW = 8  # "Compare with": the nearest lower versions,
COMPARE_ABOVE = 4  # the nearest higher ones,
COMPARE_LATEST = 8  # and the newest: at most 20, whatever the history holds
LIST_LIMIT = 50  # rows per list of the page (as its live regions show them)
MAX_CANDIDATES = 60
LOCK_WAIT = 10.0  # seconds a page waits for the clone before it shows the list as unavailable


@dataclass(frozen=True)
class Candidate:
    """A commit on main that a hotfix of this release could cherry-pick."""

    sha: str
    short_sha: str
    subject: str
    type: str | None
    breaking: bool
    author: str
    at: datetime
    issues: tuple[str, ...]


@dataclass
class Candidates:
    """Fix commits on main since a release, or the sentence saying why there is no list."""

    commits: list[Candidate] = field(default_factory=list)
    skipped: int = 0  # commits since the release that are not fixes
    error: str | None = None


def hotfix_candidates(project: Project, release: Release, *,
                      limit: int = MAX_CANDIDATES) -> Candidates:
    """Conventional fix / perf commits on main since `release`, newest first (a fetch, then two
    git reads)."""
    if not release.sha or release.state != "tagged":
        return Candidates(error=f"{release.version} is not tagged yet.")
    try:
        ws = rel.workspace(project)
        db.session.commit()  # never hold a transaction while waiting for the clone
        with ws.lock(timeout=LOCK_WAIT):
            ws.ensure()
            # A fix merged a minute ago is the one people come here for: read main as it is now.
            ws.fetch()
            main = ws.resolve(project.main_branch)
            commits = ws.commits(main, [release.sha])
    except gitops.WorkspaceBusy:
        return Candidates(error="The repository is busy with a job; reload in a moment, or paste "
                                "a SHA.")
    except gitops.GitError as exc:
        return Candidates(error=f"git: {exc}")
    found: list[Candidate] = []
    skipped = 0
    issue_rx = _issue_rx(project)
    for commit in commits:
        if len(commit.parents) > 1:
            continue
        parsed = cl.parse_message(commit.message)
        if parsed.type not in CANDIDATE_TYPES or parsed.breaking:
            skipped += 1
            continue
        if len(found) >= limit:
            skipped += 1
            continue
        issues = tuple(m.group(0) for m in issue_rx.finditer(commit.message[:4096])) if issue_rx else ()
        found.append(Candidate(sha=commit.sha, short_sha=commit.sha[:10], subject=commit.subject,
                               type=parsed.type, breaking=parsed.breaking,
                               author=commit.author_name,
                               at=datetime.fromtimestamp(commit.authored, tz=UTC),
                               issues=tuple(dict.fromkeys(issues))))
    return Candidates(commits=found, skipped=skipped)


def _issue_rx(project: Project) -> re.Pattern[str] | None:
    try:
        return cl.compile_issue_pattern(project.issue_key_pattern)
    except ValueError:
        return None


@dataclass
class Fix:
    """One commit of a hotfix, and whether main has it too."""

    entry: cl.ChangelogEntry
    status: str

    @property
    def missing(self) -> bool:
        """True when the fix is not on main yet."""
        return self.status.startswith("missing")


@dataclass
class ReleasePage:
    """Everything the release page shows."""

    project: Project
    release: Release
    changelog: cl.Changelog | None
    since: Release | None
    changelog_error: str | None
    deployments: list[Deployment]
    decisions: list[Decision]
    hotfixes: list[Release]
    jobs: list[Job]
    others: list[Release]  # a bounded choice of releases with a commit, for "Compare with"
    fixes: list[Fix]
    fixes_error: str | None
    card: Card
    since_text: str = ""  # what was typed in "Compare with"
    since_error: str | None = None  # why that is not a release to compare with
    status: int = 200  # the page's status: 400 / 404 when the typed version is bad or unknown


def compare_choices(project: Project, release: Release) -> list[Release]:
    """The releases "Compare with" offers, newest version first: the nearest lower and higher
    versions and the newest ones, those with a commit (three indexed top-N queries, at most 20
    rows, whatever the history holds). Any other version can be typed."""
    version = tuple_(Release.major, Release.minor, Release.patch)
    mine = tuple_(release.major, release.minor, release.patch)
    base = select(Release).where(Release.project_id == project.id, Release.id != release.id,
                                 Release.sha.is_not(None))
    newest_first = (Release.major.desc(), Release.minor.desc(), Release.patch.desc())
    below = db.session.scalars(base.where(version < mine).order_by(*newest_first).limit(COMPARE_BELOW))
    above = db.session.scalars(base.where(version > mine).order_by(
        Release.major, Release.minor, Release.patch).limit(COMPARE_ABOVE))
    latest = db.session.scalars(base.order_by(*newest_first).limit(COMPARE_LATEST))
    found = {r.id: r for rows in (below, above, latest) for r in rows}
    return sorted(found.values(), key=lambda r: (r.major, r.minor, r.patch), reverse=True)


def release_page(project: Project, version: str, *, since: str | None = None,
                 actor: Any = None) -> ReleasePage:
    """The release page's read model; git problems become sentences on the page, not errors."""
    release = rel.get_release(project, version)
    since_text, since_error, status = (since or "").strip()[:100], None, 200
    if since:
        try:
            rel.get_release(project, since)
        except ServiceError as exc:
            # A bad or unknown version is a sentence by the field (400 / 404), and the page
            # shows the changelog since the release it follows.
            since_error, status, since = exc.detail, exc.status, None
    log: cl.Changelog | None = None
    start: Release | None = None
    error: str | None = None
    try:
        log, start = rel.changelog(project, release, since=since)
    except ServiceError as exc:
        error = exc.detail
    fixes: list[Fix] = []
    fixes_error: str | None = None
    if release.kind == "hotfix" and release.state == "tagged" and log is not None:
        try:
            presence = rel.fixes_on_main(project, release)
            own, _ = rel.changelog(project, release) if since else (log, start)
            fixes = [Fix(entry, presence.get(entry.sha, "unknown")) for entry in own.entries]
        except ServiceError as exc:
            fixes_error = exc.detail
    rows = release_rows(release)
    return ReleasePage(project=project, release=release, changelog=log, since=start,
                       changelog_error=error, deployments=rows.deployments,
                       decisions=rows.decisions, hotfixes=rows.hotfixes, jobs=rows.jobs,
                       others=compare_choices(project, release), fixes=fixes,
                       fixes_error=fixes_error,
                       card=card_for(project, release, actor=actor),
                       since_text=since_text, since_error=since_error, status=status)


@dataclass(frozen=True)
class ReleaseRows:
    """A release's own lists, newest first, at most LIST_LIMIT rows each."""

    deployments: list[Deployment]
    decisions: list[Decision]
    hotfixes: list[Release]
    jobs: list[Job]


def release_rows(release: Release) -> ReleaseRows:
    """The release's deployments, decisions, hotfixes and jobs as its page and its live regions
    show them: each list by the indexed release_id, with what its rows show loaded alongside, so
    the page runs the same queries whatever the history holds. The card reads the deployments
    and decisions too: they are handed to the relationships instead of being loaded again."""
    deployments = list(db.session.scalars(
        select(Deployment).where(Deployment.release_id == release.id)
        .options(selectinload(Deployment.environment), selectinload(Deployment.requested_by))
        .order_by(Deployment.id.desc())))
    decisions = list(db.session.scalars(
        select(Decision).where(Decision.release_id == release.id)
        .options(selectinload(Decision.environment), selectinload(Decision.by))
        .order_by(Decision.id.desc())))
    set_committed_value(release, "deployments", deployments[::-1])
    set_committed_value(release, "decisions", decisions[::-1])
    jobs = list(db.session.scalars(select(Job).where(Job.release_id == release.id)
                                   .order_by(Job.id.desc()).limit(LIST_LIMIT)))
    return ReleaseRows(deployments=deployments[:LIST_LIMIT], decisions=decisions[:LIST_LIMIT],
                       hotfixes=rel.hotfixes_of(release)[:LIST_LIMIT], jobs=jobs)


@dataclass
class ChangelogExport:
    """A changelog with the title and file name its downloads use."""

    release: Release
    since: Release | None
    changelog: cl.Changelog
    title: str
    filename: str


@dataclass
class HotfixForm:
    """The start-hotfix form of a release: its line's branch and the candidate commits."""

    release: Release
    branch: str
    candidates: Candidates


def hotfix_form(project: Project, version: str) -> HotfixForm:
    """The hotfix form's read model for `version` (candidates read from a fresh fetch)."""
    release = rel.get_release(project, version)
    branch = project.release_branch_template.format(major=release.major, minor=release.minor)
    return HotfixForm(release=release, branch=branch, candidates=hotfix_candidates(project, release))


def changelog_export(project: Project, version: str, *, since: str | None = None) -> ChangelogExport:
    """A release's changelog for download (Markdown or JSON)."""
    release = rel.get_release(project, version)
    log, start = rel.changelog(project, release, since=since)
    title = f"{project.name} {release.version}" + (f" (since {start.version})" if start else "")
    name = f"{project.key}-{release.version}" + (f"-since-{start.version}" if since and start else "")
    return ChangelogExport(release=release, since=start, changelog=log, title=title, filename=name)


@dataclass
class ChangelogTeam:
    """Every entry of one team in a release's changelog: what "show all" loads on demand."""

    release: Release
    since: Release | None
    team: str
    sections: tuple[tuple[cl.Section, tuple[cl.ChangelogEntry, ...]], ...]

    @property
    def count(self) -> int:
        """The team's entries."""
        return sum(len(entries) for _section, entries in self.sections)


def changelog_team(project: Project, version: str, team: str, *,
                   since: str | None = None) -> ChangelogTeam:
    """One team's part of a release's changelog, whole (a 404 with a sentence for a team the
    changelog does not name)."""
    release = rel.get_release(project, version)
    log, start = rel.changelog(project, release, since=since)
    if team not in log.by_team:
        raise NotFound(f"The changelog of {release.version} has no entries of a team '{team[:64]}'.")
    return ChangelogTeam(release=release, since=start, team=team, sections=log.by_team[team])
