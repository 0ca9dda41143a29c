"""Retrying a release whose tag or hotfix job failed: the release keeps its version, its tag name,
its base and the commits (or branch head) recorded when it was made, and a new job of the same
kind does the git work again. The jobs are idempotent, so work pushed before the failure counts
as done; a line therefore never skips a number because a push once failed.

A retry is claimed with a compare-and-set (state failed → pending) in the database, so of two
retries at once exactly one wins, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from semver import Version
from sqlalchemy import select, update

from .. import gitops
from ..domain import versioning as vs
from ..domain.pipeline import Role
from ..exceptions import Conflict, Forbidden, NotFound
from ..extensions import db, write_transaction
from ..models import Job, Project, Release, User
from . import audit
from .accounts import has_role
from .queue import create_job, dispatch
from .releases import _git_error, _locked, rules, workspace

RETRYABLE = ("tag_release", "hotfix")
IN_FLIGHT = ("queued", "running")
# Who may retry: whoever may cut a release or start a hotfix.
RETRY_ROLE = Role.ENGINEER


@dataclass(frozen=True)
class RetryOffer:
    """What the release page shows about a failed release: the failing job and its sentence,
    whether this person may retry it, and (when a retry would be refused now) why.

    `queued` is the new job after a retry was accepted."""

    release: Release
    job: Job | None
    error: str
    allowed: bool
    refusal: str | None = None
    queued: Job | None = None

    @property
    def may_retry(self) -> bool:
        """True when the Retry button is offered."""
        return self.allowed and self.refusal is None and self.queued is None


def last_git_job(release: Release) -> Job | None:
    """The release's newest tag or hotfix job, or None."""
    return db.session.scalar(select(Job).where(Job.release_id == release.id, Job.kind.in_(RETRYABLE))
                             .order_by(Job.id.desc()).limit(1))


def may_retry(actor: User | None) -> bool:
    """True when this person's role may retry a release's job (the roles that may cut)."""
    return actor is not None and has_role(actor, RETRY_ROLE)


def _in_flight(release: Release) -> Any:
    """SQL: the release has a job that is queued or running."""
    return select(Job.id).where(Job.release_id == release.id, Job.status.in_(IN_FLIGHT)).exists()


def _failed(release: Release, last: Job | None) -> bool:
    """A release whose git work ended without a tag: marked failed, or left pending by a job
    that failed before it could mark it (jobs of older relapp versions did)."""
    if last is None or last.status not in ("failed", "cancelled"):
        return False
    return release.state == "failed" or release.state == "pending"


def _state_refusal(release: Release, last: Job | None) -> str | None:
    """Why the database alone says a retry of `release` is refused now, or None."""
    v = release.version
    if release.state == "tagged":
        return f"{v} is tagged already; there is nothing to retry."
    if last is None:
        return f"{v} has no tag or hotfix job to retry."
    if last.status in IN_FLIGHT:
        return f"The {_kind(last)} job #{last.id} of {v} is still {last.status}; wait for it to end."
    if not _failed(release, last):
        return f"{v} is {release.state} and its last job did not fail; there is nothing to retry."
    later = _later_on_line(release)
    if later is not None:
        return _later_sentence(release, str(later))
    return None


def _kind(job: Job) -> str:
    return "hotfix" if job.kind == "hotfix" else "tag"


def _later_on_line(release: Release) -> Version | None:
    """A release made after this one that a retry would put out of order: a later hotfix of the
    same line (it must contain this one), or a later minor or major for a cut. Failed ones do
    not count: they hold no tag."""
    query = select(Release.version).where(Release.project_id == release.project_id, Release.id != release.id,
                                          Release.state.in_(("pending", "tagged")))
    if release.kind == "hotfix":
        query = query.where(Release.major == release.major, Release.minor == release.minor,
                            Release.patch > release.patch)
    else:
        query = query.where((Release.major > release.major)
                            | ((Release.major == release.major) & (Release.minor > release.minor)))
    found = [Version.parse(v) for v in db.session.scalars(query)]
    return min(found) if found else None


def instead(release: Release) -> str:
    """What to do when `release` cannot be retried: make a new one of its kind."""
    return "start a new hotfix" if release.kind == "hotfix" else "cut a new release"


def _later_sentence(release: Release, later: str) -> str:
    return (f"{later} was made after {release.version} failed, so a retry would tag {release.version} "
            f"after it, out of order; {instead(release)} instead.")


def offer(project: Project, release: Release, actor: User | None) -> RetryOffer | None:
    """For the release page: the failed job of `release` and whether `actor` may retry it now
    (database only, no git); None when the release has no failed job to show."""
    last = last_git_job(release)
    if release.project_id != project.id or not _failed(release, last):
        return None
    assert last is not None
    return RetryOffer(release=release, job=last, error=last.error or f"The {_kind(last)} job failed.",
                      allowed=may_retry(actor), refusal=_state_refusal(release, last))


def retry(project: Project, release: Release, actor: User | None) -> tuple[Release, Job]:
    """Queue a new job of the same kind for a release whose tag or hotfix job failed; the release
    keeps its version and tag. 403 for a role that may not cut, 409 with a sentence when a retry
    is refused (nothing failed, a job in flight, the version taken meanwhile, a later release)."""
    if not may_retry(actor):
        raise Forbidden(f"Retrying a release's job needs the {RETRY_ROLE} role or higher.")
    assert actor is not None
    if release.project_id != project.id:
        raise NotFound(f"Project {project.key} has no release {release.version}.")
    last = last_git_job(release)
    refusal = _state_refusal(release, last)
    if refusal is not None:
        raise Conflict(refusal, code="retry_refused")
    assert last is not None
    _check_remote(project, release)
    if release.state == "pending":
        _settle_as_failed(release)
    with write_transaction():
        # The claim: of two retries at once, one moves the release from failed to pending.
        won = db.session.execute(update(Release).where(
            Release.id == release.id, Release.state == "failed",
            ~_in_flight(release))
            .values(state="pending")).rowcount
        if not won:
            raise Conflict(f"{release.version} is being retried already (or is no longer failed); "
                           "reload to see its new job.", code="retry_refused")
        job = create_job(last.kind, project_id=project.id, release_id=release.id,
                         payload={"release_id": release.id, "retry_of": last.id}, requested_by=actor)
        audit.record(actor, "release.retry", project_id=project.id,
                     target=f"release:{project.key}/{release.version}",
                     before={"state": "failed", "job": last.id, "error": last.error},
                     after={"state": "pending", "version": release.version, "tag": release.tag,
                            "job": job.id, "kind": last.kind},
                     detail=f"Retry of job #{last.id}")
    db.session.refresh(release)
    dispatch(job)
    return release, job


def _settle_as_failed(release: Release) -> None:
    """A pending release whose job failed without marking it is failed: record it so, once, so the
    claim below is the same compare-and-set for every retry."""
    with write_transaction():
        db.session.execute(update(Release).where(
            Release.id == release.id, Release.state == "pending",
            ~_in_flight(release))
            .values(state="failed"))


def _check_remote(project: Project, release: Release) -> None:
    """Refuse (409) when the remote now says the version is taken: its tag, or another tag for the
    same version, at a commit other than the release's, or a later release tagged by hand."""
    version = Version.parse(release.version)
    try:
        ws = workspace(project)
        with _locked(ws):
            ws.ensure()
            ws.fetch()
            remote = ws.remote_ref(f"refs/tags/{release.tag}")
            inventory = vs.inventory_of(ws, rules(project))
    except gitops.GitError as exc:
        raise _git_error(exc) from None
    claims = [(release.tag, remote[1])] if remote else []
    claims += [(t.name, t.tag.sha) for t in inventory.tags_for(version) if t.name != release.tag]
    for name, sha in claims:
        if sha != release.sha:
            ours = f", not at {release.sha[:10]}" if release.sha else ""
            raise Conflict(f"Tag {name} for {release.version} now exists on the remote at commit {sha[:10]}{ours}, "
                           f"so the version is taken and relapp never moves a tag; {instead(release)} or "
                           "settle the tag by hand.", code="version_taken")
    later = [v for v in inventory.stable_versions() if _after(release, v)]
    if later:
        raise Conflict(_later_sentence(release, str(min(later))), code="retry_refused")


def _after(release: Release, version: Version) -> bool:
    """True when a tag for `version` is a later release that `release` would come after."""
    if release.kind == "hotfix":
        return (version.major, version.minor) == (release.major, release.minor) and version.patch > release.patch
    return (version.major, version.minor) > (release.major, release.minor)
