"""Read models for the release page: its facts, changelog, deployments, decisions, hotfixes, the
fixes' presence on main, and the commits on main a hotfix could pick."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from .. import gitops
from ..domain import changelog as cl
from ..exceptions import ServiceError
from ..extensions import db
from ..models import Decision, Deployment, Job, Project, Release
from . import releases as rel
from .cards import Card, card_for

CANDIDATE_TYPES = ("fix", "perf")
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
    others: list[Release]  # releases with a commit, for the "since" selector
    fixes: list[Fix]
    fixes_error: str | None
    card: Card


def release_page(project: Project, version: str, *, since: str | None = None,
                 actor: Any = None) -> ReleasePage:
    """The release page's read model; git problems become sentences on the page, not errors."""
    release = rel.get_release(project, version)
    if since:
        rel.get_release(project, since)  # an unknown `since` is a 404, not an empty changelog
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
    others = list(db.session.scalars(select(Release).where(
        Release.project_id == project.id, Release.id != release.id, Release.sha.is_not(None))
        .order_by(Release.major.desc(), Release.minor.desc(), Release.patch.desc())))
    jobs = list(db.session.scalars(select(Job).where(Job.release_id == release.id)
                                   .order_by(Job.id.desc())))
    return ReleasePage(project=project, release=release, changelog=log, since=start,
                       changelog_error=error,
                       deployments=sorted(release.deployments, key=lambda d: d.id, reverse=True),
                       decisions=sorted(release.decisions, key=lambda d: d.id, reverse=True),
                       hotfixes=rel.hotfixes_of(release), jobs=jobs, others=others, fixes=fixes,
                       fixes_error=fixes_error,
                       card=card_for(project, release, actor=actor))


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
